"""Time-aware retrieval: resolve the time a question refers to ("2 weeks ago", "in May",
"last Saturday") against the date it is asked, and boost memories made in that window.

>>> from datetime import UTC, datetime
>>> window = resolve_time_window("What did I buy 2 weeks ago?", datetime(2023, 5, 30, tzinfo=UTC))
>>> window.start.date(), window.end.date()
(datetime.date(2023, 5, 13), datetime.date(2023, 5, 20))
>>> time_factor(datetime(2023, 5, 15, tzinfo=UTC), window, weight=0.5)
1.5
"""

from engram.temporal._resolve import resolve_time_window
from engram.temporal._window import DEFAULT_TOLERANCE_DAYS, TimeWindow, time_factor

__all__ = ["DEFAULT_TOLERANCE_DAYS", "TimeWindow", "resolve_time_window", "time_factor"]
