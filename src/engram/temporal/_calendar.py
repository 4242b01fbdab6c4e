"""Pure date arithmetic for time windows: whole-day spans, clamped month steps, calendar units."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

__all__ = [
    "Span",
    "Unit",
    "add_months",
    "around",
    "calendar_unit",
    "month_span",
    "one_day",
    "shift",
    "thirds",
    "year_span",
]

Unit = Literal["day", "week", "month", "year"]
Part = Literal["early", "mid", "late"]


@dataclass(frozen=True)
class Span:
    """Whole days ``[start, end)`` and how explicit the expression that named them was."""

    start: date
    end: date
    strength: float = 1.0


def add_months(day: date, months: int) -> date:
    """``day`` moved by whole calendar months, the day clamped to the target month's length:
    March 31 minus one month is February 28 (29 in a leap year)."""
    index = day.year * 12 + day.month - 1 + months
    year, month0 = divmod(index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day.day, last))


def shift(day: date, unit: Unit, count: int) -> date:
    """``day`` moved by ``count`` units (negative: into the past)."""
    if unit == "day":
        return day + timedelta(days=count)
    if unit == "week":
        return day + timedelta(weeks=count)
    return add_months(day, count if unit == "month" else 12 * count)


def one_day(day: date, strength: float = 1.0) -> Span:
    return Span(day, day + timedelta(days=1), strength)


def month_span(year: int, month: int) -> Span:
    first = date(year, month, 1)
    return Span(first, add_months(first, 1))


def year_span(year: int) -> Span:
    return Span(date(year, 1, 1), date(year + 1, 1, 1))


def around(point: date, unit: Unit, count: int, strength: float = 1.0) -> Span:
    """The window around a point named as "``count`` ``unit``s ago" (or "in ..."); the fuzzier
    the unit, the wider the window: days are exact up to 2 and ±1 day beyond, weeks ±3 days
    (a 7-day window centred on the point), months ±15 days, years ±6 months."""
    if unit == "day":
        pad = 0 if count <= 2 else 1
        return Span(point - timedelta(days=pad), point + timedelta(days=pad + 1), strength)
    if unit == "week":
        return Span(point - timedelta(days=3), point + timedelta(days=4), strength)
    if unit == "month":
        return Span(point - timedelta(days=15), point + timedelta(days=16), strength)
    return Span(add_months(point, -6), add_months(point, 6), strength)


def calendar_unit(day: date, unit: Unit, offset: int) -> Span:
    """The calendar week (Monday first), month or year containing ``day``, moved by ``offset``
    units: ``offset=-1`` is "last week", 0 "this week", 1 "next week"."""
    if unit == "day":
        return one_day(day + timedelta(days=offset))
    if unit == "week":
        monday = day - timedelta(days=day.weekday()) + timedelta(weeks=offset)
        return Span(monday, monday + timedelta(weeks=1))
    if unit == "month":
        first = add_months(day.replace(day=1), offset)
        return Span(first, add_months(first, 1))
    return year_span(day.year + offset)


def thirds(span: Span, part: Part) -> Span:
    """The early, mid or late part of a month (days 1-10, 11-20, 21-end) or of a year
    (January-April, May-August, September-December)."""
    start = span.start
    if (span.end - start).days > 31:  # a year
        edges = [start, start.replace(month=5), start.replace(month=9), span.end]
    else:
        edges = [start, start.replace(day=11), start.replace(day=21), span.end]
    index = ("early", "mid", "late").index(part)
    return Span(edges[index], edges[index + 1], span.strength)
