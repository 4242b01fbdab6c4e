"""Time-window resolution and the time factor are pure functions: explicit expected windows for
every supported expression, the false positives it must not take, and calendar edge cases."""

from __future__ import annotations

import ast
import itertools
import math
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

import engram.temporal
from engram.errors import InvalidInputError
from engram.temporal import TimeWindow, resolve_time_window, time_factor

ANCHOR = datetime(2023, 5, 30, 23, 40, tzinfo=UTC)  # a Tuesday


def day(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def window_days(query: str, anchor: datetime = ANCHOR) -> tuple[date, date] | None:
    window = resolve_time_window(query, anchor)
    return None if window is None else (window.start.date(), window.end.date())


D = date  # expected windows below are written as (first day, day after the last)

CASES: list[tuple[str, date, date]] = [
    # days
    ("What did I eat yesterday?", D(2023, 5, 29), D(2023, 5, 30)),
    ("WHAT DID I EAT YESTERDAY?", D(2023, 5, 29), D(2023, 5, 30)),
    ("What's on my list today?", D(2023, 5, 30), D(2023, 5, 31)),
    ("What did I do the day before yesterday?", D(2023, 5, 28), D(2023, 5, 29)),
    ("Where am I going tonight?", D(2023, 5, 30), D(2023, 5, 31)),
    ("What did I read this morning?", D(2023, 5, 30), D(2023, 5, 31)),
    ("Who did I call last night?", D(2023, 5, 29), D(2023, 5, 30)),
    ("What is due tomorrow?", D(2023, 5, 31), D(2023, 6, 1)),
    ("What is on the day after tomorrow?", D(2023, 6, 1), D(2023, 6, 2)),
    # N units ago: days exact up to 2 and +-1 beyond, weeks +-3, months +-15, years +-6 months
    ("What did I buy 1 day ago?", D(2023, 5, 29), D(2023, 5, 30)),
    ("What did I buy 2 days ago?", D(2023, 5, 28), D(2023, 5, 29)),
    ("What did I buy 3 days ago?", D(2023, 5, 26), D(2023, 5, 29)),
    ("What did I buy ten days back?", D(2023, 5, 19), D(2023, 5, 22)),
    ("What did I buy a week ago?", D(2023, 5, 20), D(2023, 5, 27)),
    ("What did I buy 2 weeks ago?", D(2023, 5, 13), D(2023, 5, 20)),
    ("What did I buy two weeks ago?", D(2023, 5, 13), D(2023, 5, 20)),
    ("What did I buy a couple of weeks ago?", D(2023, 5, 13), D(2023, 5, 20)),
    ("What did I buy three weeks ago?", D(2023, 5, 6), D(2023, 5, 13)),
    ("What did I buy a month ago?", D(2023, 4, 15), D(2023, 5, 16)),
    ("What did I buy 2 months ago?", D(2023, 3, 15), D(2023, 4, 15)),
    ("What did I buy six months ago?", D(2022, 11, 15), D(2022, 12, 16)),
    ("What did I buy a year ago?", D(2021, 11, 30), D(2022, 11, 30)),
    ("What did I buy twelve years ago?", D(2010, 11, 30), D(2011, 11, 30)),
    ("Where will I be in 2 weeks' time?", D(2023, 6, 10), D(2023, 6, 17)),
    ("Where will I be 3 days from now?", D(2023, 6, 1), D(2023, 6, 4)),
    # the last / past / next N units: through today (from today)
    ("What did I eat in the last 3 days?", D(2023, 5, 27), D(2023, 5, 31)),
    ("What did I eat in the past 10 days?", D(2023, 5, 20), D(2023, 5, 31)),
    ("What did I eat over the past two weeks?", D(2023, 5, 16), D(2023, 5, 31)),
    ("What did I eat past 2 years?", D(2021, 5, 30), D(2023, 5, 31)),
    ("What is planned for the next 3 days?", D(2023, 5, 30), D(2023, 6, 3)),
    # calendar units; "the last week" / "the past week" roll
    ("What did I do last week?", D(2023, 5, 22), D(2023, 5, 29)),
    ("What did I do the past week?", D(2023, 5, 23), D(2023, 5, 31)),
    ("What did I do in the last week?", D(2023, 5, 23), D(2023, 5, 31)),
    ("What did I do this week?", D(2023, 5, 29), D(2023, 6, 5)),
    ("What will I do next week?", D(2023, 6, 5), D(2023, 6, 12)),
    ("What did I do last month?", D(2023, 4, 1), D(2023, 5, 1)),
    ("What did I do in the past month?", D(2023, 4, 30), D(2023, 5, 31)),
    ("What did I do this month?", D(2023, 5, 1), D(2023, 6, 1)),
    ("What will I do next month?", D(2023, 6, 1), D(2023, 7, 1)),
    ("Where did I travel last year?", D(2022, 1, 1), D(2023, 1, 1)),
    ("Where did I travel in the past year?", D(2022, 5, 30), D(2023, 5, 31)),
    ("Where will I travel this year?", D(2023, 1, 1), D(2024, 1, 1)),
    ("Where will I travel next year?", D(2024, 1, 1), D(2025, 1, 1)),
    # weekends
    ("What did I do last weekend?", D(2023, 5, 27), D(2023, 5, 29)),
    ("What did I do this past weekend?", D(2023, 5, 27), D(2023, 5, 29)),
    ("What did I do over the weekend?", D(2023, 5, 27), D(2023, 5, 29)),
    ("What will I do this weekend?", D(2023, 6, 3), D(2023, 6, 5)),
    ("What will I do next weekend?", D(2023, 6, 3), D(2023, 6, 5)),
    # weekdays: on / last = the latest strictly before today
    ("What did I do last Saturday?", D(2023, 5, 27), D(2023, 5, 28)),
    ("What did I do on Saturday?", D(2023, 5, 27), D(2023, 5, 28)),
    ("What did I do on Monday?", D(2023, 5, 29), D(2023, 5, 30)),
    ("What did I do last Tuesday?", D(2023, 5, 23), D(2023, 5, 24)),
    ("What did I do this Monday?", D(2023, 5, 29), D(2023, 5, 30)),
    ("What will I do this Friday?", D(2023, 6, 2), D(2023, 6, 3)),
    ("What will I do next Tuesday?", D(2023, 6, 6), D(2023, 6, 7)),
    ("What will I do next Wednesday?", D(2023, 5, 31), D(2023, 6, 1)),
    # months: without a year, the latest one begun by the anchor's month
    ("Where did I go in May?", D(2023, 5, 1), D(2023, 6, 1)),
    ("Where did I go in May 2023?", D(2023, 5, 1), D(2023, 6, 1)),
    ("Where did I go in May, 2021?", D(2021, 5, 1), D(2021, 6, 1)),
    ("What was my plan for May 2023?", D(2023, 5, 1), D(2023, 6, 1)),
    ("Where did I go in march?", D(2023, 3, 1), D(2023, 4, 1)),
    ("Where did I go during June?", D(2022, 6, 1), D(2022, 7, 1)),
    ("Where did I go in Sept?", D(2022, 9, 1), D(2022, 10, 1)),
    ("Where did I go in May of last year?", D(2022, 5, 1), D(2022, 6, 1)),
    ("Where did I go in May last year?", D(2022, 5, 1), D(2022, 6, 1)),
    ("Where did I go last May?", D(2022, 5, 1), D(2022, 6, 1)),
    ("Where did I go last April?", D(2023, 4, 1), D(2023, 5, 1)),
    ("Where will I go this December?", D(2023, 12, 1), D(2024, 1, 1)),
    ("Where will I go next May?", D(2024, 5, 1), D(2024, 6, 1)),
    ("Where will I go next June?", D(2023, 6, 1), D(2023, 7, 1)),
    ("What did I do in early May?", D(2023, 5, 1), D(2023, 5, 11)),
    ("What did I do in mid-May?", D(2023, 5, 11), D(2023, 5, 21)),
    ("What did I do in late May?", D(2023, 5, 21), D(2023, 6, 1)),
    ("What did I do in late May 2022?", D(2022, 5, 21), D(2022, 6, 1)),
    ("What did I do at the end of February?", D(2023, 2, 21), D(2023, 3, 1)),
    ("What did I do in the last week of April?", D(2023, 4, 1), D(2023, 5, 1)),
    # dates: without a year, the latest such date on or before the anchor's day
    ("What happened on May 8?", D(2023, 5, 8), D(2023, 5, 9)),
    ("What happened May 8th?", D(2023, 5, 8), D(2023, 5, 9)),
    ("What happened on the 8th of May?", D(2023, 5, 8), D(2023, 5, 9)),
    ("What happened on 8 May 2023?", D(2023, 5, 8), D(2023, 5, 9)),
    ("What happened on May 8, 2022?", D(2022, 5, 8), D(2022, 5, 9)),
    ("What happened on 2023-05-08?", D(2023, 5, 8), D(2023, 5, 9)),
    ("Session of 2023/05/08 (Mon) 14:02", D(2023, 5, 8), D(2023, 5, 9)),
    ("What happened on May 30?", D(2023, 5, 30), D(2023, 5, 31)),
    ("What happened on May 31?", D(2022, 5, 31), D(2022, 6, 1)),
    ("What happened on Jan 5?", D(2023, 1, 5), D(2023, 1, 6)),
    ("What did I do on June 3?", D(2022, 6, 3), D(2022, 6, 4)),
    # years
    ("Where did I live in 2022?", D(2022, 1, 1), D(2023, 1, 1)),
    ("Where did I live during the year 2021?", D(2021, 1, 1), D(2022, 1, 1)),
    ("Where did I live in early 2022?", D(2022, 1, 1), D(2022, 5, 1)),
    ("Where did I live in mid-2022?", D(2022, 5, 1), D(2022, 9, 1)),
    ("Where did I live in late 2022?", D(2022, 9, 1), D(2023, 1, 1)),
    ("Where did I live at the beginning of 2022?", D(2022, 1, 1), D(2022, 5, 1)),
    # since X: from the start of X through today
    ("What have I read since April?", D(2023, 4, 1), D(2023, 5, 31)),
    ("What have I read since May 8?", D(2023, 5, 8), D(2023, 5, 31)),
    ("What have I read since 2022?", D(2022, 1, 1), D(2023, 5, 31)),
    # vague
    ("What have I been reading recently?", D(2023, 4, 30), D(2023, 5, 31)),
    ("What have I been reading lately?", D(2023, 4, 30), D(2023, 5, 31)),
    ("What did I mention the other day?", D(2023, 5, 23), D(2023, 5, 30)),
    ("What have I cooked in recent months?", D(2023, 3, 1), D(2023, 5, 31)),
]


@pytest.mark.parametrize(("query", "start", "end"), CASES)
def test_resolves_expected_window(query: str, start: date, end: date) -> None:
    assert window_days(query) == (start, end)


@pytest.mark.parametrize(
    ("query", "expression", "strength"),
    [
        ("What did I buy 2 weeks ago?", "2 weeks ago", 1.0),
        ("What did I buy a few days ago?", "a few days ago", 0.75),
        ("What did I buy several months ago?", "several months ago", 0.75),
        ("What did I eat in the past few weeks?", "the past few weeks", 0.75),
        ("What have I been reading recently?", "recently", 0.5),
        ("What have I been reading lately?", "lately", 0.5),
        ("What happened on May   8?", "on May 8", 1.0),
        ("What did I do the day before yesterday?", "the day before yesterday", 1.0),
    ],
)
def test_expression_and_strength(query: str, expression: str, strength: float) -> None:
    window = resolve_time_window(query, ANCHOR)
    assert window is not None
    assert (window.expression, window.strength) == (expression, strength)


def test_few_means_three() -> None:
    assert window_days("a few days ago") == window_days("3 days ago")
    assert window_days("the last few months") == window_days("the last 3 months")


@pytest.mark.parametrize(
    ("query", "expression"),
    [
        ("Recently, what did I buy last week?", "last week"),  # explicit beats vague
        ("May I ask what I did in May?", "in May"),
        ("In May, three weeks ago, what did I buy?", "In May"),  # the first explicit one
        ("What did I do the day before yesterday?", "the day before yesterday"),  # the longest
        ("What happened in May 2022?", "in May 2022"),
        ("What happened on 2023-05-08?", "on 2023-05-08"),
    ],
)
def test_which_expression_wins(query: str, expression: str) -> None:
    window = resolve_time_window(query, ANCHOR)
    assert window is not None
    assert window.expression == expression


@pytest.mark.parametrize(
    "query",
    [
        "",
        "May I ask you something?",
        "I may go to the gym.",
        "What was the last time I saw him?",
        "Did we march in the parade?",
        "Did we march 5 miles?",
        "I think 5 may be enough.",
        "Should I get a second opinion?",
        "How many days ago did I buy the bike?",
        "How many books do I read in a month?",
        "How far do I run in 2 weeks?",
        "What did June say about the trip?",
        "Did I rely on May for help?",
        "What did I say in the past about it?",
        "What are my weekend plans?",
        "Do I like Saturdays?",
        "What is my favourite day of the week?",
        "Was it an august institution?",
        "Maybe I should call? Mayday!",
        "Which was the first one?",
        "I was 2 years old.",
        "What happened on February 30?",
        "What happened on February 29, 2023?",
        "Did anything happen an hour ago?",
    ],
)
def test_no_time_expression(query: str) -> None:
    assert resolve_time_window(query, ANCHOR) is None


JANUARY = datetime(2024, 1, 15, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "start", "end"),
    [
        ("What did I do in December?", D(2023, 12, 1), D(2024, 1, 1)),
        ("What did I do last December?", D(2023, 12, 1), D(2024, 1, 1)),
        ("What did I do in early December?", D(2023, 12, 1), D(2023, 12, 11)),
        ("What did I do on December 25?", D(2023, 12, 25), D(2023, 12, 26)),
        ("What did I do in January?", D(2024, 1, 1), D(2024, 2, 1)),
        ("What did I do last month?", D(2023, 12, 1), D(2024, 1, 1)),
        ("What did I do last year?", D(2023, 1, 1), D(2024, 1, 1)),
        ("What did I do a month ago?", D(2023, 11, 30), D(2023, 12, 31)),
    ],
)
def test_year_rollover_in_january(query: str, start: date, end: date) -> None:
    assert window_days(query, JANUARY) == (start, end)


