"""GCRA with bookings: the step every backend takes for ``reserve_rate``.

The generic cell rate algorithm keeps one number per key, its *theoretical
arrival time* (TAT): when the next token is free. A caller at ``now`` takes
the token at ``max(TAT, now)`` and moves TAT one interval on. Tokens are
evenly spaced (no burst: Celery's bucket holds one token too).

"Reserve" semantics: a caller whose token is later *books* it under its
ticket (the message id) and is told how long to wait. The delivery goes back
to the broker for that long and, when it returns, takes its booked token
without touching TAT. So a crowd of deliveries arriving at once each get
their own token, one interval apart, and come back one at a time: no herd of
retries fighting over the next token. The cost: a delivery that never comes
back (revoked, expired, its queue deleted) leaves its token unused. One that
comes back more than ``late_s`` after its token books a new one, so tokens
kept by slow deliveries cannot pile up into a burst.

The memory and SQLite backends run ``step()`` inside one atomic step; the
Redis Lua script (``redis/rates.py``) is the same logic line by line.
"""

from __future__ import annotations

from dataclasses import dataclass

from aioack._rate import EARLY_S


@dataclass(frozen=True, slots=True)
class Step:
    #: Seconds until the caller's token: 0 means run now.
    wait_s: float
    #: The key's new TAT, or None to leave it as it is.
    tat: float | None = None
    #: Book the caller's token at this time, or None (no booking).
    book_at: float | None = None
    #: The caller's old booking is used up or void: delete it.
    drop_booking: bool = False


def step(
    tat: float | None, booked: float | None, *, now: float, interval_s: float, late_s: float
) -> Step:
    """One reserve: ``tat`` is the key's stored TAT, ``booked`` the caller's booking."""
    if booked is not None:
        if now < booked - EARLY_S:
            return Step(booked - now)  # back early: wait the rest, the token stays booked
        if now <= booked + late_s:
            return Step(0.0, drop_booking=True)  # its token: run
        # Too late: the token went unused; book again below, like a newcomer.
    start = now if tat is None or tat < now else tat
    if start <= now:
        return Step(0.0, tat=start + interval_s, drop_booking=booked is not None)
    return Step(start - now, tat=start + interval_s, book_at=start, drop_booking=False)
