"""The comparison's output: its section of benchmarks/RESULTS.md and the PNG charts.

Run by ``benchmarks/compare.py`` after a run, or again on a saved run:
``benchmarks/.peers-venv/bin/python -m benchmarks.peers.report benchmarks/results/X.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
RESULTS_MD = BENCH / "RESULTS.md"
CHARTS = BENCH / "charts"
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
    charts(results)


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
    lines.append(
        "- Not judged by this run (scenarios not built yet): "
        "≤ 3 KiB per in-flight task, enqueue-and-consume ≥ 50 % of raw, I/O-bound efficiency."
    )
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
        f"{results['reps']} interleaved repetitions, medians and min-max).**{flag} "
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
        "| system | tasks/s | worker CPU µs/task | / raw (same broker) | settings |",
        "|---|---|---|---|---|",
    ]
    for name, setting in results["settings"].items():
        got = results["backlog"].get(name)
        if not got:
            out.append(f"| {name} | failed | | | {setting} |")
            continue
        rate, cpu = got["tasks_per_s"], got["cpu_us_per_task"]
        raw = _med(results, RAW.get(_broker(name), ""))
        ratio = f"{rate['median'] / raw:.0%}" if raw and not name.startswith("raw") else ""
        out.append(
            f"| {name} | **{rate['median']:,.0f}** ({rate['min']:,.0f}-{rate['max']:,.0f}) "
            f"| {cpu['median']:.0f} ({cpu['min']:.0f}-{cpu['max']:.0f}) | {ratio} | {setting} |"
        )
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
    out += ["", "### The goals of issue 13 this run can judge", "", *goals(results)]
    versions = ", ".join(f"{k} {v}" for k, v in results["versions"].items())
    out += ["", f"Versions: {versions}."]
    if results["notes"]:
        out += ["", "Notes:", "", *(f"- {note}" for note in results["notes"])]
    out += [
        "",
        "![no-op tasks/s](charts/noop_tasks_per_s.png)",
        "![worker CPU per task](charts/noop_cpu_us_per_task.png)",
        END,
    ]
    return "\n".join(out) + "\n"


def charts(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    CHARTS.mkdir(exist_ok=True)
    names = [n for n in results["settings"] if n in results["backlog"]]
    colors = [
        "tab:green" if n.startswith("aioack") else "tab:gray" if n.startswith("raw") else "tab:blue"
        for n in names
    ]
    when = f"{results['date'][:10]}{', quick run' if results['quick'] else ''}"
    if results["busy"]:
        when += ", busy machine"
    for what, label, file in (
        ("tasks_per_s", "no-op tasks/s, one worker process (higher is better)", "noop_tasks_per_s"),
        ("cpu_us_per_task", "worker CPU µs per task (lower is better)", "noop_cpu_us_per_task"),
    ):
        med = [results["backlog"][n][what]["median"] for n in names]
        low = [m - results["backlog"][n][what]["min"] for n, m in zip(names, med, strict=True)]
        high = [results["backlog"][n][what]["max"] - m for n, m in zip(names, med, strict=True)]
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.2))
        ax.barh(names, med, xerr=[low, high], color=colors, capsize=3)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        ax.set_title(f"aioack vs peers vs raw clients ({when})", fontsize=10)
        fig.tight_layout()
        fig.savefig(CHARTS / f"{file}.png", dpi=90)
        plt.close(fig)


if __name__ == "__main__":
    path = Path(sys.argv[1]).resolve()
    write(json.loads(path.read_text()), path)
