"""``python -m aioack``: the command line. ``main(argv) -> int`` for tests."""

from __future__ import annotations

import argparse
import asyncio
import enum
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from aioack.app import ENV_BROKER_URL, ENV_RESULTS_URL, App
from aioack.brokers import MemoryBroker
from aioack.errors import BrokerUnavailable, ConfigurationError
from aioack.hooks import check as check_hook
from aioack.worker import CLOSE_ALLOWANCE_S


class ExitCode(enum.IntEnum):
    """Process exit codes of ``python -m aioack``."""

    OK = 0  #: stopped cleanly (signal drained, or --burst found the queues empty)
    INTERNAL_ERROR = 1  #: a bug in aioack or the app: see the traceback
    USAGE = 2  #: bad command line
    CONFIG_ERROR = 3  #: settings that cannot work: the message says what to change
    APP_NOT_FOUND = 4  #: the module:app could not be imported or is not an App
    BROKER_UNAVAILABLE = 5  #: the broker or the result backend could not be reached at start
    FORCED_STOP = 6  #: a second signal cut the grace period short


EPILOG = """\
examples:
  python -m aioack worker myproj.tasks:app
  python -m aioack worker myproj.tasks:app -Q default,emails -c 100 --prefetch 200
  python -m aioack worker myproj.tasks:app --broker redis://127.0.0.1:6379/0 --burst
  python -m aioack worker myproj.tasks:app --hook myproj.metrics:TimingHook
  AIOACK_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/ python -m aioack worker myproj.tasks:app

exit codes:
""" + "\n".join(f"  {code.value}  {code.name}" for code in ExitCode)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aioack",
        description="aioack: an asyncio task queue with acknowledgement done right.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    worker = commands.add_parser(
        "worker",
        help="run a worker for an App",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument("app", help="the App to run, as module.path:attribute")
    worker.add_argument(
        "-Q", "--queues", help="comma-separated queues (default: the tasks' queues)"
    )
    worker.add_argument("-c", "--concurrency", type=int, default=10, help="tasks run at once (10)")
    worker.add_argument("--prefetch", type=int, help="deliveries held at once (2 x concurrency)")
    worker.add_argument("--burst", action="store_true", help="exit 0 when the queues are empty")
    worker.add_argument(
        "--broker",
        help=f"broker URL (default: the app's, else ${ENV_BROKER_URL}, else sqlite://: "
        "the file aioack.db here)",
    )
    worker.add_argument(
        "--results",
        help=f"result backend URL (default: the app's, else ${ENV_RESULTS_URL}, else none)",
    )
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
    worker.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="(INFO)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on errors (2)
        return int(exc.code or 0)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("aioack.cli")
    try:
        app = load_app(args.app)
    except (ImportError, AttributeError, TypeError) as exc:
        log.error("cannot load %r: %s", args.app, exc)
        return ExitCode.APP_NOT_FOUND
    try:
        return asyncio.run(_run_worker(app, args))
    except (ConfigurationError, ValidationError) as exc:
        log.error("configuration error: %s", exc)
        return ExitCode.CONFIG_ERROR
    except BrokerUnavailable as exc:
        log.error("broker unavailable: %s", exc)
        return ExitCode.BROKER_UNAVAILABLE


async def _run_worker(app: App, args: argparse.Namespace) -> int:
    # --broker / --results win; otherwise the App already followed the one rule
    # (its code's own choice, else AIOACK_BROKER_URL / AIOACK_RESULTS_URL, else
    # the SQLite default file).
    if args.broker:
        app.use_broker(args.broker)
    if args.results:
        app.use_results(args.results)
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
        await _close(app)
    return ExitCode.FORCED_STOP if worker.forced else ExitCode.OK


async def _close(app: App) -> None:
    """Close the connections, but never let a dead broker hold the exit."""
    try:
        async with asyncio.timeout(CLOSE_ALLOWANCE_S):
            await app.aclose()
    except TimeoutError:
        logging.getLogger("aioack.cli").warning(
            "closing the broker connections took over %.1fs; exiting anyway", CLOSE_ALLOWANCE_S
        )


def load_app(spec: str) -> App:
    """Import ``module.path:attribute`` and check that it is an App."""
    app = _load(spec)
    if not isinstance(app, App):
        raise TypeError(f"{spec} is a {type(app).__name__}, not an aioack App")
    return app


def load_hook(spec: str) -> object:
    """Import a hook: ``module.path:attribute``, an object or a class made with no arguments.

    Raises:
        ConfigurationError: it cannot be imported or made, or is no hook.
    """
    try:
        hook = _load(spec)
        if isinstance(hook, type):
            hook = hook()
    except (ImportError, AttributeError, TypeError) as exc:
        raise ConfigurationError(f"--hook {spec}: {exc}") from exc
    check_hook(hook)
    return hook


def _load(spec: str) -> object:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ImportError(f"{spec!r}: expected module.path:attribute, e.g. myproj.tasks:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the current directory imports
    return getattr(importlib.import_module(module_name), attribute)
