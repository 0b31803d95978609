"""The one place redis-py exceptions become aioack's.

Every broker method runs its client calls inside ``translate_errors``, so
nothing from redis-py escapes the broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as redis_errors

from aioack._connect import redis_connect_error
from aioack.errors import AioackError, BrokerError, BrokerUnavailable


@contextmanager
def translate_errors(action: str, other: type[BrokerError] = BrokerError) -> Iterator[None]:
    """Turn whatever redis-py (or the socket under it) raised into aioack's tree.

    Connection trouble is BrokerUnavailable; any other Redis error is ``other``
    (PublishFailed where Redis refused a message, e.g. OOM).
    """
    try:
        yield
    except AioackError:
        raise
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
        raise BrokerUnavailable(f"redis {action}: {type(exc).__name__}: {exc}") from exc
    except redis_errors.ReadOnlyError as exc:
        # A replica answered (failover in progress): the primary is unavailable.
        raise BrokerUnavailable(f"redis {action}: {exc}") from exc
    except redis_errors.RedisError as exc:
        raise other(f"redis {action}: {type(exc).__name__}: {exc}") from exc


def connect_error(service: str, url: str, exc: redis_errors.RedisError | OSError) -> AioackError:
    """A failed connect, as what to check or change (no database, refused login,
    no server there); see ``aioack._connect``."""
    socket = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)
    from_socket = isinstance(exc, socket)
    reachable = isinstance(exc, redis_errors.AuthenticationError) or not from_socket
    return redis_connect_error(service, url, exc, reachable=reachable)
