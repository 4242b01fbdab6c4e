"""Relative time expressions, resolved against the day the question is asked: "yesterday",
"3 weeks ago", "in two days", "the past 10 days", "last month", "this weekend", "on Saturday",
"recently"."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import cast

from engram.temporal._calendar import Span, Unit, around, calendar_unit, one_day, shift

__all__ = ["RULES", "Resolver", "Rule"]

Resolver = Callable[[re.Match[str], date], Span | None]
Rule = tuple[re.Pattern[str], Resolver]

_VAGUE = 0.5  # "recently", "lately", "the other day"
_FUZZY = 0.75  # "a few", "several"

_COUNTS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "couple": 2,
    "few": 3, "several": 3,
}  # fmt: skip
_NUMBER_WORDS = "|".join(k for k in _COUNTS if len(k) > 2 and k not in ("couple", "few"))
_QUANTITY = rf"(?P<n>\d{{1,3}}|{_NUMBER_WORDS}|(?:a\s+)?couple(?:\s+of)?|(?:a\s+)?few|an?)"
_UNIT = r"(?P<unit>day|week|month|year)s?"
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_OFFSETS = {"last": -1, "past": -1, "previous": -1, "this": 0, "next": 1, "coming": 1}


def _words(text: str) -> str:
    return " ".join(text.lower().split())


def _count(m: re.Match[str]) -> tuple[int, float]:
    """The number in a quantity phrase, and how explicit it was ("a few" is fuzzy)."""
    words = _words(m["n"]).removeprefix("a ").removesuffix(" of")
    if words.isdigit():
        return int(words), 1.0
    return _COUNTS[words], _FUZZY if words in ("few", "several") else 1.0


def _unit(m: re.Match[str]) -> Unit:
    return cast(Unit, m["unit"].lower())


_DAY_WORDS = {
    "the day before yesterday": -2,
    "the day after tomorrow": 2,
    "yesterday": -1,
    "last night": -1,
    "today": 0,
    "tonight": 0,
    "this morning": 0,
    "this afternoon": 0,
    "this evening": 0,
    "tomorrow": 1,
}


def _day_word(m: re.Match[str], today: date) -> Span:
    return one_day(today + timedelta(days=_DAY_WORDS[_words(m[0])]))


def _ago(m: re.Match[str], today: date) -> Span:
    """ "3 weeks ago", "3 weeks back"; in the future "in 3 weeks' time", "3 weeks from now" (a bare
    "in 3 weeks" is left alone: "how far do I run in 3 weeks?" names a duration, not a date)."""
    count, strength = _count(m)
    sign = 1 if m["dir"].lower() in ("in", "from") else -1
    unit = _unit(m)
    return around(shift(today, unit, sign * count), unit, count, strength)


def _rolling(m: re.Match[str], today: date) -> Span:
    """ "the past N units" runs from N units ago through today; "the next N units" from today."""
    count, strength = _count(m)
    unit = _unit(m)
    tomorrow = today + timedelta(days=1)
    if _OFFSETS[m["rel"].lower()] > 0:
        return Span(today, shift(tomorrow, unit, count), strength)
    return Span(shift(today, unit, -count), tomorrow, strength)


def _unit_relative(m: re.Match[str], today: date) -> Span:
    """ "last week" is the previous calendar week (Monday first); "the last week" and "the past
    week" are the 7 days through today; "this"/"next" are calendar units."""
    rel, unit = m["rel"].lower(), _unit(m)
    if rel == "past" or (m["the"] and rel in ("last", "previous")):
        return Span(shift(today, unit, -1), today + timedelta(days=1))
    return calendar_unit(today, unit, _OFFSETS[rel])


def _weekend(m: re.Match[str], today: date) -> Span:
    """ "this weekend" is the Saturday and Sunday of the current week (Monday first), "last
    weekend" the one before it, "next weekend" the first one starting after today and "the
    weekend" the latest one that has started."""
    saturday = today - timedelta(days=today.weekday()) + timedelta(days=5)
    rel = m["rel"].lower()
    if rel in ("next", "coming"):
        saturday += timedelta(weeks=1) if saturday <= today else timedelta(0)
    elif rel == "the":
        saturday -= timedelta(weeks=1) if saturday > today else timedelta(0)
    elif rel != "this":
        saturday -= timedelta(weeks=1)
    return Span(saturday, saturday + timedelta(days=2))


def _weekday(m: re.Match[str], today: date) -> Span:
    """ "on Saturday", "last Saturday": the latest Saturday strictly before today; "this
    Saturday": the one in the current week (Monday first); "next Saturday": the first one
    strictly after today."""
    target, rel = _WEEKDAYS.index(m["day"].lower()), m["rel"].lower()
    if rel == "this":
        return one_day(today + timedelta(days=target - today.weekday()))
    if rel in ("next", "coming"):
        return one_day(today + timedelta(days=(target - today.weekday() - 1) % 7 + 1))
    return one_day(today - timedelta(days=(today.weekday() - target - 1) % 7 + 1))


_VAGUE_DAYS = {"the other day": 7, "in recent months": 90}


def _vague(m: re.Match[str], today: date) -> Span:
    """ "recently", "lately" and the like: the last 30 days (90 for "in recent months"); "the
    other day": the week before today."""
    phrase = _words(m[0])
    start = today - timedelta(days=_VAGUE_DAYS.get(phrase, 30))
    end = today if phrase == "the other day" else today + timedelta(days=1)
    return Span(start, end, _VAGUE)


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _phrases(phrases: list[str]) -> str:
    ordered = sorted(phrases, key=len, reverse=True)
    return r"\b(?:" + "|".join(p.replace(" ", r"\s+") for p in ordered) + r")\b"


RULES: list[Rule] = [
    (_compile(_phrases(list(_DAY_WORDS))), _day_word),
    (_compile(rf"\b{_QUANTITY}\s+{_UNIT}\s+(?P<dir>ago|back)\b"), _ago),
    (_compile(rf"\b(?P<dir>in)\s+{_QUANTITY}\s+{_UNIT}'?s?\s+time\b"), _ago),
    (_compile(rf"\b{_QUANTITY}\s+{_UNIT}\s+(?P<dir>from)\s+(?:now|today)\b"), _ago),
    (
        _compile(
            rf"\b(?:the\s+)?(?P<rel>last|past|previous|next|coming)\s+{_QUANTITY}\s+{_UNIT}\b"
        ),
        _rolling,
    ),
    (
        _compile(
            r"\b(?P<the>the\s+)?(?P<rel>last|past|previous|this|next|coming)\s+"
            r"(?P<unit>week|month|year)\b(?!\s+of\b)"
        ),
        _unit_relative,
    ),
    (_compile(r"\b(?P<rel>last|past|previous|this|next|coming|the)\s+weekend\b"), _weekend),
    (
        _compile(
            r"\b(?P<rel>on|last|past|previous|this|next|coming)\s+"
            rf"(?P<day>{'|'.join(_WEEKDAYS)})\b"
        ),
        _weekday,
    ),
    (
        _compile(
            _phrases(
                ["recently", "lately", "of late", "these days", "nowadays", "the other day"]
                + [f"in recent {unit}" for unit in ("days", "weeks", "months")]
            )
        ),
        _vague,
    ),
]
