"""``python -m aioack scheduler MODULE:APP``: fire the App's periodic tasks until a signal.

Workers run the same scheduler by default (``worker --no-scheduler`` turns
it off): each tick is claimed in the result backend, so any number of
schedulers fire it once (docs/periodic.md).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aioack.app import App
from aioack.cli.codes import ExitCode
from aioack.cli.scheduling import add_lease_argument, new_scheduler
from aioack.cli.worker import add_broker_arguments, app_for, close
from aioack.errors import ConfigurationError

EXAMPLES = """\
  python -m aioack scheduler myproj.tasks:app
  python -m aioack scheduler myproj.tasks:app --results redis://127.0.0.1:6379/0
  python -m aioack scheduler myproj.tasks:app --scheduler-lease 10
"""


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    parser = commands.add_parser(
        "scheduler",
        help="fire the App's periodic tasks (each tick once, however many schedulers run)",
        epilog="examples:\n" + EXAMPLES + "\n" + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("app", help="the App whose schedules to fire, as module.path:attribute")
    add_broker_arguments(parser)
    add_lease_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    app = app_for(args)
    return asyncio.run(_run(app, args))


async def _run(app: App, args: argparse.Namespace) -> int:
    if not app.schedules:
        raise ConfigurationError(f"{args.app} declares no periodic task (app.periodic(...))")
    scheduler = new_scheduler(app, args.scheduler_lease)
    loop = asyncio.get_running_loop()
    running = asyncio.current_task()
    assert running is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, running.cancel)
    try:
        await scheduler.run()
    except asyncio.CancelledError:
        pass  # a signal: stop; a claim taken and not published was freed on the way out
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await close(app)
    return ExitCode.OK
