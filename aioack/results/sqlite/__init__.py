"""The SQLite result backend: results and the effect-once ledger in a local file, no server."""

from aioack.results.sqlite.backend import SQLiteResultBackend

__all__ = ["SQLiteResultBackend"]
