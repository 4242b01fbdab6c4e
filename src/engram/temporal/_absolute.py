"""Absolute time expressions: "2023-05-08", "8 May 2023", "on May 8", "in May", "May 2023",
"mid-May", "last May", "in 2022", "early 2022". A month or date without a year is the latest one
that has begun by the day the question is asked ("in December" asked in January: last December;
"on May 31" asked on May 30: a year ago)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import cast

from engram.temporal._calendar import Part, Span, month_span, one_day, thirds, year_span
from engram.temporal._relative import Rule

__all__ = ["RULES"]

_MIN_YEAR, _MAX_YEAR = 1900, 2100
_NAMES = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
_MONTHS = {name: i for i, name in enumerate(_NAMES, start=1)} | {
    name[:3]: i for i, name in enumerate(_NAMES, start=1)
}
_MONTHS["sept"] = 9
# Month names that are also common words ("May I ask", "march on"): without a day, a year or a
# preposition they count only when capitalised and followed by a day ("May 8").
_AMBIGUOUS = frozenset({"may", "march", "mar"})

_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\b"
_CTX = r"(?:(?P<ctx>on|in|during|throughout|around|since|of|the)\s+)?"
_YEAR = r"(?:,?\s+(?:of\s+)?(?:(?P<year>\d{4})|(?P<ryear>last|this|next)\s+year)\b)?"
_DAY = r"(?P<day>\d{1,2})(?P<ord>st|nd|rd|th)?\b"
_NOT_A_COUNT = r"(?!\s+(?:minute|hour|day|week|month|year)s?\b)"
_PART = r"(?:(?P<part>early|mid|late)[\s-]*|the\s+(?P<edge>beginning|start|middle|end)\s+of\s+)"
_PARTS = {"beginning": "early", "start": "early", "middle": "mid", "end": "late"}


def _checked(year: int) -> int:
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        raise ValueError(f"year {year} out of range")
    return year


def _month(m: re.Match[str]) -> int:
    return _MONTHS[m["month"].lower()]


def _explicit_year(m: re.Match[str], today: date) -> int | None:
    if m["year"]:
        return _checked(int(m["year"]))
    if m["ryear"]:
        return today.year + {"last": -1, "this": 0, "next": 1}[m["ryear"].lower()]
    return None


def _month_year(m: re.Match[str], today: date) -> int:
    """The named year, else the latest year in which the month has begun by ``today``."""
    year = _explicit_year(m, today)
    if year is not None:
        return year
    return today.year if _month(m) <= today.month else today.year - 1


def _plausible(m: re.Match[str]) -> bool:
    """Whether a month name next to a day is a month, not the verb "may" or "march"."""
    groups = m.groupdict()
    if m["month"].lower() not in _AMBIGUOUS or groups.get("year") or groups.get("ryear"):
        return True
    if groups.get("ctx") or groups.get("ord") or groups.get("of"):
        return True
    return m["month"][0].isupper()


def _since(m: re.Match[str], span: Span, today: date) -> Span:
    """ "since May" runs from the start of May through today."""
    if (m.groupdict().get("ctx") or "").lower() != "since":
        return span
    return Span(span.start, max(span.end, today + timedelta(days=1)), span.strength)


def _iso_date(m: re.Match[str], today: date) -> Span:
    day = date(_checked(int(m["y"])), int(m["m"]), int(m["d"]))
    return _since(m, one_day(day), today)


def _day_of_month(m: re.Match[str], today: date) -> Span | None:
    if not _plausible(m):
        return None
    month, day = _month(m), int(m["day"])
    year = _explicit_year(m, today)
    if year is not None:
        return _since(m, one_day(date(year, month, day)), today)
    for year in range(today.year, today.year - 9, -1):  # February 29 may be 8 years back
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate <= today:
            return _since(m, one_day(candidate), today)
    raise ValueError(f"no date {month}-{day}")


def _named_month(m: re.Match[str], today: date) -> Span | None:
    """ "in May", "May 2023", "May last year". A month name alone needs "in", "during", "of",
    "since" or the like, or a year ("on May" without a day is not a date)."""
    ctx = (m["ctx"] or "").lower()
    if not (m["year"] or m["ryear"]) and ctx in ("", "the", "on"):
        return None
    return _since(m, month_span(_month_year(m, today), _month(m)), today)


def _part_of_month(m: re.Match[str], today: date) -> Span:
    part = cast(Part, (m["part"] or _PARTS[m["edge"].lower()]).lower())
    return thirds(month_span(_month_year(m, today), _month(m)), part)


def _relative_month(m: re.Match[str], today: date) -> Span:
    """ "last May": the latest May before the current month; "this May": the current year's;
    "next May": the first May after the current month."""
    month, rel = _month(m), m["rel"].lower()
    if rel == "this":
        return month_span(today.year, month)
    if rel == "next":
        return month_span(today.year + (month <= today.month), month)
    return month_span(today.year - (month >= today.month), month)


def _year(m: re.Match[str], today: date) -> Span:
    span = year_span(_checked(int(m["year"])))
    part = m["part"] or (_PARTS[m["edge"].lower()] if m["edge"] else None)
    if part:
        return thirds(span, cast(Part, part.lower()))
    return _since(m, span, today)


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


RULES: list[Rule] = [
    (
        _compile(rf"\b{_CTX}(?P<y>\d{{4}})(?P<sep>[-/])(?P<m>\d{{1,2}})(?P=sep)(?P<d>\d{{1,2}})\b"),
        _iso_date,
    ),
    (_compile(rf"\b{_CTX}{_DAY}\s+(?P<of>of\s+)?{_MONTH}{_YEAR}"), _day_of_month),
    (_compile(rf"\b{_CTX}{_MONTH}\s+{_DAY}{_NOT_A_COUNT}{_YEAR}"), _day_of_month),
    (_compile(rf"\b{_CTX}(?:the\s+month\s+of\s+)?{_MONTH}{_YEAR}"), _named_month),
    (_compile(rf"\b{_PART}(?:the\s+month\s+of\s+)?{_MONTH}{_YEAR}"), _part_of_month),
    (_compile(rf"\b(?P<rel>last|this|next|past|previous)\s+{_MONTH}"), _relative_month),
    (
        _compile(
            rf"\b(?:(?P<ctx>in|during|throughout|around|since)\s+(?:the\s+year\s+)?|{_PART})"
            r"(?P<year>\d{4})\b(?![-/]\d)"
        ),
        _year,
    ),
]
