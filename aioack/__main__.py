from aioack.cli import main

raise SystemExit(main(prog="python -m aioack"))
