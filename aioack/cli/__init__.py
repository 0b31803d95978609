"""``python -m aioack``: the command line. ``main(argv) -> int`` for tests.

One module per command (``worker``, ...), the exit codes in ``codes``.
"""

from aioack.cli.codes import ExitCode
from aioack.cli.loading import load_app, load_hook
from aioack.cli.main import build_parser, main

__all__ = ["ExitCode", "build_parser", "load_app", "load_hook", "main"]
