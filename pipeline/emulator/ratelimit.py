"""``--rpm``: a sliding one-minute window over admitted requests, as Google's quota counts them."""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    """At most ``limit`` admissions in any ``window_s`` seconds.

    ``_times`` holds the admission times still inside the window, oldest first, so the wait for
    a free slot is simply "until the oldest one leaves". Refused requests are not recorded:
    they do not use up the quota.
    """

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit = limit
        self._window_s = window_s
        self._times: deque[float] = deque()

    def admit(self, now: float) -> float | None:
        """Admit a request at ``now`` (None), or return the seconds until a slot frees."""
        while self._times and self._times[0] <= now - self._window_s:
            self._times.popleft()
        if len(self._times) < self.limit:
            self._times.append(now)
            return None
        return self._times[0] + self._window_s - now

    def clear(self) -> None:
        self._times.clear()