@pytest.mark.parametrize(
    ("anchor", "query", "start", "end"),
    [
        # one month before March 31 is the last day of February, +-15 days
        (day(2023, 3, 31), "1 month ago", D(2023, 2, 13), D(2023, 3, 16)),
        (day(2024, 3, 31), "1 month ago", D(2024, 2, 14), D(2024, 3, 16)),
        (day(2024, 2, 29), "a year ago", D(2022, 8, 28), D(2023, 8, 28)),
        (day(2024, 3, 1), "yesterday", D(2024, 2, 29), D(2024, 3, 1)),
        (day(2024, 3, 1), "on February 29", D(2024, 2, 29), D(2024, 3, 1)),
        (day(2023, 3, 1), "on February 29", D(2020, 2, 29), D(2020, 3, 1)),
        (day(2023, 3, 1), "in late February", D(2023, 2, 21), D(2023, 3, 1)),
        (day(2024, 3, 1), "in late February", D(2024, 2, 21), D(2024, 3, 1)),
        (day(2023, 5, 31), "last month", D(2023, 4, 1), D(2023, 5, 1)),
        (day(2023, 5, 31), "the past month", D(2023, 4, 30), D(2023, 6, 1)),
        (day(2023, 3, 31), "the past month", D(2023, 2, 28), D(2023, 4, 1)),
        (day(2023, 12, 31), "next month", D(2024, 1, 1), D(2024, 2, 1)),
        (day(2023, 12, 31), "next week", D(2024, 1, 1), D(2024, 1, 8)),  # a Sunday
        (day(2023, 12, 31), "this weekend", D(2023, 12, 30), D(2024, 1, 1)),
        (day(2023, 12, 31), "next weekend", D(2024, 1, 6), D(2024, 1, 8)),
        (day(2023, 12, 31), "last weekend", D(2023, 12, 23), D(2023, 12, 25)),
        (day(2023, 12, 30), "last Saturday", D(2023, 12, 23), D(2023, 12, 24)),  # a Saturday
        (day(2023, 12, 30), "this Saturday", D(2023, 12, 30), D(2023, 12, 31)),
        (day(2023, 12, 30), "next Saturday", D(2024, 1, 6), D(2024, 1, 7)),
    ],
)
def test_month_ends_leap_years_and_week_edges(
    anchor: datetime, query: str, start: date, end: date
) -> None:
    assert window_days(query, anchor) == (start, end)


