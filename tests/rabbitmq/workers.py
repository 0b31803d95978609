"""Run ``python -m aioack worker`` subprocesses against RabbitMQ and read what they did."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from aioack.brokers.rabbitmq import RabbitMQBroker
from aioack.message import Message
from tests.rabbitmq import fault_app

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(
        self,
        queue: str,
        log: Path,
        broker_url: str,
        *,
        concurrency: int = 4,
        prefetch: int = 8,
        shutdown_timeout_s: float = 10.0,
    ) -> None:
        self.stderr_path = log.with_suffix(f".worker{os.getpid()}-{id(self)}.err")
        argv = [
            sys.executable, "-m", "aioack", "worker", "tests.rabbitmq.fault_app:app",
            "-Q", queue, "-c", str(concurrency), "--prefetch", str(prefetch),
            "--broker", broker_url, "--shutdown-timeout", str(shutdown_timeout_s),
        ]  # fmt: skip
        env = {**os.environ, "AIOACK_FAULT_QUEUE": queue, "AIOACK_FAULT_LOG": str(log)}
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=err, stdout=err)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def output(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait(10)


def events(log: Path, kind: str) -> list[list[str]]:
    """Lines of ``log`` starting with ``kind``, split into words."""
    if not log.exists():
        return []
    lines = log.read_text().splitlines()
    return [line.split()[1:] for line in lines if line.split()[:1] == [kind]]


def done_ids(log: Path) -> set[int]:
    return {int(words[0]) for words in events(log, "done")}


async def send(broker: RabbitMQBroker, queue: str, task: str, *args: object) -> str:
    """Publish one task message the way ``delay()`` would."""
    name = getattr(fault_app, task).options.name
    message = Message(id=f"{task}-{args[0]}", task=name, args=list(args))
    await broker.publish(queue, message.encode(), message_id=message.id)
    return message.id
