"""The command line's entry: one parser, one subcommand module per command.

A command module has ``add(subparsers, epilog)``, which sets ``run`` (a
function ``args -> exit code``) as the parser's default. Errors common to
every command become the exit codes of ``codes.ExitCode`` here.

argparse, not click or typer: it is the standard library (no dependency to
pin), ``main(argv) -> int`` stays testable in-process, and what it lacked (a
subcommand's own usage on a typo, did-you-mean) is the small ``Parser`` below.
"""

from __future__ import annotations

import argparse
import difflib
import logging
from collections.abc import Sequence
from typing import NoReturn

from pydantic import ValidationError

from aioack import __version__
from aioack.cli import dlq, inspect, revoke, scheduler, worker
from aioack.cli.codes import MEANINGS, ExitCode
from aioack.cli.loading import AppNotFound
from aioack.errors import BrokerUnavailable, ConfigurationError
from aioack.observe import logs

#: How the examples in the command modules name the program; replaced by the
#: name it was invoked by (``aioack``, or ``python -m aioack``).
EXAMPLE_PROG = "python -m aioack"

EXIT_CODES = "exit codes:\n" + "\n".join(
    f"  {code.value:>2}  {code.name:<18} {MEANINGS[code]}" for code in ExitCode
)

#: Every command, in the order ``--help`` lists them.
COMMANDS = [worker, scheduler, inspect, dlq, revoke]


class Parser(argparse.ArgumentParser):
    """argparse, but an unknown option is refused by the (sub)command that got it.

    Stock argparse hands a subcommand's unknown options up to the top parser,
    which then prints the top usage: ``worker app --brokr x`` would not show
    the worker's options. Here the subcommand errors itself, with its own usage
    and the closest option it has.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self._unrecognized(extras)
        return parsed, extras

    def _unrecognized(self, extras: list[str]) -> NoReturn:
        message = f"unrecognized arguments: {' '.join(extras)}"
        options = [e.partition("=")[0] for e in extras if e.startswith("-")]
        close = (
            difflib.get_close_matches(options[0], self._option_string_actions, n=1)
            if (options)
            else []
        )
        if close:
            message += f" (did you mean {close[0]}?)"
        self.error(f"{message}; see {self.prog} --help")


def build_parser(prog: str = "aioack") -> argparse.ArgumentParser:
    parser = Parser(
        prog=prog,
        description="aioack: an asyncio task queue with acknowledgement done right.",
        epilog=_top_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", title="commands"
    )
    for module in COMMANDS:
        module.add(commands, EXIT_CODES)
    _add_log_options(parser, defaults=True)
    _name_examples(parser, prog)
    return parser


def _top_epilog() -> str:
    """One example per command (each command's --help has the rest), then the exit codes."""
    firsts = []
    for module in COMMANDS:
        lines = [line for line in module.EXAMPLES.splitlines() if line.startswith("  ")]
        firsts.append(lines[0])
    return (
        "examples:\n"
        + "\n".join(firsts)
        + f"\n\n{EXAMPLE_PROG} COMMAND --help shows a command's options and examples.\n\n"
        + EXIT_CODES
    )


def _name_examples(parser: argparse.ArgumentParser, prog: str) -> None:
    """Examples say the program's name as the user typed it."""
    if parser.epilog:
        parser.epilog = parser.epilog.replace(EXAMPLE_PROG, prog)
    for sub in _subparsers(parser):
        _name_examples(sub, prog)


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return [
        sub
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for sub in action.choices.values()
    ]


def _add_log_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--log-level and --log-format, anywhere on the line: before the command, after
    it, after a dlq action. Only the top parser sets defaults; the others leave
    the value alone unless given (SUPPRESS), so a later one wins."""
    parser.add_argument(
        "--log-level",
        default="INFO" if defaults else argparse.SUPPRESS,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="(INFO)",
    )
    parser.add_argument(
        "--log-format",
        default="text" if defaults else argparse.SUPPRESS,
        choices=["text", "json"],
        help="text: one greppable line per event; json: one object per line (text)",
    )
    for sub in _subparsers(parser):
        _add_log_options(sub, defaults=False)


def main(argv: Sequence[str] | None = None, *, prog: str = "aioack") -> int:
    """Run the command line (``argv``: the arguments, without the program name);
    return the exit code. ``prog`` is the name usage lines and examples show."""
    try:
        args = build_parser(prog).parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help/--version (0) and on errors (2)
        return int(exc.code or 0)
    logs.configure(args.log_level, args.log_format)
    log = logging.getLogger("aioack.cli")
    try:
        code: int = args.run(args)
    except AppNotFound as exc:
        log.error("%s", exc)
        return ExitCode.APP_NOT_FOUND
    except (ConfigurationError, ValidationError) as exc:
        log.error("configuration error: %s", exc)
        return ExitCode.CONFIG_ERROR
    except BrokerUnavailable as exc:
        # The cause (the client's own error) is detail: shown with --log-level DEBUG.
        log.error("%s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        return ExitCode.BROKER_UNAVAILABLE
    return code


def entry() -> NoReturn:
    """The ``aioack`` console script."""
    raise SystemExit(main())
