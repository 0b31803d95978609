"""aioack beside its peers and the raw clients, one command:

    python benchmarks/compare.py [--quick] [--reps 3] [--only aioack-redis,raw-redis]
                                 [--scenarios backlog,latency,flow,io,memory,scaling,enqueue]

1. Makes ``benchmarks/.peers-venv`` with uv (gitignored; never the project's
   virtualenv) and installs aioack (editable) and the peers into it, without
   hiredis (redis-py's C parser), as in the project's own figures; then runs
   itself again with that venv's Python.
2. For each system, in turn, every chosen scenario (``peers/scenarios.py``),
   each with fresh worker processes started through the system's own CLI
   (``peers/apps/``), the system's own client as producer
   (``peers/drive.py``) and the same task body (``peers/marker.py``):

   - backlog: one worker drains a pre-enqueued backlog of no-ops: tasks/s,
     the worker's CPU and the broker process's CPU per task, same window;
   - latency: runs one at a time, p50/p95/p99 from send to the run's end;
   - flow: one producer enqueues (one call per message, and the batch API
     where there is one) while one worker consumes: tasks/s end to end;
   - io: 500 runs at once that each sleep 0.05 s: ideal time / measured;
   - memory: the worker's RSS with every run in flight (each waits until
     released) minus its idle RSS, KiB per task;
   - scaling: the backlog drained by 1, 2 and 4 worker processes.

   Repeated ``--reps`` times (3; 1 with --quick), interleaved across systems
   (the order rotates); medians and min-max. A system that cannot run a
   scenario is reported as n/a with the reason.
3. Then the enqueue rate of each system's client, one call per message and
   (where it has one) its batch API.
4. Busy machine: a fixed CPU loop timed before, between repetitions and
   after; the run is flagged when they differ by more than 20 %.

Writes ``benchmarks/results/<date>[-quick].json``, the section between the
``compare`` markers of ``benchmarks/RESULTS.md``, and
``benchmarks/charts/*.png``. Needs Redis (database 9, emptied between runs:
give no other use to it) and RabbitMQ on loopback; systems that cannot run
are reported, not fatal.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks.peers: standard library only until the venv

from benchmarks.peers import scenarios  # noqa: E402  (after the path)
from benchmarks.peers.systems import AMQP, REDIS, SYSTEMS, System  # noqa: E402

BENCH = ROOT / "benchmarks"
VENV = BENCH / ".peers-venv"
PEERS = [
    "celery[redis]",
    "kombu",
    "dramatiq[redis,rabbitmq]",
    "taskiq",
    "taskiq-redis",
    "taskiq-aio-pika",
    "arq",
    "saq",
    "streaq",
]
TOOLS = ["matplotlib", "psutil"]
BUSY_LIMIT = 0.20
SCENARIOS = ("backlog", "latency", "flow", "io", "memory", "scaling", "enqueue")
SCALING_PROCESSES = (1, 2, 4)
#: Scaling costs three backlogs and seven worker starts per system: aioack, the raw
#: loops and the issue's two closest peers by default (--quick: aioack and the raw
#: loops); --scaling-all for every system.
SCALING_FAMILIES = {"aioack", "raw", "dramatiq", "taskiq"}
SCALING_FAMILIES_QUICK = {"aioack", "raw"}


# -- the peers' virtualenv ----------------------------------------------------


def _uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(found).exists():
        sys.exit("compare.py needs uv: pip install uv (it is in the project's dev extras)")
    return found


def ensure_venv(log: list[str]) -> Path:
    """The peers' venv (made once; delete it to rebuild). Returns its Python."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    if stamp.exists():
        return python
    uv = _uv()
    subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(VENV)], check=True)
    env = {**os.environ, "VIRTUAL_ENV": str(VENV)}
    base = [uv, "pip", "install", "-q"]
    subprocess.run([*base, "-e", f"{ROOT}[redis,rabbitmq]", *TOOLS], check=True, env=env)
    missing = []
    if subprocess.run([*base, *PEERS], env=env).returncode != 0:  # one by one, to name them
        for peer in PEERS:
            if subprocess.run([*base, peer], env=env).returncode != 0:
                missing.append(peer)
    # The project's figures are without redis-py's C parser: the same for everyone.
    subprocess.run([uv, "pip", "uninstall", "-q", "hiredis"], env=env)
    log.extend(f"could not install {peer} from PyPI" for peer in missing)
    stamp.write_text(json.dumps({"missing": missing}))
    return python


