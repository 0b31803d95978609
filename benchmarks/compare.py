"""aioack beside its peers and the raw clients, one command:

    python benchmarks/compare.py [--quick] [--reps 3] [--only aioack-redis,raw-redis]

1. Makes ``benchmarks/.peers-venv`` with uv (gitignored; never the project's
   virtualenv) and installs aioack (editable) and the peers into it, without
   hiredis (redis-py's C parser), as in the project's own figures; then runs
   itself again with that venv's Python.
2. Scenario "no-op backlog": for each system, empty its queue, enqueue the
   backlog through the system's own client (``peers/drive.py``), start ONE
   worker process through the system's own CLI (``peers/apps/``), and read
   the completion window the task body writes (``peers/marker.py``):
   tasks/s, and the worker's CPU µs per task over the same window. Repeated
   ``--reps`` times, interleaved across systems (the order rotates), medians
   and min-max.
3. Scenario "latency": after each backlog run, the same worker set-up takes
   runs one at a time (send, wait for its end, send the next): p50/p95/p99
   from the send to the run's end (100 runs, --quick; 300), after 20 dropped.
4. Scenario "enqueue": the same client's enqueue rate, one call per message
   and (where the system has one) its batch API.
5. Busy machine: a fixed CPU loop timed before and after; the run is
   flagged when they differ by more than 20 %.

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
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
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
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
AMQP = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
CONCURRENCY, PREFETCH = 50, 100
BUSY_LIMIT = 0.20
WARMUP = 20
#: The families with a batch API that sends separate messages (the others have none).
HAS_BATCH = {"aioack", "raw", "streaq"}


@dataclass(frozen=True)
class System:
    name: str
    family: str  # the app in peers/apps/ and the producer in peers/drive.py
    broker: str  # redis | rabbitmq | sqlite
    settings: str  # what "reliable mode" means for it, written next to the figures

    def url(self, scratch: Path) -> str:
        if self.broker == "sqlite":
            return f"sqlite:///{scratch}/aioack-bench.db"
        return REDIS if self.broker == "redis" else AMQP

    def worker_argv(self, queue: str) -> list[str]:
        py, bin_dir = sys.executable, Path(sys.executable).parent
        c, p = str(CONCURRENCY), str(PREFETCH)
        app = "benchmarks.peers.apps"
        raw = f"benchmarks.peers.raw_{'pika' if self.broker == 'rabbitmq' else 'redis'}"
        quiet = ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        return {
            "aioack": [
                py,
                "-m",
                "aioack",
                "worker",
                f"{app}.aioack_app:app",
                "-Q",
                queue,
                "-c",
                c,
                "--prefetch",
                p,
                "--log-level",
                "WARNING",
                "--no-scheduler",
            ],
            "raw": [py, "-m", raw],
            "celery": [
                str(bin_dir / "celery"),
                "-A",
                f"{app}.celery_app",
                "worker",
                "--pool",
                "solo",
                "-Q",
                queue,
                "-l",
                "WARNING",
                *quiet,
            ],
            "dramatiq": [
                str(bin_dir / "dramatiq"),
                f"{app}.dramatiq_app",
                "--processes",
                "1",
                "--threads",
                "8",
                "-Q",
                queue,
            ],
            "taskiq": [
                str(bin_dir / "taskiq"),
                "worker",
                f"{app}.taskiq_app:broker",
                "--workers",
                "1",
                "--max-async-tasks",
                c,
                "--max-prefetch",
                p,
                "--ack-type",
                "when_executed",
            ],
            "arq": [str(bin_dir / "arq"), f"{app}.arq_app.WorkerSettings"],
            "saq": [str(bin_dir / "saq"), f"{app}.saq_app.settings", "--workers", "1"],
            "streaq": [str(bin_dir / "streaq"), "run", f"{app}.streaq_app:worker"],
        }[self.family]


SYSTEMS = [
    System("aioack-redis", "aioack", "redis", "late ack (default), c=50, prefetch=100"),
    System("raw-redis", "raw", "redis", "XREADGROUP COUNT 100, pipelined XACK per batch"),
    System("celery-redis", "celery", "redis", "acks_late, pool=solo, prefetch_multiplier=100"),
    System("dramatiq-redis", "dramatiq", "redis", "ack after run, 1 process x 8 threads"),
    System("taskiq-redis", "taskiq", "redis", "RedisStreamBroker, ack when_executed, 50 async"),
    System("arq", "arq", "redis", "max_jobs=50, keep_result=0, poll_delay 0.5 s (default)"),
    System("saq", "saq", "redis", "concurrency=50"),
    System("streaq", "streaq", "redis", "concurrency=50, prefetch=100, ack after run"),
    System("aioack-rabbitmq", "aioack", "rabbitmq", "quorum queue, confirms, late ack, c=50"),
    System("raw-rabbitmq", "raw", "rabbitmq", "aio-pika, quorum queue, qos 100, ack each"),
    System("celery-rabbitmq", "celery", "rabbitmq", "acks_late, pool=solo, prefetch_mult=100"),
    System("dramatiq-rabbitmq", "dramatiq", "rabbitmq", "ack after run, 1 process x 8 threads"),
    System("taskiq-rabbitmq", "taskiq", "rabbitmq", "taskiq-aio-pika, qos 100, when_executed"),
    System("aioack-sqlite", "aioack", "sqlite", "late ack (default), c=50, prefetch=100"),
]


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


# -- one measurement ------------------------------------------------------------


def _env(system: System, queue: str, scratch: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BENCH_BROKER_URL": system.url(scratch),
        "BENCH_QUEUE": queue,
        "BENCH_REDIS_URL": REDIS,
        "BENCH_PREFETCH": str(PREFETCH),
        "BENCH_CONCURRENCY": str(CONCURRENCY),
        **extra,
    }


def _drive(system: System, env: dict[str, str], *args: str, timeout_s: float) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.peers.drive", args[0], system.family, *args[1:]]
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
    )
    if done.returncode != 0:
        raise RuntimeError(f"drive {args[0]} failed: {done.stderr.strip().splitlines()[-1:]}")
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def _stop(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the worker's process group (it may have forked), SIGKILL after 10 s."""
    if worker.poll() is None:
        os.killpg(worker.pid, 15)
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, 9)
            worker.wait(10)


