"""What a failed first connection says: what to check or what to change.

Shared by the brokers and result backends (which may not import each other).
A message names the server as ``host:port`` only: a URL's password never
reaches a log line or an exception.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aioack.errors import AioackError, BrokerError, BrokerUnavailable, ConfigurationError

#: What Redis answers to SELECT of a database it does not have.
_REDIS_NO_DB = ("DB index is out of range", "invalid DB index")
#: What Redis answers to a missing, wrong or unwanted password (words only:
#: none of these replies quotes the password).
_REDIS_LOGIN = ("WRONGPASS", "NOAUTH", "invalid password", "invalid username-password", "AUTH")


def endpoint(url: str) -> str:
    """``host:port`` of a URL (the socket path of ``unix://``), without credentials."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path or "?"
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: show what was given
        port = None
    host = parts.hostname or "localhost"
    return f"{host}:{port}" if port is not None else host


def unreachable(service: str, url: str, reason: str) -> BrokerUnavailable:
    """The server did not answer: say what to check, on one line."""
    return BrokerUnavailable(
        f"cannot reach {service} at {endpoint(url)} ({_one_line(reason)}): is the server "
        "running there? Check the host and port in the URL, and any firewall in between"
    )


def redis_connect_error(
    service: str, url: str, exc: BaseException, *, reachable: bool
) -> AioackError:
    """The aioack error for a Redis connect that failed with ``exc``.

    ``reachable``: the error came from the server (a reply), not from the socket.
    A database Redis does not have and a refused login are settings to change
    (ConfigurationError); a server that did not answer is BrokerUnavailable.
    """
    text, where = str(exc), endpoint(url)
    if any(marker in text for marker in _REDIS_NO_DB):
        database = urlsplit(url).path.strip("/") or "0"
        return ConfigurationError(
            f"{service} at {where}: Redis has no database {database} (DB index is out of "
            "range): put a database number the server has in the URL, e.g. "
            f"redis://{where}/0 (a server has 16 by default, 0-15: its 'databases' setting)"
        )
    if any(marker in text for marker in _REDIS_LOGIN):
        return ConfigurationError(
            f"{service} at {where} refused the login ({type(exc).__name__}): check the "
            "user/password in the URL (redis://user:password@host:port/db), or drop them "
            "if the server has no password"
        )
    if not reachable:
        return unreachable(service, url, f"{type(exc).__name__}: {text}")
    return BrokerError(f"{service} at {where}: {type(exc).__name__}: {_one_line(text)}")


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 300 else line[:300] + "..."