def test_window_is_whole_days_in_the_anchor_time_zone() -> None:
    tokyo = timezone(timedelta(hours=9))
    anchor = ANCHOR.astimezone(tokyo)  # 2023-05-31 08:40 in Tokyo
    window = resolve_time_window("what did I do yesterday?", anchor)
    assert window == TimeWindow(
        start=datetime(2023, 5, 30, tzinfo=tokyo),
        end=datetime(2023, 5, 31, tzinfo=tokyo),
        expression="yesterday",
    )
    assert window.start.tzinfo is tokyo


def test_bad_input_is_rejected() -> None:
    with pytest.raises(InvalidInputError):
        resolve_time_window("yesterday", datetime(2023, 5, 30))  # naive
    with pytest.raises(InvalidInputError):
        resolve_time_window(None, ANCHOR)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        TimeWindow(day(2023, 5, 2), day(2023, 5, 1), "backwards")
    with pytest.raises(InvalidInputError):
        TimeWindow(datetime(2023, 5, 1), day(2023, 5, 2), "naive")
    for strength in (0.0, 1.5):
        with pytest.raises(InvalidInputError):
            TimeWindow(day(2023, 5, 1), day(2023, 5, 2), "x", strength=strength)


MAY = TimeWindow(day(2023, 5, 1), day(2023, 6, 1), "in May")
RECENTLY = TimeWindow(day(2023, 5, 1), day(2023, 6, 1), "recently", strength=0.5)


