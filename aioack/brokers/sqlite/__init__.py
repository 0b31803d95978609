"""The SQLite broker: the durable embedded default. One file, many processes, no server.

See ``broker`` for the design and docs/sqlite.md for the settings and guarantees.
"""

from aioack.brokers.sqlite.broker import SQLiteBroker
from aioack.brokers.sqlite.options import SQLiteOptions

__all__ = ["SQLiteBroker", "SQLiteOptions"]
