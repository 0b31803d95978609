"""The worker's hot path before and after a change, with the raw loop, in one run.

    python benchmarks/bench_hotpath.py --before 2df6728 [--tasks 20000] [--reps 5]

Checks ``--before`` (a git ref) out into a temporary worktree, then, for each
repetition and in rotating order: the raw redis-py loop
(``benchmarks/peers/raw_redis.py``), a ``python -m aioack worker`` process of
the ref's aioack, and one of this checkout's, each on the same backlog of
no-op tasks (enqueued by that version's own ``publish_many``, so each reads
the entries it writes). Each worker runs ``benchmarks/peers/apps/aioack_app.py``
and the shared task body (``peers/marker.py``): tasks/s from the first run to
the last and the worker's CPU µs per task over the same window, start-up
excluded. Prints medians and min-max, and each version's rate as a share
of the raw loop's in the same repetitions. Uses Redis database 9 (emptied).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from redis import Redis

ROOT = Path(__file__).resolve().parents[1]
URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
WAIT_S = 300.0

# Runs a module of the tree given as argv[1] with *that* tree's aioack: the
# project's editable install would otherwise win over sys.path.
LAUNCH = """
import runpy, sys
tree = sys.argv[1]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path[:0] = [tree, sys.argv[2]]
args = sys.argv[3:]
if args[0] == "-c":
    sys.argv = ["-c", *args[2:]]
    exec(compile(args[1], "<script>", "exec"), {"__name__": "__main__"})
else:
    sys.argv = args
    runpy.run_module(args[0], run_name="__main__", alter_sys=True)
"""

ENQUEUE = """
import asyncio, os, sys
from aioack.brokers.redis import RedisBroker
from aioack.message import Message, new_task_id

async def main(n: int) -> None:
    broker = RedisBroker(os.environ["BENCH_BROKER_URL"])
    await broker.connect()
    items = []
    for _ in range(n):
        message = Message(id=new_task_id(), task="bench.noop")
        items.append((message.id, message.encode()))
    for start in range(0, n, 500):
        await broker.publish_many(os.environ["BENCH_QUEUE"], items[start : start + 500])
    await broker.aclose()

asyncio.run(main(int(sys.argv[1])))
"""


def python_in(tree: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", LAUNCH, str(tree), str(ROOT), *args]


def run_once(system: str, tree: Path | None, n: int, marks: Redis) -> dict[str, float]:
    """One backlog through one worker process: {tasks_per_s, cpu_us_per_task}."""
    marks.flushdb()
    key = f"bench:done:{uuid.uuid4().hex}"
    queue = f"hot-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "BENCH_N": str(n),
        "BENCH_KEY": key,
        "BENCH_REDIS_URL": URL,
        "BENCH_BROKER_URL": URL,
        "BENCH_QUEUE": queue,
    }
    if tree is None:  # the raw loop: its producer makes the group, then the backlog
        fill = "from benchmarks.peers import raw_redis as r; import asyncio\n"
        fill += "async def f():\n async with r.producer() as (one, many):\n"
        fill += f"  [await many(500) for _ in range({n} // 500)]\nasyncio.run(f())"
        subprocess.run([sys.executable, "-c", fill], cwd=ROOT, env=env, check=True)
        worker_argv = [sys.executable, "-m", "benchmarks.peers.raw_redis"]
    else:
        subprocess.run(python_in(tree, "-c", ENQUEUE, str(n)), cwd=ROOT, env=env, check=True)
        app = "benchmarks.peers.apps.aioack_app:app"
        worker_argv = python_in(tree, "aioack", "worker", app, "-c", "50", "--prefetch", "100")
        worker_argv += ["--log-level", "WARNING"]
    worker = subprocess.Popen(worker_argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + WAIT_S
        while (raw := marks.get(key)) is None:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"{system}: no completion window (worker exit {worker.poll()})")
            time.sleep(0.05)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    window = json.loads(raw)
    return {
        "tasks_per_s": window["runs"] / window["wall_s"],
        "cpu_us_per_task": window["cpu_s"] / window["runs"] * 1e6,
    }


def main(args: argparse.Namespace) -> None:
    marks = Redis.from_url(URL)
    with tempfile.TemporaryDirectory(prefix="aioack-before-") as scratch:
        before = Path(scratch) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(before), args.before],
            cwd=ROOT,
            check=True,
        )
        systems: list[tuple[str, Path | None]] = [
            ("raw-redis", None),
            (f"aioack@{args.before}", before),
            ("aioack (this checkout)", ROOT),
        ]
        figures: dict[str, list[dict[str, float]]] = {name: [] for name, _ in systems}
        try:
            for rep in range(args.reps):
                order = systems[rep % 3 :] + systems[: rep % 3]
                for name, tree in order:
                    figures[name].append(run_once(name, tree, args.tasks, marks))
                    print(f"rep {rep + 1} {name}: {figures[name][-1]}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT)
            marks.flushdb()
    raw_rates = [f["tasks_per_s"] for f in figures["raw-redis"]]
    print(f"\n{args.tasks} no-op tasks, {args.reps} repetitions, medians (min-max):")
    print("| system | tasks/s | worker CPU µs/task | / raw |")
    print("|---|---|---|---|")
    for name, runs in figures.items():
        rates = [f["tasks_per_s"] for f in runs]
        cpus = [f["cpu_us_per_task"] for f in runs]
        share = statistics.median(r / b for r, b in zip(rates, raw_rates, strict=True))
        print(
            f"| {name} | {statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f}) "
            f"| {statistics.median(cpus):.1f} ({min(cpus):.1f}-{max(cpus):.1f}) "
            f"| {share:.0%} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git ref of the version to compare with")
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=5)
    main(parser.parse_args())
