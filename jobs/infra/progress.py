"""Progress lines a person can watch in a long task's log: done / total, rate, time left."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Progress:
    """Logs `what: done / total unit, rate/s, about T left` at most every `every` seconds, and
    always once at the end, so an hour-long export shows how far it is without flooding."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        total: int,
        unit: str,
        every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.log, self.what, self.total, self.unit = log, what, total, unit
        self.every, self.clock = every, clock
        self.done = 0
        self.started = self.last = clock()

    def advance(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if self.done >= self.total or now - self.last >= self.every:
            self.last = now
            self.log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.what}: {self.done:,} / {self.total:,} {self.unit}, {_short(rate)}/s"
        if self.done >= self.total:
            return f"{text}, done in {_duration(elapsed)}"
        left = (self.total - self.done) / rate if rate > 0 else None
        return f"{text}, about {_duration(left)} left" if left is not None else text


def _short(rate: float) -> str:
    if rate >= 1000:
        return f"{rate / 1000:.1f}k"
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.1f}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
