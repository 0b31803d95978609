"""The comparison's output: its section of benchmarks/RESULTS.md and the PNG charts.

Run by ``benchmarks/compare.py`` after a run, or again on a saved run:
``benchmarks/.peers-venv/bin/python -m benchmarks.peers.report benchmarks/results/X.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.peers import charts, sections

BENCH = Path(__file__).resolve().parents[1]
RESULTS_MD = BENCH / "RESULTS.md"
START, END = "<!-- compare:start -->", "<!-- compare:end -->"
RAW = {"redis": "raw-redis", "rabbitmq": "raw-rabbitmq"}


def write(results: dict[str, Any], source: Path) -> None:
    section = render(results, source)
    text = RESULTS_MD.read_text()
    if START in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    else:  # first time: after the introduction, before the per-broker sections
        at = text.index("\n## ")
        text = text[:at] + "\n" + section + "\n" + text[at:]
    RESULTS_MD.write_text(text)
    charts.draw(results)


def _broker(name: str) -> str:
    return "rabbitmq" if "rabbitmq" in name else "sqlite" if "sqlite" in name else "redis"


def _med(results: dict[str, Any], name: str, what: str = "tasks_per_s") -> float | None:
    got = results["backlog"].get(name)
    return got[what]["median"] if got else None


def goals(results: dict[str, Any]) -> list[str]:
    """The goals of issue 13 this scenario can judge, met or missed, with the numbers."""
    lines = []
    redis, raw = _med(results, "aioack-redis"), _med(results, "raw-redis")
    if redis and raw:
        ratio = redis / raw
        lines.append(
            f"- Redis no-op consume ≥ 60 % of the raw loop: **{ratio:.0%}**, "
            f"{'met' if ratio >= 0.6 else 'missed'}."
        )
    peers = {
        n: v["tasks_per_s"]["median"]
        for n, v in results["backlog"].items()
        if not n.startswith(("aioack", "raw")) and _broker(n) == "redis"
    }
    if redis and peers:
        best = max(peers, key=lambda n: peers[n])
        times = redis / peers[best]
        lines.append(
            f"- Redis: ≥ 3x the best peer: **{times:.1f}x** ({best}, "
            f"{peers[best]:,.0f}/s), {'met' if times >= 3 else 'missed'}."
        )
    rabbit, raw_rabbit = _med(results, "aioack-rabbitmq"), _med(results, "raw-rabbitmq")
    if rabbit and raw_rabbit:
        ratio = rabbit / raw_rabbit
        lines.append(
            f"- RabbitMQ no-op consume ≥ 90 % of raw aio-pika: **{ratio:.0%}**, "
            f"{'met' if ratio >= 0.9 else 'missed'} (aioack coalesces its acks; the raw "
            "loop acks each message, as the issue defines it)."
        )
    cpu = _med(results, "aioack-redis", "cpu_us_per_task")
    if cpu:
        lines.append(
            f"- About 30 µs of worker CPU per task on Redis: **{cpu:.0f} µs**, "
            f"{'met' if cpu <= 30 else 'missed'}."
        )
    for broker in ("redis", "rabbitmq"):
        lat = results["backlog"].get(f"aioack-{broker}", {}).get("latency_ms")
        if lat:
            lines.append(
                f"- p50 latency ≤ 1.0 ms on {broker}: **{lat['p50']:.2f} ms**, "
                f"{'met' if lat['p50'] <= 1.0 else 'missed'}."
            )
    return lines + _new_goals(results)


def _new_goals(results: dict[str, Any]) -> list[str]:
    """The goals of the enqueue-and-consume, I/O-bound and memory scenarios."""
    lines, judged = [], []
    flow = results.get("flow", {})
    ours, raw = flow.get("aioack-redis", {}), flow.get("raw-redis", {})
    if "batch" in ours and "batch" in raw:
        ratio = ours["batch"]["tasks_per_s"]["median"] / raw["batch"]["tasks_per_s"]["median"]
        judged.append("enqueue and consume at once (Redis)")
        lines.append(
            f"- Enqueue and consume at once (Redis, batch enqueue) ≥ 50 % of the raw loop: "
            f"**{ratio:.0%}**, {'met' if ratio >= 0.5 else 'missed'}."
        )
    io = results.get("io", {})
    if "aioack-redis" in io:
        eff = io["aioack-redis"]["efficiency"]["median"]
        judged.append("I/O-bound (Redis)")
        lines.append(
            f"- I/O-bound efficiency ≥ 0.9 on Redis: **{eff:.2f}**, "
            f"{'met' if eff >= 0.9 else 'missed'}."
        )
    if "aioack-rabbitmq" in io and "raw-rabbitmq" in io:
        eff = io["aioack-rabbitmq"]["efficiency"]["median"]
        raw_eff = io["raw-rabbitmq"]["efficiency"]["median"]
        lines.append(
            f"- I/O-bound efficiency ≥ raw on RabbitMQ: **{eff:.2f}** against {raw_eff:.2f}, "
            f"{'met' if eff >= raw_eff else 'missed'}."
        )
    held = [
        (n, v["kib_per_task"]["median"])
        for n, v in results.get("memory", {}).items()
        if n.startswith("aioack")
    ]
    if held:
        judged.append("memory")
        worst = max(held, key=lambda item: item[1])
        lines.append(
            f"- ≤ 3 KiB of worker memory per in-flight task: **{worst[1]:.1f} KiB** "
            f"({worst[0]}, the most of aioack's brokers), {'met' if worst[1] <= 3 else 'missed'}."
        )
    wanted = ("enqueue and consume at once (Redis)", "I/O-bound (Redis)", "memory")
    missing = [s for s in wanted if s not in judged]
    if missing:
        lines.append(f"- Not judged by this run (not measured): {', '.join(missing)}.")
    return lines


def render(results: dict[str, Any], source: Path) -> str:
    m, quick = results["machine"], results["quick"]
    kind = "quick run" if quick else "full run"
    flag = (
        f" **Flagged: busy machine** (the CPU probe varied {results['busy_spread']:.0%} "
        "during the run, limit 20 %): compare ratios within this run only."
        if results["busy"]
        else f" CPU probe spread {results['busy_spread']:.0%} (limit 20 %)."
    )
    out = [
        START,
        "## aioack beside its peers (one command)",
        "",
        "    python benchmarks/compare.py" + (" --quick" if quick else ""),
        "",
        f"**{results['date'][:10]}, {kind} ({results['backlog_tasks']:,}-task backlog, "
        f"{results['reps']} interleaved repetition{'s' if results['reps'] > 1 else ''}, "
        f"medians and min-max).**{flag} "
        f"Load average {m['loadavg_start'][0]:.2f} at the start, "
        f"{m['loadavg_end'][0]:.2f} at the end: the machine is shared.",
        "",
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}, "
        f"Redis {m['redis']}, RabbitMQ {m['rabbitmq']}, all on loopback; no hiredis. "
        f"Raw JSON: [`{source.relative_to(BENCH)}`]({source.relative_to(BENCH)}). "
        "Each worker is one OS process started through its system's own CLI; each "
        "system's no-op task body is the same (`peers/marker.py`: an in-memory count, "
        "the completion window written once), measured from its first run to its last.",
        "",
        "### No-op backlog, one worker process",
        "",
        "| system | tasks/s | worker CPU µs/task | broker CPU µs/task | / raw (same broker) "
        "| settings |",
        "|---|---|---|---|---|---|",
    ]
    for name, setting in results["settings"].items():
        got = results["backlog"].get(name)
        if not got or "tasks_per_s" not in got:
            out.append(f"| {name} | failed | | | | {setting} |")
            continue
        rate, cpu = got["tasks_per_s"], got["cpu_us_per_task"]
        raw = _med(results, RAW.get(_broker(name), ""))
        ratio = f"{rate['median'] / raw:.0%}" if raw and not name.startswith("raw") else ""
        broker = got.get("broker_cpu_us_per_task")
        in_broker = f"{broker['median']:.1f}" if broker else "n/a (no broker process)"
        if broker is None and _broker(name) != "sqlite":
            in_broker = "not measured"
        out.append(
            f"| {name} | {sections.range_of(rate, ',.0f')} "
            f"| {sections.range_of(cpu, '.0f').replace('**', '')} | {in_broker} "
            f"| {ratio} | {setting} |"
        )
    out += [
        "",
        "Broker CPU: the CPU time of the broker's own process (redis-server, RabbitMQ's "
        "beam.smp; every thread's /proc schedstat) over the same window as the worker's, "
        "per task. It includes whatever else the shared broker served meanwhile.",
    ]
    timed = [n for n in results["settings"] if "latency_ms" in results["backlog"].get(n, {})]
    if timed:
        out += [
            "",
            "### Latency, sequential runs through one worker",
            "",
            "One run sent once the one before has ended; ms from before the send to "
            "the end of the run (the task body RPUSHes its end time to Redis: the same "
            "cost for every system). Medians over the repetitions of each run's percentiles.",
            "",
            "| system | p50 ms | p95 ms | p99 ms |",
            "|---|---|---|---|",
        ]
        for name in timed:
            lat = results["backlog"][name]["latency_ms"]
            out.append(f"| {name} | {lat['p50']:.2f} | {lat['p95']:.2f} | {lat['p99']:.2f} |")
    if results["enqueue"]:
        out += [
            "",
            "### Enqueue rate, one producer",
            "",
            "Messages/s through each system's client, set-up excluded: one call per "
            "message (`delay()`, `send()`, `kiq()`, `enqueue_job()`, `enqueue()`; raw: one "
            "`XADD` / one confirmed publish per await), and the batch API where there is "
            "one (aioack: `task.map()`; raw: 500 pipelined). The peers have none that "
            "sends separate messages.",
            "",
            "| system | one call per message /s | batch API /s |",
            "|---|---|---|",
        ]
        for name, rates in results["enqueue"].items():
            batch = f"{rates['batch']:,.0f}" if "batch" in rates else "(none)"
            out.append(f"| {name} | {rates['single']:,.0f} | {batch} |")
    out += sections.render(results)
    out += ["", "### The goals of issue 13 this run can judge", "", *goals(results)]
    versions = ", ".join(f"{k} {v}" for k, v in results["versions"].items())
    out += ["", f"Versions: {versions}."]
    if results["notes"]:
        out += ["", "Notes:", "", *(f"- {note}" for note in results["notes"])]
    out += ["", *(f"![{alt}](charts/{file}.png)" for file, alt in charts.drawn(results)), END]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    path = Path(sys.argv[1]).resolve()
    write(json.loads(path.read_text()), path)