# -- the machine ------------------------------------------------------------


def cpu_probe() -> float:
    """Seconds for a fixed pure-Python loop: the same code, so a change is the machine.

    The best of three, so one preempted slice does not flag the run; a
    machine loaded for the whole probe still shows.
    """
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i * i
        best = min(best, time.perf_counter() - start)
    return best


def machine() -> dict[str, Any]:
    import aio_pika
    import redis

    info = redis.Redis.from_url(REDIS).info("server")
    rabbit = "?"
    try:
        import asyncio

        async def version() -> str:
            connection = await aio_pika.connect(AMQP)
            props = connection.transport.connection.server_properties  # type: ignore[union-attr]
            await connection.close()
            return str(props.get("version", "?"))

        rabbit = asyncio.run(version())
    except Exception as exc:  # reported, not fatal
        rabbit = f"unreachable ({type(exc).__name__})"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis": info.get("redis_version"),
        "rabbitmq": rabbit,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def versions() -> dict[str, str]:
    from importlib import metadata

    names = ["aioack", "redis", "aio-pika", "celery", "kombu", "dramatiq", "taskiq"]
    names += ["taskiq-redis", "taskiq-aio-pika", "arq", "saq", "streaq", "hiredis"]
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


# -- the run ----------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """How many tasks each scenario sends (``--quick``: fewer)."""

    backlog: int
    latency: int
    enqueue: int
    flow: int
    io: int
    memory: int

    @classmethod
    def of(cls, quick: bool) -> Counts:
        if quick:
            return cls(
                backlog=2_000, latency=100, enqueue=1_000, flow=2_000, io=2_500, memory=2_000
            )
        return cls(backlog=20_000, latency=300, enqueue=5_000, flow=10_000, io=5_000, memory=10_000)


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _attempt(got: dict[str, Any], scenario: str, run: Callable[[], Any]) -> None:
    """``got[scenario] = run()``; a failure under ``errors``, a system that cannot under
    ``not_applicable``: never a figure. Its seconds, start-ups included, under
    ``seconds`` (what a run costs, for choosing counts)."""
    started = time.monotonic()
    try:
        got[scenario] = run()
    except scenarios.NotApplicable as exc:
        got.setdefault("not_applicable", {})[scenario] = str(exc)
    except Exception as exc:
        got.setdefault("errors", {})[scenario] = f"{type(exc).__name__}: {exc}"
    got.setdefault("seconds", {})[scenario] = round(time.monotonic() - started, 1)


def one_rep(
    system: System, chosen: set[str], counts: Counts, scratch: Path, scaling: set[str] | None
) -> dict[str, Any]:
    """Every chosen per-system scenario of one system, once."""
    got: dict[str, Any] = {}
    if "backlog" in chosen:
        _attempt(got, "backlog", lambda: scenarios.backlog(system, counts.backlog, scratch))
    if "latency" in chosen:
        _attempt(got, "latency", lambda: scenarios.latency(system, counts.latency, scratch))
    if "flow" in chosen:
        kinds = ["single", "batch"] if system.family in scenarios.HAS_BATCH else ["single"]
        for kind in kinds:
            _attempt(
                got,
                f"flow_{kind}",
                lambda k=kind: scenarios.flow(system, counts.flow, scratch, single=k == "single"),
            )
    if "io" in chosen:
        _attempt(got, "io", lambda: scenarios.io_bound(system, counts.io, scratch))
    if "memory" in chosen:
        _attempt(got, "memory", lambda: scenarios.memory(system, counts.memory, scratch))
    if "scaling" in chosen:
        if scaling is None or system.family in scaling:
            for k in SCALING_PROCESSES:
                _attempt(
                    got,
                    f"scaling_{k}",
                    lambda k=k: scenarios.scaling(system, counts.backlog, scratch, k),
                )
        else:
            got["not_applicable"] = {
                **got.get("not_applicable", {}),
                "scaling": "not measured to keep the run short; --scaling-all measures it",
            }
    return got


