"""The Redis result backend: records with a TTL, waits through pub/sub, the effect ledger."""

from aioack.results.redis.backend import RedisResultBackend

__all__ = ["RedisResultBackend"]
