from aioack.cli import main

raise SystemExit(main())
