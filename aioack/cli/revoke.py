"""``python -m aioack revoke ID...``: stop task runs by id, from a shell.

Revocations live in the result backend (docs/task-control.md): the App's,
or ``--results URL`` (else ``$AIOACK_RESULTS_URL``). No broker is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from aioack.app import App
from aioack.cli.codes import ExitCode
from aioack.cli.loading import load_app
from aioack.cli.worker import close
from aioack.results.revocations import MAX_IDS_PER_CALL

EXAMPLES = """\
  python -m aioack revoke --app myproj.tasks:app 3f2a9c...
  python -m aioack revoke --results redis://127.0.0.1:6379/0 --terminate ID1 ID2
  some-query | python -m aioack revoke --app myproj.tasks:app --expires 86400 -
"""

logger = logging.getLogger("aioack.cli")


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    revoke = commands.add_parser(
        "revoke",
        help="revoke task runs by id: queued and delayed ones are not run",
        epilog="examples:\n" + EXAMPLES + "\n" + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    revoke.add_argument("ids", nargs="+", metavar="ID", help="task ids; - reads them from stdin")
    revoke.add_argument("--app", help="the App (module.path:attribute): its result backend")
    revoke.add_argument(
        "--results", help="result backend URL (default: the app's, else $AIOACK_RESULTS_URL)"
    )
    revoke.add_argument(
        "--terminate",
        action="store_true",
        help="also cancel runs going on now (a plain def in a thread runs on; "
        "its result is not stored)",
    )
    revoke.add_argument(
        "--expires",
        type=float,
        metavar="SECONDS",
        help="how long workers keep the revocation (the App's revoke_expires: 10800)",
    )
    revoke.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    app = load_app(args.app) if args.app else App(broker="memory://")  # no broker is used
    if args.results:
        app.use_results(args.results)
    ids = _read_ids(args.ids)
    return asyncio.run(_revoke(app, ids, args))


def _read_ids(given: list[str]) -> list[str]:
    if given != ["-"]:
        return given
    ids = []
    for line in sys.stdin:
        if line.strip():
            ids.append(line.strip())
        if len(ids) > MAX_IDS_PER_CALL:
            break  # revoke() refuses the lot with a clear message
    return ids


async def _revoke(app: App, ids: list[str], args: argparse.Namespace) -> int:
    try:
        try:
            await app.revoke(ids, terminate=args.terminate, expires=args.expires)
        except ValueError as exc:
            logger.error("%s", exc)
            return ExitCode.USAGE
        print(f"revoked {len(ids)} task(s){' (terminate)' if args.terminate else ''}")
        return ExitCode.OK
    finally:
        await close(app)
