"""Redis broker options: from the URL query or keyword arguments, typos refused."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aioack.urls import REDIS_CLIENT_QUERY, parse_options

DEFAULT_URL = "redis://127.0.0.1:6379/0"


class RedisOptions(BaseModel):
    """Settings of a RedisBroker, from the URL query or keyword arguments. Seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: An entry held this long without renewal is reclaimed by another consumer.
    #: Short because the worker renews running tasks' leases: it only bounds
    #: how long a crashed worker's tasks wait before they run elsewhere.
    visibility_timeout: float = Field(default=30.0, gt=0)
    #: False: leases are never renewed; every task then needs a time_limit
    #: below visibility_timeout (checked at worker start).
    renew_leases: bool = True
    #: Longest single blocking read; also how late a due delayed message may be.
    poll_interval: float = Field(default=0.5, gt=0)
    #: How often a consumer looks for abandoned entries (default: timeout / 3).
    reclaim_interval: float | None = Field(default=None, gt=0)
    socket_timeout: float = Field(default=10.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    max_connections: int | None = Field(default=None, ge=2)
    key_prefix: str = Field(default="aioack", min_length=1)
    group: str = Field(default="aioack", min_length=1)
    #: Keep about this many dead letters per queue; 0 keeps all.
    dead_letter_maxlen: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _blocking_read_fits_socket_timeout(self) -> RedisOptions:
        if self.poll_interval >= self.socket_timeout:
            raise ValueError(
                f"poll_interval ({self.poll_interval}s) must be below socket_timeout "
                f"({self.socket_timeout}s): a blocking read would time out its own socket"
            )
        return self


def parse_url(url: str, options: Mapping[str, object]) -> tuple[str, RedisOptions]:
    """The URL for redis-py (its own query parameters kept) and validated options.

    Raises:
        ConfigurationError: an unknown option (with the closest known name) or a bad value.
    """
    return parse_options(
        url, options, RedisOptions, what="Redis broker", client_query=REDIS_CLIENT_QUERY
    )