def enqueue_rates(
    systems: list[System], count: int, scratch: Path, notes: list[str]
) -> dict[str, Any]:
    rates: dict[str, dict[str, float]] = {}
    for system in systems:
        try:
            got = {"single": scenarios.enqueue(system, count, scratch, single=True)}
            if system.family in scenarios.HAS_BATCH:
                got["batch"] = scenarios.enqueue(system, count, scratch, single=False)
            rates[system.name] = got
        except Exception as exc:
            notes.append(f"enqueue {system.name}: {type(exc).__name__}: {exc}")
        print(f"enqueue {system.name:18} {rates.get(system.name)}", flush=True)
    return rates


def _medians(runs: list[dict[str, Any]], *fields: str) -> dict[str, Any]:
    return {f: _summary([r[f] for r in runs]) for f in fields}


def summarize(raw: dict[str, list[dict[str, Any]]], notes: list[str]) -> dict[str, Any]:
    """Per scenario, each system's medians and min-max over its successful runs;
    failures into ``notes``, what a system cannot do under ``not_applicable``."""
    out: dict[str, Any] = {"backlog": {}, "flow": {}, "io": {}, "memory": {}, "scaling": {}}
    out["not_applicable"] = {}
    for name, runs in raw.items():
        failed: dict[str, list[str]] = {}
        for run in runs:
            for scenario, error in run.get("errors", {}).items():
                failed.setdefault(scenario, []).append(error)
            for scenario, why in run.get("not_applicable", {}).items():
                out["not_applicable"].setdefault(scenario, {})[name] = why
        for scenario, errors in failed.items():
            notes.append(f"{name} {scenario}: {len(errors)} of {len(runs)} failed: {errors[0]}")
        for scenario, found in _summarize_system(runs).items():
            out[scenario][name] = found
    return out


