"""Enqueue tasks and read their results from plain sync code, from any thread.

    python examples/sync_producer.py [BROKER_URL [RESULTS_URL]]

No ``async`` here, as in a Django view, a management command or a cron
script: ``task.delay_sync(...)`` publishes and ``result.get_sync(timeout=...)``
waits for the value, each blocking only its own thread. By default the broker
and the results are a fresh SQLite file (no server). The script starts a
worker process for the tour and stops it at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, Python puts only examples/ on the path


def main(broker_url: str, results_url: str) -> int:
    # Before the import: the App reads them when it is made (and the worker inherits them).
    os.environ["AIOACK_BROKER_URL"], os.environ["AIOACK_RESULTS_URL"] = broker_url, results_url
    from aioack import InvalidArguments
    from examples.sync_tasks import add, app, count_tags

    command = [sys.executable, "-m", "aioack", "worker", "examples.sync_tasks:app", "-c", "4"]
    worker = subprocess.Popen([*command, "--log-level", "ERROR"], cwd=ROOT)
    try:
        first = add.delay_sync(2, 2)  # returns once the broker holds the run
        second = add.delay_sync(40, 2)
        print(f"2 + 2 = {first.get_sync(timeout=30)}")
        print(f"40 + 2 = {second.get_sync(timeout=30)}")
        print(f"tags: {count_tags.delay_sync({'a', 'b'}).get_sync(timeout=30)}")
        try:
            add.delay_sync(2, "2")  # type: ignore[arg-type]
        except InvalidArguments as exc:
            print(f"refused at the call site: {str(exc).splitlines()[0]}")
        with ThreadPoolExecutor(8) as pool:  # the same calls, from 8 threads at once
            sums = list(pool.map(lambda n: add.delay_sync(n, n).get_sync(timeout=30), range(16)))
        print(f"8 threads: {len(sums)} results, all right: {sums == [2 * n for n in range(16)]}")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        app.close_sync()  # also done at exit; here the script says when
    print(f"the worker exited with {worker.returncode}")
    return 0


if __name__ == "__main__":
    folder = Path(tempfile.mkdtemp(prefix="aioack-sync-"))
    default = f"sqlite:///{folder / 'aioack.db'}"
    broker = sys.argv[1] if len(sys.argv) > 1 else default
    results = sys.argv[2] if len(sys.argv) > 2 else default.replace("aioack.db", "results.db")
    sys.exit(main(broker, results))
