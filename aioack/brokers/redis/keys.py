"""Every Redis key name of a queue, built in one place.

Layout of one queue ``q`` (the ``{q}`` hash tag keeps a queue's keys in one
cluster slot, so multi-key scripts stay legal on a cluster):

- ``<prefix>:{q}:stream``  the stream; its consumer group holds the PEL
- ``<prefix>:{q}:delayed`` sorted set: token -> due time (ms, Redis clock)
- ``<prefix>:{q}:bodies``  hash: token -> body of a delayed message
- ``<prefix>:{q}:dead``    the dead-letter stream

and, for the whole broker, ``<prefix>:worker:<id>``: a live worker's record
(JSON), expiring unless the worker writes it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from aioack.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Keys:
    stream: str
    delayed: str
    bodies: str
    dead: str


def queue_keys(prefix: str, queue: str) -> Keys:
    _check_queue_name(queue)
    base = f"{prefix}:{{{queue}}}"
    return Keys(f"{base}:stream", f"{base}:delayed", f"{base}:bodies", f"{base}:dead")


def _check_queue_name(queue: str) -> None:
    if not queue or "{" in queue or "}" in queue:
        raise ConfigurationError(
            f"queue name {queue!r} cannot be used on Redis: it must be non-empty and "
            "hold no braces (they delimit the cluster hash tag)"
        )
    try:
        queue.encode()
    except UnicodeEncodeError as exc:
        raise ConfigurationError(f"queue name {queue!r} is not valid UTF-8 text") from exc


def worker_key(prefix: str, worker_id: str) -> str:
    return f"{prefix}:worker:{worker_id}"


def stream_pattern(prefix: str) -> str:
    """A SCAN pattern matching every queue's stream key."""
    return f"{prefix}:{{*}}:stream"


def queue_of_stream(prefix: str, key: str) -> str | None:
    """The queue a stream key belongs to, or None when it is no stream of ours."""
    head, tail = f"{prefix}:{{", "}:stream"
    if key.startswith(head) and key.endswith(tail):
        return key[len(head) : -len(tail)]
    return None