def test_time_factor_neutral_without_window_or_weight() -> None:
    assert time_factor(day(2020, 1, 1), None, weight=1.0) == 1.0
    assert time_factor(day(2023, 5, 10), MAY, weight=0.0) == 1.0


def test_time_factor_inside_the_window() -> None:
    assert time_factor(day(2023, 5, 1), MAY, weight=0.5) == 1.5  # start is inclusive
    assert time_factor(day(2023, 5, 31) + timedelta(hours=23), MAY, weight=0.5) == 1.5
    assert time_factor(day(2023, 5, 10), RECENTLY, weight=0.5) == 1.25


def test_time_factor_fades_outside_the_window() -> None:
    def factor(ts: datetime, tolerance: float = 8.0) -> float:
        return time_factor(ts, MAY, weight=1.0, tolerance_days=tolerance)

    assert factor(day(2023, 6, 1)) == 2.0  # end is exclusive, but the fade starts at full
    assert math.isclose(factor(day(2023, 6, 5)), 1.5)  # half way: half the boost
    assert math.isclose(factor(day(2023, 4, 27)), 1.5)  # before the start too
    assert factor(day(2023, 6, 9)) == 1.0
    assert factor(day(2024, 1, 1)) == 1.0
    fades = [factor(day(2023, 6, 1) + timedelta(hours=h)) for h in range(0, 8 * 24 + 1, 6)]
    assert all(a > b for a, b in itertools.pairwise(fades))
    assert all(1.0 <= f <= 2.0 for f in fades)
    # a hard box
    assert factor(day(2023, 6, 1), tolerance=0.0) == 1.0
    assert factor(day(2023, 5, 31), tolerance=0.0) == 2.0
    # the default tolerance is a week
    assert time_factor(day(2023, 6, 8), MAY, weight=1.0) == 1.0
    assert 1.0 < time_factor(day(2023, 6, 7), MAY, weight=1.0) < 2.0


def test_time_factor_rejects_bad_input() -> None:
    with pytest.raises(InvalidInputError):
        time_factor(datetime(2023, 5, 10), MAY, weight=1.0)
    with pytest.raises(InvalidInputError):
        time_factor(day(2023, 5, 10), MAY, weight=1.0, tolerance_days=-1.0)


def test_public_api_and_stdlib_only() -> None:
    assert sorted(engram.temporal.__all__) == [
        "DEFAULT_TOLERANCE_DAYS",
        "TimeWindow",
        "resolve_time_window",
        "time_factor",
    ]
    package = Path(engram.temporal.__file__).parent
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in sys.stdlib_module_names or root == "engram", (source, root)
