"""How long a delivery whose concurrency key is full waits before it comes back.

A fixed short delay churns: while one run of a key goes on, every waiting
delivery of that key comes back, finds it full, and goes round again. So
each worker hands its waiters *turns*, per key, the way a ticket queue
does: the first waiter comes back about one run later, the next one run
after that, and so on (runs measured per task, an average of how long runs
held their slot). A waiter that comes back and still finds the key full
came back too early (the runs are longer than measured, or other workers
hand out turns of the same key too): the key's turns are spread wider,
and narrowed again as waiters get in. All of it is local and best effort:
a wrong guess costs a round trip or an idle moment, never a second run.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

#: Shortest wait (seconds): below it, a delayed copy is back before anything changed.
MIN_SLOT_DELAY_S = 0.05
#: Longest wait (seconds). Longer than the busy-key delay of effect-once runs:
#: a key with a long queue of waiters is expected to stay full that long.
MAX_SLOT_DELAY_S = 30.0
#: Seconds a run is guessed to hold its slot before any run of its task was measured.
FIRST_GUESS_RUN_S = 0.1
#: Weight of the newest run in the per-task average of slot hold times.
_SMOOTHING = 0.2
#: How far apart turns may be spread, in runs, and how fast they widen and narrow.
_MAX_SPREAD, _WIDEN, _NARROW = 4.0, 1.25, 0.9
#: Waiter ids and keys remembered at most (oldest forgotten first).
_REMEMBERED = 10_000

V = TypeVar("V")


class SlotWaits:
    """Turns for the waiters of each key, handed out by one worker."""

    def __init__(
        self, clock: Callable[[], float], rand: Callable[[], float] = random.random
    ) -> None:
        self._clock = clock
        self._rand = rand
        #: Task name -> average seconds a run held its slot.
        self._run_s: dict[str, float] = {}
        #: Key -> clock time of the last turn handed out, and the spread of its turns.
        self._turns: OrderedDict[str, tuple[float, float]] = OrderedDict()
        #: Ids of the messages this worker sent back to wait.
        self._waiting: OrderedDict[str, None] = OrderedDict()

    def ran(self, task: str, held_s: float) -> None:
        """A run of ``task`` held its slot ``held_s`` seconds."""
        before = self._run_s.get(task)
        self._run_s[task] = held_s if before is None else before + _SMOOTHING * (held_s - before)

    def admitted(self, key: str, message_id: str) -> None:
        """A delivery got its slot: if it had waited, its turn was right; narrow the turns."""
        if message_id not in self._waiting:
            return
        del self._waiting[message_id]
        if key in self._turns:
            turn, spread = self._turns[key]
            self._turns[key] = (turn, max(1.0, spread * _NARROW))

    def delay_s(self, task: str, key: str, limit: int, message_id: str) -> float:
        """Seconds the delivery of ``message_id`` waits: the next free turn of ``key``."""
        now = self._clock()
        last_turn, spread = self._turns.pop(key, (now, 1.0))
        if message_id in self._waiting:  # back too early: the turns are too close
            spread = min(_MAX_SPREAD, spread * _WIDEN)
        run_s = self._run_s.get(task, FIRST_GUESS_RUN_S)
        turn = min(max(now, last_turn) + run_s * spread / limit, now + MAX_SLOT_DELAY_S)
        self._remember(self._turns, key, (turn, spread))
        self._remember(self._waiting, message_id, None)
        # Jitter: waiters of one key sent back by several workers must not all
        # return on the same tick.
        delay_s = (turn - now) * (1.0 + 0.2 * self._rand())
        return min(MAX_SLOT_DELAY_S, max(MIN_SLOT_DELAY_S, delay_s))

    @staticmethod
    def _remember(table: OrderedDict[str, V], key: str, value: V) -> None:
        table.pop(key, None)
        table[key] = value
        if len(table) > _REMEMBERED:
            table.popitem(last=False)
