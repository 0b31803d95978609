"""Jitter for waits that many workers start at the same moment."""

from __future__ import annotations

import random
from collections.abc import Callable


def jittered(delay_s: float, rand: Callable[[], float] = random.random) -> float:
    """``delay_s`` spread uniformly over [delay_s / 2, 3 * delay_s / 2).

    A fleet of workers that lost their broker together must not all hit it
    again at the same instant when it comes back: their reconnects and
    settle retries are spread, while the average wait stays ``delay_s``.
    """
    return delay_s * (0.5 + rand())
