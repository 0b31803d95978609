"""The command line's entry: one parser, one subcommand module per command.

A command module has ``add(subparsers, epilog)``, which sets ``run`` (a
function ``args -> exit code``) as the parser's default. Errors common to
every command become the exit codes of ``codes.ExitCode`` here.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from pydantic import ValidationError

from aioack.cli import dlq, inspect, revoke, worker
from aioack.cli.codes import ExitCode
from aioack.cli.loading import AppNotFound
from aioack.errors import BrokerUnavailable, ConfigurationError
from aioack.observe import logs

EXIT_CODES = "exit codes:\n" + "\n".join(f"  {code.value}  {code.name}" for code in ExitCode)

#: Every command, in the order ``--help`` lists them.
COMMANDS = [worker, inspect, dlq, revoke]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aioack",
        description="aioack: an asyncio task queue with acknowledgement done right.",
        epilog="examples:\n" + "".join(module.EXAMPLES for module in COMMANDS) + "\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add(commands, EXIT_CODES)
    _add_log_options(parser, defaults=True)
    return parser


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
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _add_log_options(sub, defaults=False)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on errors (2)
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
        log.error("broker unavailable: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        return ExitCode.BROKER_UNAVAILABLE
    return code
