"""The systems the comparison measures, how each one's worker is started, and the
processes it watches (workers and brokers, through /proc).

Imported by ``benchmarks/compare.py`` in the peers' virtualenv; standard
library only at import time, so the project's virtualenv can import it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
AMQP = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
CONCURRENCY, PREFETCH = 50, 100


@dataclass(frozen=True)
class Load:
    """How much a worker takes at once. ``threads``: Celery's thread pool size and
    dramatiq's threads per process (None: Celery's solo pool, dramatiq's 8)."""

    concurrency: int = CONCURRENCY
    prefetch: int = PREFETCH
    threads: int | None = None


NOOP = Load()


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

    def worker_argv(self, queue: str, load: Load = NOOP) -> list[str]:
        py, bin_dir = sys.executable, Path(sys.executable).parent
        c, p = str(load.concurrency), str(load.prefetch)
        app = "benchmarks.peers.apps"
        raw = f"benchmarks.peers.raw_{'pika' if self.broker == 'rabbitmq' else 'redis'}"
        quiet = ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        pool = ["--pool", "solo"]
        if load.threads:
            pool = ["--pool", "threads", "--concurrency", str(load.threads)]
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
                *pool,
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
                str(load.threads or 8),
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
    System("saq", "saq", "redis", "concurrency=50, Redis pool concurrency + 100"),
    System("streaq", "streaq", "redis", "concurrency=50, prefetch=100, ack after run"),
    System("aioack-rabbitmq", "aioack", "rabbitmq", "quorum queue, confirms, late ack, c=50"),
    System("raw-rabbitmq", "raw", "rabbitmq", "aio-pika, quorum queue, qos 100, ack each"),
    System("celery-rabbitmq", "celery", "rabbitmq", "acks_late, pool=solo, prefetch_mult=100"),
    System("dramatiq-rabbitmq", "dramatiq", "rabbitmq", "ack after run, 1 process x 8 threads"),
    System("taskiq-rabbitmq", "taskiq", "rabbitmq", "taskiq-aio-pika, qos 100, when_executed"),
    System("aioack-sqlite", "aioack", "sqlite", "late ack (default), c=50, prefetch=100"),
]


# -- running one system's processes ------------------------------------------------


def env(
    system: System, queue: str, scratch: Path, load: Load = NOOP, **extra: str
) -> dict[str, str]:
    """The environment every process of one run gets (apps, producer, marker)."""
    found = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BENCH_BROKER_URL": system.url(scratch),
        "BENCH_QUEUE": queue,
        "BENCH_REDIS_URL": REDIS,
        "BENCH_PREFETCH": str(load.prefetch),
        "BENCH_CONCURRENCY": str(load.concurrency),
        **extra,
    }
    if load.threads:
        found["BENCH_THREADS"] = str(load.threads)
    return found


def drive(system: System, env: dict[str, str], *args: str, timeout_s: float) -> dict[str, Any]:
    """Run ``peers/drive.py`` (the system's own client) and return the JSON it prints."""
    argv = [sys.executable, "-m", "benchmarks.peers.drive", args[0], system.family, *args[1:]]
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
    )
    if done.returncode != 0:
        raise RuntimeError(f"drive {args[0]} failed: {done.stderr.strip().splitlines()[-1:]}")
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def start_worker(
    system: System, queue: str, env: dict[str, str], log: IO[bytes], load: Load = NOOP
) -> subprocess.Popen[bytes]:
    """One worker process through the system's CLI, in a process group of its own."""
    return subprocess.Popen(
        system.worker_argv(queue, load),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each worker's process group (it may have forked), all at once so
    their shutdowns overlap; SIGKILL to any still running 3 s later (the figures are
    taken by then, and some CLIs take 10 s to exit: taskiq's process manager)."""
    running = [w for w in workers if w.poll() is None]
    for worker in running:
        os.killpg(worker.pid, 15)
    deadline = time.monotonic() + 3
    for worker in running:
        try:
            worker.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, 9)
            worker.wait(10)


# -- /proc -------------------------------------------------------------------------


def tree_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and every process descended from it (a CLI may fork its worker)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        total += _rss_kib(current)
    return total


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0  # gone, or a kernel thread


def broker_pid(broker: str) -> str:
    """The pid of the broker's server process (redis-server, RabbitMQ's beam.smp), or ""
    (SQLite has none; a broker elsewhere cannot be read)."""
    pattern = {"redis": ["-x", "redis-server"], "rabbitmq": ["-f", "beam.smp"]}.get(broker)
    if not pattern:
        return ""
    found = subprocess.run(["pgrep", *pattern], capture_output=True, text=True).stdout.split()
    if broker == "redis" and len(found) > 1:  # several servers: the one on our port
        port = REDIS.rsplit(":", 1)[-1].split("/")[0]
        found = [p for p in found if f":{port}" in Path(f"/proc/{p}/cmdline").read_text()]
    return found[0] if len(found) == 1 else ""
