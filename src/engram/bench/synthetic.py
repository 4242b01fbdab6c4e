"""A small synthetic data set in the exact official LongMemEval format, for tests and docs.

Each question gets a mini haystack: filler chat sessions plus one or two sessions in which the
answer is said (those turns carry ``has_answer: true``). All six official question types occur;
every seventh question is an abstention variant (id ending in ``_abs``). Deterministic per seed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["make_synthetic_longmemeval"]

_Turn = tuple[str, str, bool]  # role, content, has_answer

_FILLER: tuple[tuple[str, str], ...] = (
    (
        "Can you give me a quick recipe for banana bread?",
        "Mash three ripe bananas, mix with melted butter, sugar, an egg, flour and baking soda, "
        "then bake for about an hour at 175 C.",
    ),
    (
        "How do I reverse a list in Python?",
        "Use my_list.reverse() to reverse it in place, or my_list[::-1] for a reversed copy.",
    ),
    (
        "What should I pack for a weekend hiking trip?",
        "Layers, a rain jacket, sturdy shoes, water, snacks, a map and a small first-aid kit.",
    ),
    (
        "Any tips for sleeping better?",
        "Keep a regular schedule, avoid screens before bed, and keep the bedroom cool and dark.",
    ),
    (
        "Explain compound interest simply.",
        "You earn interest on your savings and on the interest already added, so it snowballs.",
    ),
    (
        "What are some easy houseplants?",
        "Pothos, snake plants and ZZ plants tolerate low light and irregular watering.",
    ),
    (
        "How long should I steep green tea?",
        "About two to three minutes with water around 80 C; longer makes it bitter.",
    ),
    (
        "Suggest a stretching routine for after running.",
        "Hold calf, hamstring, quad and hip-flexor stretches for thirty seconds each.",
    ),
    (
        "What's a good way to learn Spanish vocabulary?",
        "Spaced-repetition flashcards plus short daily reading works well for most people.",
    ),
    (
        "How do I remove a coffee stain from a shirt?",
        "Blot it, rinse with cold water from the back, then treat with a little dish soap.",
    ),
)

_NAMES = ("Biscuit", "Luna", "Pepper", "Maple", "Juniper", "Waffles")
_ANIMALS = ("dog", "cat", "rabbit")
_COMPANIES = ("Northwind Labs", "Bluefin Analytics", "Copperleaf Studio", "Harbor Robotics")
_BOOKS = (
    ("Atomic Habits", "James Clear"),
    ("The Power of Habit", "Charles Duhigg"),
    ("Tiny Habits", "BJ Fogg"),
)
_CUISINES = ("Thai", "Mexican", "Indian", "Italian")
_RACES = ("Riverside 10k", "Harbor Half Marathon", "Spring 5k", "Midnight Trail Run")
_HOBBIES = ("pottery", "salsa dancing", "watercolor painting", "rock climbing")


@dataclass(frozen=True)
class _Scenario:
    question_type: str
    question: str
    answer: str
    evidence: tuple[tuple[_Turn, ...], ...]  # sessions, in the order they must appear
    abstention_question: str  # asked instead when the item is an abstention variant


def _user(text: str, evidence: bool = True) -> _Turn:
    return ("user", text, evidence)


def _assistant(text: str, evidence: bool = False) -> _Turn:
    return ("assistant", text, evidence)


def _pet(rng: random.Random) -> _Scenario:
    name, animal = rng.choice(_NAMES), rng.choice(_ANIMALS)
    said = f"We finally adopted a rescue {animal} last weekend and named it {name}!"
    reply = f"Congratulations! {name} is a lovely name."
    return _Scenario(
        "single-session-user", f"What did I name the {animal} I adopted?", name,
        ((_user(said), _assistant(reply)),), "What did I name the parrot I adopted?",
    )  # fmt: skip


def _book(rng: random.Random) -> _Scenario:
    title, author = rng.choice(_BOOKS)
    asked = _user("Can you recommend a good book about building habits?", evidence=False)
    said = _assistant(f"I'd suggest '{title}' by {author}; it is practical and short.", True)
    return _Scenario(
        "single-session-assistant", "Which book did you recommend to me about habits?", title,
        ((asked, said),), "Which book did you recommend to me about gardening?",
    )  # fmt: skip


def _diet(rng: random.Random) -> _Scenario:
    cuisine = rng.choice(_CUISINES)
    said = _user(f"I've been vegetarian for years and I love cooking {cuisine} food.")
    reply = _assistant(f"{cuisine} cuisine has many great vegetarian dishes.")
    return _Scenario(
        "single-session-preference", "Can you suggest something to cook for dinner tonight?",
        f"The user would prefer a vegetarian {cuisine} dish.", ((said, reply),),
        "Can you suggest a wine to go with my steak dinner?",
    )  # fmt: skip


def _races(rng: random.Random) -> _Scenario:
    first, second = rng.sample(_RACES, 2)
    return _Scenario(
        "multi-session", "How many races have I run this year?", "2",
        ((_user(f"I ran the {first} this morning, my first race this year!"),),
         (_user(f"Just finished the {second}, that makes two races this year."),)),
        "How many swimming competitions have I entered this year?",
    )  # fmt: skip


def _commute(rng: random.Random) -> _Scenario:
    before, after = rng.sample((25, 30, 40, 45, 50), 2)
    return _Scenario(
        "knowledge-update", "How long is my commute to work now?", f"{after} minutes",
        ((_user(f"My commute to work takes about {before} minutes by bus."),),
         (_user(f"Since we moved, my commute to work is {after} minutes."),)),
        "How long is my commute to the gym now?",
    )  # fmt: skip


def _classes(rng: random.Random) -> _Scenario:
    hobby, company = rng.choice(_HOBBIES), rng.choice(_COMPANIES)
    said = _user(f"I started taking {hobby} classes today, at {company}'s community space.")
    return _Scenario(  # the answer (days between session and question) is filled in later
        "temporal-reasoning", f"How many days ago did I start taking {hobby} classes?", "",
        ((said,),), "How many days ago did I start taking violin classes?",
    )  # fmt: skip


_SCENARIOS = (_pet, _book, _diet, _races, _commute, _classes)


def _filler_session(rng: random.Random) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for user, assistant in rng.sample(_FILLER, rng.randint(2, 3)):
        turns.append({"role": "user", "content": user, "has_answer": False})
        turns.append({"role": "assistant", "content": assistant, "has_answer": False})
    return turns


def _evidence_session(turns: tuple[_Turn, ...], rng: random.Random) -> list[dict[str, Any]]:
    out = _filler_session(rng)[:2]
    out.extend({"role": r, "content": c, "has_answer": h} for r, c, h in turns)
    if turns[-1][0] == "user":
        out.append({"role": "assistant", "content": "Thanks for telling me!", "has_answer": False})
    return out


def _date(value: datetime) -> str:
    return value.strftime("%Y/%m/%d (%a) %H:%M")


def _item(index: int, rng: random.Random, n_sessions: int) -> dict[str, Any]:
    scenario = _SCENARIOS[index % len(_SCENARIOS)](rng)
    abstention = index % 7 == 6
    key = f"{rng.getrandbits(32):08x}"
    n_filler = max(n_sessions - len(scenario.evidence), 0)
    slots = sorted(rng.sample(range(n_filler + len(scenario.evidence)), len(scenario.evidence)))
    start = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 200))
    ids: list[str] = []
    dates: list[str] = []
    sessions: list[list[dict[str, Any]]] = []
    answer_ids: list[str] = []
    when = start
    evidence_dates: list[datetime] = []
    for position in range(n_filler + len(scenario.evidence)):
        when += timedelta(days=rng.randint(1, 5), minutes=rng.randint(0, 600))
        if position in slots:
            which = slots.index(position)
            session_id = f"answer_{key}_{which + 1}"
            sessions.append(_evidence_session(scenario.evidence[which], rng))
            answer_ids.append(session_id)
            evidence_dates.append(when)
        else:
            session_id = f"session_{key}_{position}"
            sessions.append(_filler_session(rng))
        ids.append(session_id)
        dates.append(_date(when))
    question_date = when + timedelta(days=rng.randint(1, 3), minutes=rng.randint(0, 600))
    answer = scenario.answer or str((question_date.date() - evidence_dates[0].date()).days)
    return {
        "question_id": f"{key}_abs" if abstention else key,
        "question_type": scenario.question_type,
        "question": scenario.abstention_question if abstention else scenario.question,
        "answer": "The information provided is not enough to answer." if abstention else answer,
        "question_date": _date(question_date),
        "haystack_session_ids": ids,
        "haystack_dates": dates,
        "haystack_sessions": sessions,
        "answer_session_ids": answer_ids,
    }


def make_synthetic_longmemeval(
    path: str | Path, n_questions: int = 12, seed: int = 0, sessions_per_question: int = 8
) -> Path:
    """Write ``n_questions`` items in the official LongMemEval format to ``path``; return it."""
    rng = random.Random(seed)
    items = [_item(index, rng, sessions_per_question) for index in range(n_questions)]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(items, indent=1), encoding="utf-8")
    return out
