"""Wall-clock timestamps for resources (``createTime``, ``endTime``...) read off the injectable
clock, so a test that advances a fake clock sees times move with it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime


class WallClock:
    """Maps the emulator's clock (monotonic, or a test's fake) onto UTC, anchored at creation."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._anchor_clock = clock()
        self._anchor_wall = time.time()

    def now(self) -> float:
        return self._clock()

    def rfc3339(self, at: float) -> str:
        """Google's Timestamp JSON: Z-normalized with 6 fractional digits."""
        wall = self._anchor_wall + (at - self._anchor_clock)
        return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