def run_backlog(system: System, n: int, scratch: Path) -> dict[str, Any]:
    """One worker process drains a backlog of ``n`` no-ops; its own completion window."""
    import redis

    queue, key = f"bench-{uuid.uuid4().hex[:8]}", f"bench:done:{uuid.uuid4().hex}"
    env = _env(system, queue, scratch, BENCH_N=str(n), BENCH_KEY=key)
    marks = redis.Redis.from_url(REDIS)
    _drive(system, env, "reset", timeout_s=60)
    try:
        enqueue = _drive(system, env, "enqueue", str(n), timeout_s=60 + n / 50)
        log = (scratch / f"{system.name}.log").open("ab")
        worker = subprocess.Popen(
            system.worker_argv(queue),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60 + n / 100
            while (window := marks.get(key)) is None:
                if worker.poll() is not None:
                    raise RuntimeError(f"worker exited {worker.returncode} (see {log.name})")
                if time.monotonic() > deadline:
                    raise RuntimeError("timed out waiting for the backlog to drain")
                time.sleep(0.05)
        finally:
            _stop(worker)
            log.close()
    finally:
        _drive(system, env, "reset", timeout_s=60)
        marks.close()
    got = json.loads(window)
    return {
        "tasks_per_s": got["runs"] / got["wall_s"],
        "cpu_us_per_task": got["cpu_s"] / got["runs"] * 1e6,
        "backlog_enqueue_per_s": enqueue.get("enqueue_per_s"),
    }


def run_latency(system: System, n: int, scratch: Path) -> dict[str, float]:
    """Sequential runs through one worker: p50/p95/p99 ms from send to the run's end.

    The first WARMUP runs are dropped (the worker starting, first-use costs).
    """
    queue, key = f"bench-{uuid.uuid4().hex[:8]}", f"bench:latency:{uuid.uuid4().hex}"
    env = _env(system, queue, scratch, BENCH_MODE="latency", BENCH_KEY=key)
    _drive(system, env, "reset", timeout_s=60)
    log = (scratch / f"{system.name}.log").open("ab")
    worker = subprocess.Popen(
        system.worker_argv(queue),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        args = ["latency", str(n + WARMUP), key]
        got = _drive(system, env, *args, timeout_s=120 + n)["latency_s"][WARMUP:]
    finally:
        _stop(worker)
        log.close()
        _drive(system, env, "reset", timeout_s=60)
    if min(got) < 0:  # a mark popped that no run of this send wrote
        raise RuntimeError(
            "a run ended before it was sent: a stray or duplicate completion mark, "
            "so this system's latency cannot be read this way"
        )
    cuts = statistics.quantiles([s * 1000 for s in got], n=100)
    return {"p50_ms": cuts[49], "p95_ms": cuts[94], "p99_ms": cuts[98]}


def run_enqueue(system: System, n: int, scratch: Path, *, single: bool) -> float:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = _env(system, queue, scratch)
    _drive(system, env, "reset", timeout_s=60)
    try:
        args = ["enqueue", str(n), *(["--single"] if single else [])]
        return float(_drive(system, env, *args, timeout_s=60 + n / 50)["enqueue_per_s"])
    finally:
        _drive(system, env, "reset", timeout_s=60)


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


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def one_rep(system: System, args: argparse.Namespace, n: int, scratch: Path) -> dict[str, Any]:
    """The backlog run, then (unless skipped) the latency run, of one system."""
    try:
        got = run_backlog(system, n, scratch)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if not args.skip_latency:
        try:
            got["latency"] = run_latency(system, 100 if args.quick else 300, scratch)
        except Exception as exc:
            got["latency_error"] = f"{type(exc).__name__}: {exc}"
    return got


def enqueue_rates(
    systems: list[System], count: int, scratch: Path, notes: list[str]
) -> dict[str, Any]:
    rates: dict[str, dict[str, float]] = {}
    for system in systems:
        try:
            got = {"single": run_enqueue(system, count, scratch, single=True)}
            if system.family in HAS_BATCH:
                got["batch"] = run_enqueue(system, count, scratch, single=False)
            rates[system.name] = got
        except Exception as exc:
            notes.append(f"enqueue {system.name}: {type(exc).__name__}: {exc}")
        print(f"enqueue {system.name:18} {rates.get(system.name)}", flush=True)
    return rates


def summarize(raw: dict[str, list[dict[str, Any]]], notes: list[str]) -> dict[str, Any]:
    """Medians and min-max of each system's successful runs; failures into ``notes``."""
    backlog: dict[str, Any] = {}
    for name, runs in raw.items():
        ok = [r for r in runs if "error" not in r]
        errors = [r.get("error") or r.get("latency_error") for r in runs]
        if any(errors):
            first = next(e for e in errors if e)
            notes.append(f"{name}: {sum(map(bool, errors))} of {len(runs)} runs failed: {first}")
        if not ok:
            continue
        backlog[name] = {
            "tasks_per_s": _summary([r["tasks_per_s"] for r in ok]),
            "cpu_us_per_task": _summary([r["cpu_us_per_task"] for r in ok]),
            "runs": len(ok),
        }
        timed = [r["latency"] for r in ok if "latency" in r]
        if timed:
            backlog[name]["latency_ms"] = {
                p: statistics.median(t[f"{p}_ms"] for t in timed) for p in ("p50", "p95", "p99")
            }
    return backlog


def measure(args: argparse.Namespace, systems: list[System], notes: list[str]) -> dict[str, Any]:
    n = 2_000 if args.quick else 20_000
    scratch = Path(tempfile.mkdtemp(prefix="aioack-compare-"))
    started_load = os.getloadavg()
    probes = [cpu_probe()]
    raw: dict[str, list[dict[str, Any]]] = {s.name: [] for s in systems}
    for rep in range(args.reps):
        order = systems[rep % len(systems) :] + systems[: rep % len(systems)]
        for system in order:
            got = one_rep(system, args, n, scratch)
            print(f"rep {rep + 1} {system.name:18} {got}", flush=True)
            raw[system.name].append(got)
        probes.append(cpu_probe())
    enqueue = {}
    if not args.skip_enqueue:
        enqueue = enqueue_rates(systems, 1_000 if args.quick else 5_000, scratch, notes)
    probes.append(cpu_probe())
    busy = max(probes) / min(probes) - 1
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "backlog_tasks": n,
        "reps": args.reps,
        "machine": {**machine(), "loadavg_start": started_load, "loadavg_end": os.getloadavg()},
        "versions": versions(),
        "cpu_probe_s": probes,
        "busy": busy > BUSY_LIMIT,
        "busy_spread": busy,
        "settings": {s.name: s.settings for s in systems},
        "backlog": summarize(raw, notes),
        "backlog_raw": raw,
        "enqueue": enqueue,
        "notes": notes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000-task backlog (20,000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions, interleaved (3)")
    parser.add_argument("--only", default="", help="comma-separated system names")
    parser.add_argument("--skip-enqueue", action="store_true", help="no enqueue scenario")
    parser.add_argument("--skip-latency", action="store_true", help="no latency scenario")
    parser.add_argument("--in-venv", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    notes: list[str] = []
    if not args.in_venv:
        python = ensure_venv(notes)
        os.execv(str(python), [str(python), __file__, *sys.argv[1:], "--in-venv"])
    stamp = VENV / ".installed"
    if stamp.exists():
        notes += [f"not installed: {p}" for p in json.loads(stamp.read_text())["missing"]]
    wanted = {name for name in args.only.split(",") if name}
    systems = [s for s in SYSTEMS if not wanted or s.name in wanted]
    results = measure(args, systems, notes)
    sys.path.insert(0, str(ROOT))
    stamp_name = results["date"][:10] + ("-quick" if args.quick else "")
    out = BENCH / "results" / f"{stamp_name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    from benchmarks.peers import report

    report.write(results, out)


if __name__ == "__main__":
    main()
