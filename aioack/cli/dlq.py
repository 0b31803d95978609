"""``python -m aioack dlq list | show | replay | purge``: dead letters without scripts.

Each action runs on the broker an App names (``MODULE:APP``, like
``worker``), or on ``--broker URL`` (else ``$AIOACK_BROKER_URL``, else the
SQLite default) with ``-Q QUEUE``. The choosing and moving is the broker's
(``BrokerAdmin``); this module parses, checks and shows.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich import progress

from aioack.app import App
from aioack.brokers import Broker, LetterFilter, MemoryBroker
from aioack.brokers.base import LETTER_BATCH, MAX_LETTER_BATCH
from aioack.brokers.deadletters import MAX_VALUE_CHARS, REASONS
from aioack.cli import dlq_view as view
from aioack.cli.codes import ExitCode
from aioack.cli.worker import add_broker_arguments, app_for
from aioack.errors import BrokerError, BrokerUnavailable, ConfigurationError, ReplayStopped
from aioack.worker import CLOSE_ALLOWANCE_S

EXAMPLES = """\
examples:
  python -m aioack dlq list myproj.tasks:app
  python -m aioack dlq list --broker redis://127.0.0.1:6379/0 -Q emails --reason failed --json
  python -m aioack dlq show myproj.tasks:app 1712345678901-0
  python -m aioack dlq replay myproj.tasks:app --task emails.send --older-than 1h --dry-run
  python -m aioack dlq replay myproj.tasks:app --all
  python -m aioack dlq purge myproj.tasks:app --reason malformed --yes
