"""Find the time expression in a question and resolve it to a window (after LongMemEval's
time-aware query expansion, Wu et al., 2024)."""

from __future__ import annotations

from datetime import datetime, time

from engram.errors import InvalidInputError
from engram.temporal import _absolute, _relative
from engram.temporal._calendar import Span
from engram.temporal._window import TimeWindow, require_aware

__all__ = ["resolve_time_window"]

_RULES = _relative.RULES + _absolute.RULES


def resolve_time_window(query: str, anchor: datetime) -> TimeWindow | None:
    """The time window ``query`` refers to, resolved against ``anchor`` (when it was asked), or
    ``None`` when it names no time. Case-insensitive. Windows are whole days in ``anchor``'s time
    zone, half-open ``[start, end)``.

    Understood, with the window each gives:

    - "today", "tonight", "this morning", "yesterday", "last night", "the day before yesterday",
      "tomorrow": that day.
    - "N days|weeks|months|years ago" (also "N ... back"; for the future "in N ...' time" and
      "N ... from now"), N in digits, "one".."twelve", "a"/"an", "a couple of" (2), "a few" or
      "several" (3, strength 0.75): a window around the point N units away, wider for fuzzier
      units: days exact up to 2 and ±1 day beyond, weeks ±3 days (a 7-day window), months ±15
      days, years ±6 months.
      Months are calendar months, clamped: "1 month ago" on March 31 is centred on February 28.
    - "the last|past N days|weeks|months|years": from N units before ``anchor``'s day through
      that day; "the next N ...": from that day on.
    - "last week|month|year": the previous calendar unit (weeks start on Monday); "the last
      week", "the past week": the 7 days through today; "this|next week|month|year": calendar
      units.
    - weekends: "this weekend" (of the current week), "last|past weekend" (the one before),
      "next weekend" (the first to start after today), "the weekend" (the latest begun).
    - weekdays: "on|last Saturday" (the latest Saturday strictly before today), "this Saturday"
      (of the current week), "next Saturday" (the first strictly after today).
    - dates: "2023-05-08", "2023/05/08", "8 May 2023", "May 8, 2023", "the 8th of May",
      "on May 8"; months: "in May", "May 2023", "May of last year", "last|this|next May";
      "early|mid|late May" (days 1-10, 11-20, 21-end), "the beginning|middle|end of May";
      years: "in 2022", "early|mid|late 2022" (January-April, May-August, September-December).
      A month or date without a year is the latest that has begun by ``anchor``; "since X"
      stretches X to today.
    - "recently", "lately", "these days", "in recent weeks": the last 30 days ("in recent
      months" 90), "the other day": the 7 days before today; all with strength 0.5.

    Month names that are also words ("may", "march") need a preposition, a day or a year.
    When several expressions match, the most explicit (highest strength) wins, then the first,
    then the longest ("the day before yesterday" over "yesterday").
    """
    if not isinstance(query, str):
        raise InvalidInputError(f"query must be a string, got {type(query).__name__}")
    require_aware(anchor, "anchor")
    today = anchor.date()
    best: tuple[tuple[float, int, int], str, Span] | None = None
    for pattern, resolve in _RULES:
        for match in pattern.finditer(query):
            try:
                span = resolve(match, today)
            except (ValueError, OverflowError):  # no such date ("February 30", "999 years ago")
                continue
            if span is None:
                continue
            key = (-span.strength, match.start(), match.start() - match.end())
            if best is None or key < best[0]:
                best = (key, " ".join(match[0].split()), span)
    if best is None:
        return None
    _, expression, span = best
    return TimeWindow(
        start=datetime.combine(span.start, time(), tzinfo=anchor.tzinfo),
        end=datetime.combine(span.end, time(), tzinfo=anchor.tzinfo),
        expression=expression,
        strength=span.strength,
    )
