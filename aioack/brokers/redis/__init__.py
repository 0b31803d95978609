"""The Redis broker: Streams, consumer groups, leases renewed by the worker, fenced settles.

See ``broker`` for the design and docs/redis.md for the settings and guarantees.
"""

from aioack.brokers.redis.broker import RedisBroker
from aioack.brokers.redis.options import RedisOptions

__all__ = ["RedisBroker", "RedisOptions"]
