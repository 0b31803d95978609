"""``python -m aioack worker MODULE:APP``: run a worker until a signal (or --burst)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from aioack.app import ENV_BROKER_URL, ENV_RESULTS_URL, App
from aioack.brokers import MemoryBroker
from aioack.cli.codes import ExitCode
from aioack.cli.loading import load_app, load_hook
from aioack.errors import ConfigurationError
from aioack.worker import CLOSE_ALLOWANCE_S

EXAMPLES = """\
examples:
  python -m aioack worker myproj.tasks:app
  python -m aioack worker myproj.tasks:app -Q default,emails -c 100 --prefetch 200
  python -m aioack worker myproj.tasks:app --broker redis://127.0.0.1:6379/0 --burst
  python -m aioack worker myproj.tasks:app --hook myproj.metrics:TimingHook
  AIOACK_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/ python -m aioack worker myproj.tasks:app
"""


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    worker = commands.add_parser(
        "worker",
        help="run a worker for an App",
        epilog=EXAMPLES + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument("app", help="the App to run, as module.path:attribute")
    worker.add_argument(
        "-Q", "--queues", help="comma-separated queues (default: the tasks' queues)"
    )
    worker.add_argument("-c", "--concurrency", type=int, default=10, help="tasks run at once (10)")
    worker.add_argument("--prefetch", type=int, help="deliveries held at once (2 x concurrency)")
    worker.add_argument("--burst", action="store_true", help="exit 0 when the queues are empty")
    add_broker_arguments(worker)
    worker.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="seconds running tasks get to finish on SIGTERM (30)",
    )
    worker.add_argument(
        "--hook",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="a hook (see docs/hooks.md): an object, or a class made with no arguments; repeatable",
    )
    worker.set_defaults(run=run)


def add_broker_arguments(parser: argparse.ArgumentParser, *, results: bool = True) -> None:
    parser.add_argument(
        "--broker",
        help=f"broker URL (default: the app's, else ${ENV_BROKER_URL}, else sqlite://: "
        "the file aioack.db here)",
    )
    if not results:
        return
    parser.add_argument(
        "--results",
        help=f"result backend URL (default: the app's, else ${ENV_RESULTS_URL}, else none)",
    )


def app_for(args: argparse.Namespace) -> App:
    """The App the command line names, on the broker and results it names.

    --broker / --results win; otherwise the App already followed the one rule
    (its code's own choice, else AIOACK_BROKER_URL / AIOACK_RESULTS_URL, else
    the SQLite default file).
    """
    app = load_app(args.app)
    if args.broker:
        app.use_broker(args.broker)
    if getattr(args, "results", None):  # commands without --results have none
        app.use_results(args.results)
    return app


def run(args: argparse.Namespace) -> int:
    app = app_for(args)
    return asyncio.run(_run(app, args))


async def _run(app: App, args: argparse.Namespace) -> int:
    if isinstance(app.broker, MemoryBroker):
        raise ConfigurationError(
            "memory:// lives inside one process: a worker started from the command line "
            "can never receive what another process enqueues. Use the default sqlite:// "
            "(a file, no server), or redis:// / amqp://"
        )
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    worker = app.worker(
        queues,
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        shutdown_timeout=args.shutdown_timeout,
        hooks=[load_hook(spec) for spec in args.hook],
    )
    try:
        await worker.run(burst=args.burst, install_signal_handlers=True)
    finally:
        await close(app)
    return ExitCode.FORCED_STOP if worker.forced else ExitCode.OK


async def close(app: App) -> None:
    """Close the connections, but never let a dead broker hold the exit."""
    try:
        async with asyncio.timeout(CLOSE_ALLOWANCE_S):
            await app.aclose()
    except TimeoutError:
        logging.getLogger("aioack.cli").warning(
            "closing the broker connections took over %.1fs; exiting anyway", CLOSE_ALLOWANCE_S
        )
