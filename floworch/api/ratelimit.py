"""A per-process sliding-window rate limiter for webhook slugs (``rateLimitPerMinute``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class RateLimiter:
    """Allows at most ``limit`` events per key in any 60-second window (in this process).

    Args:
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def allow(self, key: str, limit: int) -> bool:
        """Records an event for ``key`` and says whether it is within the limit."""
        now = self._clock()
        window = self._seen.setdefault(key, deque())
        while window and window[0] <= now - 60.0:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(now)
        return True