def _summarize_system(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's runs: {scenario: its medians}, for the scenarios that have any."""
    out: dict[str, Any] = {}
    ok = [r["backlog"] for r in runs if "backlog" in r]
    if ok:
        out["backlog"] = {**_medians(ok, "tasks_per_s", "cpu_us_per_task"), "runs": len(ok)}
        broker = [r["broker_cpu_us_per_task"] for r in ok]
        broker = [b for b in broker if b is not None]  # None: no broker process (SQLite)
        if broker:
            out["backlog"]["broker_cpu_us_per_task"] = _summary(broker)
    timed = [r["latency"] for r in runs if "latency" in r]
    if timed:
        out.setdefault("backlog", {})["latency_ms"] = {
            p: statistics.median(t[f"{p}_ms"] for t in timed) for p in ("p50", "p95", "p99")
        }
    for kind in ("single", "batch"):
        flows = [r[f"flow_{kind}"] for r in runs if f"flow_{kind}" in r]
        if flows:
            out.setdefault("flow", {})[kind] = _medians(flows, "tasks_per_s", "enqueue_per_s")
    io = [r["io"] for r in runs if "io" in r]
    if io:
        out["io"] = {**_medians(io, "efficiency", "wall_s"), "ideal_s": io[0]["ideal_s"]}
    held = [r["memory"] for r in runs if "memory" in r]
    if held:
        out["memory"] = _medians(held, "kib_per_task", "idle_mib", "idle_at_n_mib", "held_mib")
    for k in SCALING_PROCESSES:
        rates = [r[f"scaling_{k}"] for r in runs if f"scaling_{k}" in r]
        if rates:
            out.setdefault("scaling", {})[str(k)] = _summary(rates)
    return out


def measure(args: argparse.Namespace, systems: list[System], notes: list[str]) -> dict[str, Any]:
    counts = Counts.of(args.quick)
    chosen = set(args.scenarios)
    scaling = None if args.scaling_all else SCALING_FAMILIES
    if args.quick and not args.scaling_all:
        scaling = SCALING_FAMILIES_QUICK
    scratch = Path(tempfile.mkdtemp(prefix="aioack-compare-"))
    started_load, started = os.getloadavg(), time.monotonic()
    probes = [cpu_probe()]
    raw: dict[str, list[dict[str, Any]]] = {s.name: [] for s in systems}
    for rep in range(args.reps):
        order = systems[rep % len(systems) :] + systems[: rep % len(systems)]
        for system in order:
            got = one_rep(system, chosen, counts, scratch, scaling)
            print(f"rep {rep + 1} {system.name:18} {json.dumps(got)}", flush=True)
            raw[system.name].append(got)
        probes.append(cpu_probe())
    enqueue = {}
    if "enqueue" in chosen:
        enqueue = enqueue_rates(systems, counts.enqueue, scratch, notes)
    probes.append(cpu_probe())
    busy = max(probes) / min(probes) - 1
    summary = summarize(raw, notes)
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "backlog_tasks": counts.backlog,
        "counts": vars(counts),
        "scenarios": [s for s in SCENARIOS if s in chosen],
        "reps": args.reps,
        "duration_s": time.monotonic() - started,
        "machine": {**machine(), "loadavg_start": started_load, "loadavg_end": os.getloadavg()},
        "versions": versions(),
        "cpu_probe_s": probes,
        "busy": busy > BUSY_LIMIT,
        "busy_spread": busy,
        "settings": {s.name: s.settings for s in systems},
        **summary,
        "raw": raw,
        "enqueue": enqueue,
        "notes": notes,
    }


def _scenarios(text: str) -> list[str]:
    chosen = [s for s in text.split(",") if s]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {unknown}; known: {SCENARIOS}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks, a few minutes")
    parser.add_argument("--reps", type=int, help="repetitions, interleaved (3; --quick: 1)")
    parser.add_argument("--only", default="", help="comma-separated system names")
    parser.add_argument(
        "--scenarios",
        type=_scenarios,
        default=list(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (all)",
    )
    parser.add_argument("--skip-enqueue", action="store_true", help="no enqueue scenario")
    parser.add_argument("--skip-latency", action="store_true", help="no latency scenario")
    parser.add_argument(
        "--scaling-all", action="store_true", help="the scaling scenario for every system"
    )
    parser.add_argument("--in-venv", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    notes: list[str] = []
    if not args.in_venv:
        python = ensure_venv(notes)
        os.execv(str(python), [str(python), __file__, *sys.argv[1:], "--in-venv"])
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    args.scenarios = [
        s
        for s in args.scenarios
        if not ((s == "enqueue" and args.skip_enqueue) or (s == "latency" and args.skip_latency))
    ]
    stamp = VENV / ".installed"
    if stamp.exists():
        notes += [f"not installed: {p}" for p in json.loads(stamp.read_text())["missing"]]
    wanted = {name for name in args.only.split(",") if name}
    systems = [s for s in SYSTEMS if not wanted or s.name in wanted]
    results = measure(args, systems, notes)
    stamp_name = results["date"][:10] + ("-quick" if args.quick else "")
    out = BENCH / "results" / f"{stamp_name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)} in {results['duration_s'] / 60:.1f} min")
    from benchmarks.peers import report

    report.write(results, out)


if __name__ == "__main__":
    main()
