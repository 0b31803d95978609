"""Cancels that a client library returned through instead of raising."""

from __future__ import annotations

import asyncio


def raise_swallowed_cancel() -> None:
    """Raise the cancel a library call returned through instead of raising.

    With redis-py 8.1 on Python 3.11, 1-2% of cancels landing on a blocking
    read are lost: the command returns normally while its task still counts
    the cancel request (``cancelling() > 0``). Every lost one we traced
    landed while the command was taking a pooled connection
    (``get_connection()``) that an earlier cancelled command had dropped;
    the exact line inside redis-py is not pinned down. A loop that goes on
    after that never stops, so loops around client I/O call this after each
    round. A cancel that was handled (``uncancel()``, as ``asyncio.timeout``
    does) is not raised again.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
