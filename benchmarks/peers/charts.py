"""The comparison's PNG charts (matplotlib, in the peers' virtualenv): one per
scenario that reads well as bars, drawn only when the run measured it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHARTS = Path(__file__).resolve().parents[1] / "charts"
#: (file, alt text, where in the results, the figure, the axis label)
BARS = [
    (
        "noop_tasks_per_s",
        "no-op tasks/s",
        "backlog",
        "tasks_per_s",
        "no-op tasks/s, one worker process (higher is better)",
    ),
    (
        "noop_cpu_us_per_task",
        "worker CPU per task",
        "backlog",
        "cpu_us_per_task",
        "worker CPU µs per task (lower is better)",
    ),
    (
        "noop_broker_cpu_us_per_task",
        "broker CPU per task",
        "backlog",
        "broker_cpu_us_per_task",
        "broker process CPU µs per no-op task (lower is better)",
    ),
    (
        "io_efficiency",
        "I/O-bound efficiency",
        "io",
        "efficiency",
        "I/O-bound efficiency, 500 x sleep(0.05) at once (ideal 1.0, higher is better)",
    ),
    (
        "memory_kib_per_task",
        "memory per task in flight",
        "memory",
        "kib_per_task",
        "worker KiB per task in flight (lower is better)",
    ),
]


def _bars(results: dict[str, Any], where: str, what: str) -> dict[str, dict[str, float]]:
    found = results.get(where, {})
    return {n: found[n][what] for n in results["settings"] if what in found.get(n, {})}


def _flow(results: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    found = results.get("flow", {})
    return {n: found[n] for n in results["settings"] if n in found}


def drawn(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(file, alt text) of each chart this run has figures for, in the section's order."""
    files = [(file, alt) for file, alt, where, what, _ in BARS if _bars(results, where, what)]
    if _flow(results):
        files.append(("flow_tasks_per_s", "enqueue and consume at once"))
    if results.get("scaling"):
        files.append(("scaling_tasks_per_s", "scaling with worker processes"))
    return files


def _color(name: str) -> str:
    if name.startswith("aioack"):
        return "tab:green"
    return "tab:gray" if name.startswith("raw") else "tab:blue"


def _title(results: dict[str, Any]) -> str:
    when = f"{results['date'][:10]}{', quick run' if results['quick'] else ''}"
    if results["busy"]:
        when += ", busy machine"
    return f"aioack vs peers vs raw clients ({when})"


def draw(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    CHARTS.mkdir(exist_ok=True)
    for file, _, where, what, label in BARS:
        found = _bars(results, where, what)
        if not found:
            continue
        names = list(found)
        med = [found[n]["median"] for n in names]
        low = [m - found[n]["min"] for n, m in zip(names, med, strict=True)]
        high = [found[n]["max"] - m for n, m in zip(names, med, strict=True)]
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.2))
        ax.barh(names, med, xerr=[low, high], color=[_color(n) for n in names], capsize=3)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        ax.set_title(_title(results), fontsize=10)
        fig.tight_layout()
        fig.savefig(CHARTS / f"{file}.png", dpi=90)
        plt.close(fig)
    _draw_flow(plt, results)
    _draw_scaling(plt, results)


def _draw_flow(plt: Any, results: dict[str, Any]) -> None:
    found = _flow(results)
    if not found:
        return
    names = list(found)
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(names) + 1.2))
    rows = range(len(names))
    for offset, kind, color in ((-0.2, "single", "tab:blue"), (0.2, "batch", "tab:green")):
        med = [found[n].get(kind, {}).get("tasks_per_s", {}).get("median", 0) for n in names]
        ax.barh([r + offset for r in rows], med, height=0.4, color=color, label=kind)
    ax.set_yticks(list(rows), names)
    ax.invert_yaxis()
    ax.legend(title="enqueue", loc="lower right")
    ax.set_xlabel("tasks/s, one producer while one worker consumes (higher is better)")
    ax.set_title(_title(results), fontsize=10)
    fig.tight_layout()
    fig.savefig(CHARTS / "flow_tasks_per_s.png", dpi=90)
    plt.close(fig)


def _draw_scaling(plt: Any, results: dict[str, Any]) -> None:
    found = results.get("scaling")
    if not found:
        return
    fig, ax = plt.subplots(figsize=(9, 5))
    for name in results["settings"]:
        got = found.get(name, {})
        counts = sorted(int(k) for k in got)
        if not counts:
            continue
        style = "-" if name.startswith("aioack") else ":" if name.startswith("raw") else "--"
        ax.plot(
            counts,
            [got[str(k)]["median"] for k in counts],
            style,
            marker="o",
            label=name,
        )
    ax.set_xticks(sorted({int(k) for got in found.values() for k in got}))
    ax.set_xlabel(f"worker processes ({results['machine']['cpus']} CPUs)")
    ax.set_ylabel("no-op tasks/s")
    ax.legend(fontsize=8)
    ax.set_title(_title(results), fontsize=10)
    fig.tight_layout()
    fig.savefig(CHARTS / "scaling_tasks_per_s.png", dpi=90)
    plt.close(fig)
