"""One timer heap for everything EventBridge schedules: a heap of (due, key) with one loop timer armed for the
earliest entry, however many schedules and rules there are. Entries are replaced by re-adding a key; stale heap
entries are dropped when they surface.

Time runs through a Clock whose `scale` shrinks real waits (1.0 = real time; tests use 0.01 so a 1-minute rate
fires every 0.6 s): the clock's time runs 1/scale as fast as the wall clock from the moment the server started.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable


class Clock:
    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.anchor = time.time()

    def now(self) -> float:
        if self.scale == 1.0:
            return time.time()
        return self.anchor + (time.time() - self.anchor) / self.scale

    def real_delay(self, due: float) -> float:
        return max(0.0, (due - self.now()) * self.scale)


class TimerHeap:
    def __init__(self, clock: Clock, lead: float = 0.0) -> None:
        self.clock = clock
        # Entries are handed out this long (clock seconds) before they are due, so that the work of many entries
        # due at once (their next due times, committed; their payloads) is done by the time they are due; the
        # handler sends each at its due time (see `at`).
        self.lead = lead
        # Keys are tuples whose first item names their kind; handlers[kind](keys due, now) runs on the loop.
        self.handlers: dict[str, Callable[[list[tuple], float], None]] = {}
        self._heap: list[tuple[float, int, tuple]] = []
        self._due: dict[tuple, float] = {}
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._loop = None

    def __len__(self) -> int:
        return len(self._due)

    def set(self, key: tuple, due: float | None) -> None:
        """Schedule `key` at `due` (clock time), replacing what it had; None removes it."""
        if due is None:
            self._due.pop(key, None)
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))
        if self._armed_for is None or due < self._armed_for:
            self._arm()

    def at(self, due: float, callback: Callable[[], None]) -> asyncio.TimerHandle | None:
        """Run `callback` on the loop at clock time `due` (now if that has passed); None when stopped."""
        if self._loop is None:
            return None
        return self._loop.call_later(self.clock.real_delay(due), callback)

    def due_of(self, key: tuple) -> float | None:
        return self._due.get(key)

    def _arm(self) -> None:
        if self._loop is None:
            return
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)   # stale: re-set or removed since
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed_for = None
        if not self._heap:
            return
        due = self._heap[0][0]
        self._armed_for = due
        self._timer = self._loop.call_later(self.clock.real_delay(due - self.lead), self._run)

    def _run(self) -> None:
        self._timer = None
        self._armed_for = None
        now = self.clock.now()
        keys: list[tuple] = []
        while self._heap and self._heap[0][0] <= now + self.lead:
            due, _, key = heapq.heappop(self._heap)
            if self._due.get(key) == due:
                del self._due[key]
                keys.append(key)
        by_kind: dict[str, list[tuple]] = {}
        for key in keys:
            by_kind.setdefault(key[0], []).append(key)
        for kind, due_keys in by_kind.items():
            self.handlers[kind](due_keys, now)
        self._arm()
