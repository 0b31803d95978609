"""The RESULTS.md tables of the enqueue-and-consume, I/O-bound, memory and scaling
scenarios (``report.py`` writes the rest of the section around them).

A saved run without a scenario renders without its table.
"""

from __future__ import annotations

from typing import Any

RAW = {"redis": "raw-redis", "rabbitmq": "raw-rabbitmq"}


def _broker(name: str) -> str:
    return "rabbitmq" if "rabbitmq" in name else "sqlite" if "sqlite" in name else "redis"


def range_of(got: dict[str, float], spec: str) -> str:
    """The median in bold, then min-max (left out when they are the same: one run)."""
    spread = f" ({got['min']:{spec}}-{got['max']:{spec}})" if got["min"] != got["max"] else ""
    return f"**{got['median']:{spec}}**{spread}"


def _absent(results: dict[str, Any], scenario: str, name: str) -> str:
    why = results.get("not_applicable", {}).get(scenario, {}).get(name)
    return f"n/a: {why}" if why else "failed (see the notes)"


def render(results: dict[str, Any]) -> list[str]:
    return [*flow(results), *io_bound(results), *memory(results), *scaling(results)]


def flow(results: dict[str, Any]) -> list[str]:
    found = results.get("flow")
    if not found:
        return []
    n = results.get("counts", {}).get("flow", 0)
    out = [
        "",
        "### Enqueue and consume at once",
        "",
        f"One producer sends {n:,} runs while one worker process (already up: it ran a "
        "warm-up first) consumes them; tasks/s from the first send to the last run's end. "
        "One call per message, and the batch API where there is one (aioack: `task.map()`, "
        "10,000 per call; streaq: `enqueue_many`, raw: 500 pipelined / confirmed "
        "together). In brackets: the producer's own rate meanwhile.",
        "",
        "| system | one call per message, tasks/s | batch API, tasks/s | batch / raw batch |",
        "|---|---|---|---|",
    ]
    for name in results["settings"]:
        got = found.get(name)
        if not got:
            out.append(f"| {name} | {_absent(results, 'flow_single', name)} | | |")
            continue
        cells = []
        for kind in ("single", "batch"):
            if kind in got:
                sent = got[kind]["enqueue_per_s"]["median"]
                cells.append(f"{range_of(got[kind]['tasks_per_s'], ',.0f')} ({sent:,.0f}/s sent)")
            else:
                cells.append("(no batch API)")
        raw = found.get(RAW.get(_broker(name), ""), {}).get("batch")
        ratio = ""
        if "batch" in got and raw and not name.startswith("raw"):
            ratio = f"{got['batch']['tasks_per_s']['median'] / raw['tasks_per_s']['median']:.0%}"
        out.append(f"| {name} | {cells[0]} | {cells[1]} | {ratio} |")
    return out


def io_bound(results: dict[str, Any]) -> list[str]:
    found = results.get("io")
    if not found:
        return []
    n = results.get("counts", {}).get("io", 0)
    ideal = next(iter(found.values()))["ideal_s"]
    out = [
        "",
        "### I/O-bound",
        "",
        f"{n:,} runs that each `await asyncio.sleep(0.05)` (Celery, dramatiq: `time.sleep` "
        "in their threads), 500 at once: aioack `-c 500 --prefetch 500`, taskiq "
        "`--max-async-tasks 500 --max-prefetch 500`, arq `max_jobs=500`, SAQ and streaq "
        "`concurrency=500`, Celery `--pool threads -c 500` (prefetch 500), dramatiq "
        "`--threads 500` (its prefetch: 2 per thread), the raw loops a task per message "
        f"(500 at most; RabbitMQ: qos 500). Efficiency = the ideal time ({ideal:.2f} s) "
        "over the measured one, from the first run's start to the last run's end.",
        "",
        "| system | efficiency | measured s | / raw (same broker) |",
        "|---|---|---|---|",
    ]
    for name in results["settings"]:
        got = found.get(name)
        if not got:
            out.append(f"| {name} | {_absent(results, 'io', name)} | | |")
            continue
        raw = found.get(RAW.get(_broker(name), ""))
        ratio = ""
        if raw and not name.startswith("raw"):
            ratio = f"{got['efficiency']['median'] / raw['efficiency']['median']:.0%}"
        out.append(
            f"| {name} | {range_of(got['efficiency'], '.2f')} | {got['wall_s']['median']:.2f} "
            f"| {ratio} |"
        )
    return out


def memory(results: dict[str, Any]) -> list[str]:
    found = results.get("memory")
    if found is None or not (found or results.get("not_applicable", {}).get("memory")):
        return []
    n = results.get("counts", {}).get("memory", 0)
    out = [
        "",
        "### Memory with tasks in flight",
        "",
        f"{n:,} runs in flight at once in one worker process (each waits until released; "
        f"concurrency and prefetch {n:,}): the worker's RSS (VmRSS of the process and its "
        "children, /proc) minus the RSS of the same system's worker at its no-op settings "
        "(c=50) after one run, per task. The idle worker set up for "
        f"{n:,} is shown too: a system that sets up state per slot before any task runs "
        "(SAQ: a coroutine and a Redis connection per slot) has it there.",
        "",
        "| system | KiB per task in flight | idle MiB (c=50) | idle MiB (set up for "
        f"{n:,}) | held MiB |",
        "|---|---|---|---|---|",
    ]
    for name in results["settings"]:
        got = found.get(name)
        if not got:
            out.append(f"| {name} | {_absent(results, 'memory', name)} | | | |")
            continue
        at_n = got.get("idle_at_n_mib", {}).get("median")
        out.append(
            f"| {name} | {range_of(got['kib_per_task'], '.1f')} | "
            f"{got['idle_mib']['median']:.0f} | {'' if at_n is None else f'{at_n:.0f}'} "
            f"| {got['held_mib']['median']:.0f} |"
        )
    return out


def scaling(results: dict[str, Any]) -> list[str]:
    found = results.get("scaling")
    if not found:
        return []
    counts = sorted({int(k) for got in found.values() for k in got})
    n = results.get("backlog_tasks", 0)
    out = [
        "",
        "### Scaling: worker processes",
        "",
        f"A {n:,}-task no-op backlog drained by 1, 2 and 4 worker processes of the same "
        "system, each started through its CLI and all let go at once (the task body holds "
        "each process's first run until every process is up); tasks/s from the first run "
        f"to the last of any process. The machine has {results['machine']['cpus']} CPUs, "
        "shared with the broker and the other processes.",
        "",
        "| system | "
        + " | ".join(f"{k} process{'es' if k > 1 else ''}" for k in counts)
        + f" | {counts[-1]} / 1 |",
        "|---|" + "---|" * (len(counts) + 1),
    ]
    skipped = results.get("not_applicable", {}).get("scaling", {})
    for name in results["settings"]:
        got = found.get(name)
        if not got and name in skipped:
            continue  # listed under the table, with the reason
        if not got:
            out.append(f"| {name} | {_absent(results, 'scaling', name)} |" + " |" * len(counts))
            continue
        cells = [range_of(got[str(k)], ",.0f") if str(k) in got else "failed" for k in counts]
        ratio = ""
        if "1" in got and str(counts[-1]) in got:
            ratio = f"{got[str(counts[-1])]['median'] / got['1']['median']:.2f}x"
        out.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")
    for why in sorted(set(skipped.values())):
        names = ", ".join(n for n, w in skipped.items() if w == why)
        out += ["", f"Not in this table ({why}): {names}."]
    return out
