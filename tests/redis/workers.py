"""Real worker processes for the fault tests, and reading what their tasks recorded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``python -m aioack worker tests.redis.fault_app:app`` with its output in a log file."""

    def __init__(
        self,
        directory: Path,
        queue: str,
        broker_url: str,
        *,
        concurrency: int = 4,
        prefetch: int = 8,
        shutdown_timeout: float = 10.0,
    ) -> None:
        self.log = directory / f"worker-{len(list(directory.glob('worker-*.log')))}.log"
        argv = [sys.executable, "-m", "aioack", "worker", "tests.redis.fault_app:app"]
        argv += ["-Q", queue, "-c", str(concurrency), "--prefetch", str(prefetch)]
        argv += ["--broker", broker_url, "--shutdown-timeout", str(shutdown_timeout)]
        env = {**os.environ, "AIOACK_FAULT_QUEUE": queue, "AIOACK_FAULT_DIR": str(directory)}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        return self.process.wait(timeout_s)

    def stop(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def events(directory: Path, kind: str) -> list[tuple[int, int]]:
    """(task number, pid) per line of the ``started`` or ``done`` file."""
    path = directory / kind
    if not path.exists():
        return []
    pairs = []
    for line in path.read_text().splitlines():
        n, pid = line.split()
        pairs.append((int(n), int(pid)))
    return pairs


def counts(directory: Path, kind: str) -> Counter[int]:
    return Counter(n for n, _ in events(directory, kind))