"""

#: A dry run shows this many of the letters it would act on.
PREVIEW_ROWS = 20
#: A replay or purge over a queue holding at least this many letters shows a progress bar.
PROGRESS_FROM = 100

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class _Ask:
    """A question between two visits to the broker (``dlq purge``'s confirmation).

    Asked with no event loop running and no connection open: Ctrl-C or the
    end of input answers it at once, and nothing waits on the broker
    meanwhile.
    """

    prompt: str
    #: What runs on the broker after a yes.
    then: Command
    #: What is said after any other answer.
    declined: str


Command = Callable[[Broker, list[str], LetterFilter, argparse.Namespace], Awaitable[int | _Ask]]


class _Failed(Exception):
    """A message for the user and the exit code it ends with."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- arguments -----------------------------------------------------------------


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    dlq = commands.add_parser(
        "dlq",
        help="list, show, replay or purge dead letters",
        description="Dead letters: find them, read them, put them back, or remove them.",
        epilog=EXAMPLES + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, summary, command in (
        ("list", "list dead letters: reason, task, age, error", _list),
        ("show", "show one dead letter with its traceback and body", _show),
        ("replay", "put dead letters back on their queue, as fresh messages", _replay),
        ("purge", "remove dead letters for good", _purge),
    ):
        parser = actions.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=EXAMPLES + epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _where_arguments(parser)
        if name == "show":
            parser.add_argument("id", type=_value("id"), metavar="ID", help="the letter's id")
            parser.add_argument("--json", action="store_true", help="print it as JSON")
        else:
            _selection_arguments(parser, all_flag=name in ("replay", "purge"))
        if name == "list":
            parser.add_argument("--json", action="store_true", help="print a JSON array")
        if name in ("replay", "purge"):
            parser.add_argument(
                "--dry-run", action="store_true", help="show what would be done, do nothing"
            )
            parser.add_argument(
                "--batch-size",
                type=_count(MAX_LETTER_BATCH),
                default=LETTER_BATCH,
                help=f"letters moved per round trip (1-{MAX_LETTER_BATCH}; {LETTER_BATCH})",
            )
        if name == "purge":
            parser.add_argument("-y", "--yes", action="store_true", help="do not ask first")
        parser.set_defaults(run=_runner(command), usage=parser.format_usage())


def _where_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "app",
        nargs="?",
        metavar="MODULE:APP",
        help="the App whose broker and queues to use (else --broker and -Q)",
    )
    add_broker_arguments(parser, results=False)
    parser.add_argument(
        "-Q",
        "--queue",
        help="comma-separated queues (default: the App's queues; needed without an App)",
    )


def _selection_arguments(parser: argparse.ArgumentParser, *, all_flag: bool) -> None:
    chosen = parser.add_argument_group("which letters (each one given must hold)")
    if all_flag:
        chosen.add_argument("--all", action="store_true", help="every letter of the queues")
    chosen.add_argument(
        "--id", action="append", default=[], type=_value("id"), help="a letter's id; repeatable"
    )
    chosen.add_argument(
        "--reason",
        action="append",
        default=[],
        type=_reason,
        help=f"repeatable; one of: {', '.join(REASONS)}",
    )
    chosen.add_argument(
        "--task", action="append", default=[], type=_value("task"), help="task name; repeatable"
    )
    chosen.add_argument(
        "--older-than",
        type=_duration,
        metavar="AGE",
        help="dead-lettered at least AGE ago: 90, 90s, 15m, 2h, 7d",
    )
    chosen.add_argument(
        "--newer-than", type=_duration, metavar="AGE", help="dead-lettered less than AGE ago"
    )
    default = "100" if not all_flag else "no limit"
    chosen.add_argument(
        "--limit", type=_count(None), help=f"at most this many letters per queue ({default})"
    )


def _value(what: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if not 0 < len(text) <= MAX_VALUE_CHARS or not text.isprintable():
            raise argparse.ArgumentTypeError(
                f"a {what} is 1-{MAX_VALUE_CHARS} printable characters, got {text!r:.60}"
            )
        return text

    return check


def _reason(text: str) -> str:
    if text in REASONS:
        return text
    close = difflib.get_close_matches(text, REASONS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise argparse.ArgumentTypeError(
        f"unknown reason {text!r:.60}{hint} (one of: {', '.join(REASONS)})"
    )


def _duration(text: str) -> float:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r:.60} is not an age: a number of seconds, or with a unit: 90s, 15m, 2h, 7d"
        )
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _count(most: int | None) -> Callable[[str], int]:
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1 or (most is not None and value > most):
            upper = f"-{most}" if most is not None else " or more"
            raise argparse.ArgumentTypeError(f"expected a whole number 1{upper}, got {text!r:.60}")
        return value

    return check


def _selection(args: argparse.Namespace) -> LetterFilter:
    try:
        where = LetterFilter(
            ids=args.id,
            reasons=args.reason,
            tasks=args.task,
            older_than_s=args.older_than,
            newer_than_s=args.newer_than,
        )
    except ConfigurationError as exc:  # too many values: the types checked each one
        raise _Failed(ExitCode.USAGE, str(exc)) from exc
    if getattr(args, "all", None) is None:  # list: no selection is every letter
        return where
    if args.all and not where.everything:
        raise _Failed(ExitCode.USAGE, "--all takes every letter: give it or a selection, not both")
    if not args.all and where.everything:
        raise _Failed(
            ExitCode.USAGE,
            f"say which letters to {args.action}: --all, or --id, --reason, --task, "
            "--older-than, --newer-than",
        )
    return where


# -- running -------------------------------------------------------------------


def _runner(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            where = LetterFilter() if args.action == "show" else _selection(args)
            app = app_for(args) if args.app else App(args.broker) if args.broker else App()
            outcome = asyncio.run(_on_broker(app, args, where, command))
            while isinstance(outcome, _Ask):
                if not _confirm(outcome.prompt):
                    print(outcome.declined, file=sys.stderr)
                    return ExitCode.ABORTED
                outcome = asyncio.run(_on_broker(app, args, where, outcome.then))
            return outcome
        except _Failed as failed:
            print(f"aioack dlq {args.action}: {failed}", file=sys.stderr)
            if failed.code is ExitCode.USAGE:
                print(args.usage, end="", file=sys.stderr)
            return failed.code

    return run


async def _on_broker(
    app: App, args: argparse.Namespace, where: LetterFilter, command: Command
) -> int | _Ask:
    broker = app.broker
    if isinstance(broker, MemoryBroker):
        raise ConfigurationError(
            "memory:// lives inside one process: no other process's dead letters are there. "
            "Name the broker the workers use: --broker URL or AIOACK_BROKER_URL"
        )
    await broker.connect()
    try:
        queues = await _queues(app, broker, args)
        return await command(broker, queues, where, args)
    except BrokerUnavailable:
        raise  # the command line's exit code 5
    except BrokerError as exc:  # the broker refused (a replayed copy, say)
        done = "replayed" if args.action == "replay" else "purged"
        raise _Failed(
            ExitCode.BROKER_UNAVAILABLE,
            f"the broker refused: {exc}. The letters {done} before stay {done}; every other "
            "letter is still a dead letter, none was lost"
            + (
                " (on RabbitMQ, a copy whose confirm never came back may be queued as well: "
                "a duplicate). Run it again to finish"
                if args.action == "replay"
                else ""
            ),
        ) from exc
    finally:
        try:
            async with asyncio.timeout(CLOSE_ALLOWANCE_S):
                await broker.aclose()
        except TimeoutError:
            pass  # exiting anyway: the broker gives back what this process held


async def _queues(app: App, broker: Broker, args: argparse.Namespace) -> list[str]:
    """The queues to act on; each must be the App's or known to the broker."""
    known = app.queues() if args.app else []
    if args.queue:
        names = list(dict.fromkeys(q.strip() for q in args.queue.split(",") if q.strip()))
    elif args.app:
        names = known or ["default"]
    else:
        raise _Failed(
            ExitCode.USAGE,
            "name the queue: -Q QUEUE (or give the App, as in: dlq list myproj.tasks:app)",
        )
    for queue in names:
        if queue not in known and not await broker.has_queue(queue):
            theirs = f"; the App's queues: {', '.join(known)}" if known else ""
            raise _Failed(
                ExitCode.NOT_FOUND,
                f"unknown queue {queue!r} on {broker.location}: nothing was ever declared, "
                f"queued or dead-lettered under that name{theirs}",
            )
    return names


# -- the actions ---------------------------------------------------------------


async def _list(
    broker: Broker, queues: list[str], where: LetterFilter, args: argparse.Namespace
) -> int:
    limit, now = args.limit or 100, time.time()
    letters = [
        letter
        for queue in queues
        for letter in await broker.dead_letters(queue, limit, where=where)
    ]
    if args.json:
        print(view.dumps([view.letter_json(letter, now) for letter in letters]))
        return ExitCode.OK
    out = view.console()
    matching = "" if where.everything else f" matching {where.describe()}"
    if letters:
        out.print(view.letters_table(letters, now, with_queue=len(queues) > 1))
    totals = [f"{(await broker.stats(q)).dead} in {q}" for q in queues]
    out.print(
        f"{view.letters(len(letters))} shown{matching} (limit {limit} per queue); "
        f"dead letters: {', '.join(totals)}",
        markup=False,
    )
    if letters:
        out.print("read one with: python -m aioack dlq show [MODULE:APP] ID", markup=False)
    return ExitCode.OK


async def _show(
    broker: Broker, queues: list[str], where: LetterFilter, args: argparse.Namespace
) -> int:
    now = time.time()
    for queue in queues:
        letter = await broker.get_dead_letter(queue, args.id)
        if letter is not None:
            shown = view.letter_json(letter, now, full=True) if args.json else None
            print(view.dumps(shown) if shown else view.describe(letter, now))
            return ExitCode.OK
    raise _Failed(
        ExitCode.NOT_FOUND,
        f"no dead letter with id {args.id!r} in {', '.join(queues)}; "
        "`dlq list` shows the letters' ids",
    )


async def _replay(
    broker: Broker, queues: list[str], where: LetterFilter, args: argparse.Namespace
) -> int:
    await _require_ids(broker, queues, where)
    if args.dry_run:
        return await _dry_run(broker, queues, where, args, "replay")
    for index, queue in enumerate(queues):
        with _progress(args, (await broker.stats(queue)).dead, f"replaying {queue}") as report:
            try:
                moved = await broker.replay_dead_letters(
                    queue, where, limit=args.limit, batch_size=args.batch_size, on_batch=report
                )
            except ReplayStopped as stopped:
                raise _Failed(
                    ExitCode.QUEUE_FULL, _stopped(stopped, where, queues[index + 1 :])
                ) from stopped
        print(
            f"replayed {view.letters(moved)} of {queue} ({where.describe()}): back on {queue} "
            "as fresh messages, attempt 1"
        )
    return ExitCode.OK


def _stopped(stopped: ReplayStopped, where: LetterFilter, untouched: list[str]) -> str:
    queue, bound = stopped.queue, stopped.max_length
    limit = f"max_length={bound}" if bound is not None else "its length limit"
    rest = f"; not started: {', '.join(untouched)}" if untouched else ""
    return (
        f"{queue} is full ({limit}): replayed {view.letters(stopped.replayed)} of {queue} "
        f"({where.describe()}) before it filled up. The other letters are still dead "
        f"letters, none lost or duplicated: replay again once workers have made room{rest}"
    )


async def _purge(
    broker: Broker, queues: list[str], where: LetterFilter, args: argparse.Namespace
) -> int | _Ask:
    await _require_ids(broker, queues, where)
    if args.dry_run:
        return await _dry_run(broker, queues, where, args, "purge")
    if args.yes:
        return await _purge_each(broker, queues, where, args, None)
    # What the user agrees to is these letters, by id: not letters added meanwhile.
    counted = {
        queue: await broker.dead_letter_ids(
            queue, where, limit=args.limit, batch_size=args.batch_size
        )
        for queue in queues
    }
    total = sum(len(ids) for ids in counted.values())
    if total == 0:
        print(f"no dead letters to purge in {', '.join(queues)} ({where.describe()})")
        return ExitCode.OK

    async def purge_counted(
        broker: Broker, queues: list[str], where: LetterFilter, args: argparse.Namespace
    ) -> int:
        return await _purge_each(broker, queues, where, args, counted)

    prompt = (
        f"purge {view.letters(total)} of {', '.join(queues)} ({where.describe()})? "
        "They cannot be replayed afterwards. [y/N] "
    )
    return _Ask(prompt, purge_counted, declined="nothing purged")


async def _purge_each(
    broker: Broker,
    queues: list[str],
    where: LetterFilter,
    args: argparse.Namespace,
    counted: dict[str, list[str]] | None,
) -> int:
    """Purge each queue: every letter ``where`` takes, or (``counted``) only those
    letters, by id."""
    for queue in queues:
        ids = None if counted is None else counted.get(queue, [])
        if ids is not None and not ids:
            continue
        with _progress(args, (await broker.stats(queue)).dead, f"purging {queue}") as report:
            removed = await broker.purge_dead_letters(
                queue,
                where,
                limit=args.limit if ids is None else len(ids),
                batch_size=args.batch_size,
                on_batch=report,
                only=None if ids is None else frozenset(ids),
            )
        missing = 0 if ids is None else len(ids) - removed
        # Replayed or purged by someone else while the question waited.
        gone = f"; {missing} of those counted {'was' if missing == 1 else 'were'} gone already"
        print(
            f"purged {view.letters(removed)} of {queue} ({where.describe()})"
            + (gone if missing > 0 else "")
        )
    return ExitCode.OK


async def _require_ids(broker: Broker, queues: list[str], where: LetterFilter) -> None:
    """Letters named by id must all exist, or nothing is done."""
    if not where.ids:
        return
    found: set[str] = set()
    for queue in queues:
        named = LetterFilter(ids=where.ids)
        letters = await broker.dead_letters(queue, len(where.ids) * 2, where=named)
        found |= {letter.id for letter in letters if letter.id}
    missing = sorted(where.ids - found)
    if missing:
        raise _Failed(
            ExitCode.NOT_FOUND,
            f"no dead letter with id {', '.join(missing)} in {', '.join(queues)}; "
            "nothing was done (`dlq list` shows the letters' ids)",
        )


async def _dry_run(
    broker: Broker, queues: list[str], where: LetterFilter, args: argparse.Namespace, action: str
) -> int:
    out, now = view.console(), time.time()
    for queue in queues:
        act = broker.replay_dead_letters if action == "replay" else broker.purge_dead_letters
        count = await act(queue, where, limit=args.limit, dry_run=True)
        preview = await broker.dead_letters(queue, min(count, PREVIEW_ROWS), where=where)
        if preview:
            out.print(view.letters_table(preview, now, with_queue=False))
        more = f" (the first {len(preview)} above)" if count > len(preview) else ""
        out.print(
            f"dry run: would {action} {view.letters(count)} of {queue} ({where.describe()})"
            f"{more}; nothing was changed",
            markup=False,
        )
    return ExitCode.OK


def _confirm(prompt: str) -> bool:
    """Ask on stdin. Called with no event loop running: Ctrl-C (KeyboardInterrupt)
    and end of input are a no, at once."""
    try:
        # Inside the try: a Ctrl-C right after the prompt was written can land
        # before print() returns (the signal is handled between bytecodes).
        print(prompt, end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline() if sys.stdin is not None else ""
    except KeyboardInterrupt:
        print(file=sys.stderr)  # the next line starts on its own line
        return False
    except (OSError, ValueError):  # stdin closed or unreadable
        return False
    return answer.strip().lower() in ("y", "yes")


@contextmanager
def _progress(
    args: argparse.Namespace, total: int, what: str
) -> Iterator[Callable[[int, int], None]]:
    """A progress bar (on stderr) over the letters looked at, for many letters."""
    if total < PROGRESS_FROM:
        yield lambda looked_at, done: None
        return
    verb = "replayed" if args.action == "replay" else "purged"
    columns = (
        progress.TextColumn("{task.description}"),
        progress.BarColumn(),
        progress.MofNCompleteColumn(),
        progress.TimeElapsedColumn(),
    )
    with progress.Progress(*columns, console=view.console(stderr=True)) as bar:
        task = bar.add_task(what, total=total)

        def report(looked_at: int, done: int) -> None:
            bar.update(task, completed=min(looked_at, total), description=f"{what}: {done} {verb}")

        yield report
