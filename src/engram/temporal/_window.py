"""The resolved time window of a question, and the score factor it gives a memory's timestamp."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from engram.errors import InvalidInputError

__all__ = ["DEFAULT_TOLERANCE_DAYS", "TimeWindow", "require_aware", "time_factor"]

DEFAULT_TOLERANCE_DAYS = 7.0
_DAY = timedelta(days=1)


def require_aware(value: object, name: str) -> datetime:
    """``value`` if it is a timezone-aware datetime, else :class:`InvalidInputError`."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInputError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value


@dataclass(frozen=True)
class TimeWindow:
    """The half-open interval ``[start, end)`` a question refers to.

    ``expression`` is the text that named it ("2 weeks ago", "in May"); ``strength`` says how
    explicit that text was: 1.0 for a date or a count, lower for vague words ("a few weeks ago"
    0.75, "recently" 0.5).
    """

    start: datetime
    end: datetime
    expression: str
    strength: float = 1.0

    def __post_init__(self) -> None:
        require_aware(self.start, "start")
        require_aware(self.end, "end")
        if not self.start < self.end:
            raise InvalidInputError(f"empty time window: {self.start} to {self.end}")
        if not 0.0 < self.strength <= 1.0:
            raise InvalidInputError(f"strength must be in (0, 1], got {self.strength}")

    def __contains__(self, timestamp: datetime) -> bool:
        return self.start <= timestamp < self.end

    def days_outside(self, timestamp: datetime) -> float:
        """How many days ``timestamp`` lies before ``start`` or at/after ``end``; 0 inside."""
        if timestamp < self.start:
            return (self.start - timestamp) / _DAY
        return max(0.0, (timestamp - self.end) / _DAY)


def time_factor(
    timestamp: datetime,
    window: TimeWindow | None,
    *,
    weight: float,
    tolerance_days: float = DEFAULT_TOLERANCE_DAYS,
) -> float:
    """The multiplier for the score of a memory made at ``timestamp``, given the question's
    window: 1 without a window or with ``weight == 0``; ``1 + weight * strength`` inside the
    window; outside it, that boost fades along a half cosine to 1 at ``tolerance_days`` from the
    nearest edge (continuous at the edge, flat at both ends) and is 1 beyond. With
    ``tolerance_days == 0`` the window is a hard box."""
    if window is None or weight == 0.0:
        return 1.0
    require_aware(timestamp, "timestamp")
    if not tolerance_days >= 0.0:
        raise InvalidInputError(f"tolerance_days must be >= 0, got {tolerance_days}")
    boost = weight * window.strength
    if timestamp in window:
        return 1.0 + boost
    gap = window.days_outside(timestamp)
    if gap >= tolerance_days:
        return 1.0
    return 1.0 + boost * 0.5 * (1.0 + math.cos(math.pi * gap / tolerance_days))
