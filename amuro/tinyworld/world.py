"""Entities and the facts that hold between them, plus the phrasings used to state them."""

from __future__ import annotations

import random
from dataclasses import dataclass

NAMES = (
    "Alice Bob Carol Dave Emma Frank Grace Henry Iris Jack Kate Leo Mia Nick Olga Paul Quinn "
    "Rosa Sam Tina Uma Victor Wendy Xavier Yara Zack Anna Ben Clara Dan Eva Finn Gina Hugo Ivy "
    "Jon Lena Max Nora Omar"
).split()

VALUES = {
    "city": "Paris Rome Oslo Lima Cairo Tokyo Delhi Quito Dakar Perth".split(),
    "job": "baker doctor farmer pilot teacher painter sailor nurse miner singer".split(),
    "pet": "cat dog parrot rabbit horse goat turtle hamster owl fox".split(),
    "colour": "red blue green yellow purple orange white black pink grey".split(),
}
ATTRIBUTES = tuple(VALUES)

# Declarative phrasings. The first group is used by the corpus and by in-domain tasks; the
# second ("alt") only by out-of-domain sets, so OOD text differs in form from ID text.
FACT_TEMPLATES = {
    "city": [
        "{p} lives in {v}.",
        "{p}'s home is in {v}.",
        "{p} has a house in {v}.",
        "The home of {p} is in {v}.",
    ],
    "job": [
        "{p} works as a {v}.",
        "{p} is a {v} by trade.",
        "The job of {p} is {v}.",
        "{p} earns a living as a {v}.",
    ],
    "pet": [
        "{p} owns a {v}.",
        "{p} has a pet {v}.",
        "The pet of {p} is a {v}.",
        "{p} takes care of a {v}.",
    ],
    "colour": [
        "{p} likes the colour {v}.",
        "The favourite colour of {p} is {v}.",
        "{p} loves {v} things.",
        "{p} always picks {v}.",
    ],
}
ALT_FACT_TEMPLATES = {
    "city": ["Town records list {v} as the residence of {p}.", "{p} resides in {v}."],
    "job": ["By profession, {p} is a {v}.", "{p} is employed as a {v}."],
    "pet": ["A {v} belongs to {p}.", "{p} keeps a {v} at home."],
    "colour": ["{v} is the colour that {p} prefers.", "{p} prefers the colour {v}."],
}

# Question phrasings for the question–answer lines of the corpus and the fact QA task.
WH_QUESTIONS = {
    "city": "Where does {p} live?",
    "job": "What is the job of {p}?",
    "pet": "What pet does {p} have?",
    "colour": "What colour does {p} like?",
}
ALT_WH_QUESTIONS = {
    "city": "In which city does {p} live?",
    "job": "What does {p} do for a living?",
    "pet": "Which animal does {p} own?",
    "colour": "Which colour is the favourite of {p}?",
}
YES_NO_QUESTIONS = {
    "city": "Does {p} live in {v}?",
    "job": "Is {p} a {v}?",
    "pet": "Does {p} own a {v}?",
    "colour": "Does {p} like {v}?",
}
# More phrasings of the same questions, so the fact sets hold 200+ distinct items with 16
# people (16 x 4 attributes x 4 wh-phrasings = 256; 16 x 4 x 3 yes/no questions with a true
# value = 192). The corpus's question-answer lines use them all.
WH_QUESTIONS_3 = {
    "city": "Which town is home to {p}?",
    "job": "What kind of work does {p} do?",
    "pet": "What animal does {p} keep?",
    "colour": "What is the favourite colour of {p}?",
}
WH_QUESTIONS_4 = {
    "city": "Where is the house of {p}?",
    "job": "What job does {p} have?",
    "pet": "What kind of pet does {p} have?",
    "colour": "Which colour does {p} like?",
}
YES_NO_QUESTIONS_2 = {
    "city": "Is {v} the home town of {p}?",
    "job": "Does {p} earn a living as a {v}?",
    "pet": "Is the pet of {p} a {v}?",
    "colour": "Is {v} the favourite colour of {p}?",
}
YES_NO_QUESTIONS_3 = {
    "city": "Is it true that {p} lives in {v}?",
    "job": "Is it true that {p} is a {v}?",
    "pet": "Is it true that {p} owns a {v}?",
    "colour": "Is it true that {p} likes {v}?",
}
WH_PHRASINGS = (WH_QUESTIONS, ALT_WH_QUESTIONS, WH_QUESTIONS_3, WH_QUESTIONS_4)
YES_NO_PHRASINGS = (YES_NO_QUESTIONS, YES_NO_QUESTIONS_2, YES_NO_QUESTIONS_3)


@dataclass(frozen=True)
class World:
    people: tuple[str, ...]
    facts: dict  # (person, attribute) -> value

    def value(self, person: str, attribute: str) -> str:
        return self.facts[(person, attribute)]


def make_world(seed: int, n_people: int = 40) -> World:
    """Assign every person one value per attribute, uniformly at random (seeded)."""
    if not 2 <= n_people <= len(NAMES):
        raise ValueError(f"n_people must be in 2..{len(NAMES)}")
    rng = random.Random(seed)
    people = tuple(NAMES[:n_people])
    facts = {(p, a): rng.choice(VALUES[a]) for p in people for a in ATTRIBUTES}
    return World(people=people, facts=facts)


def state(attribute: str, person: str, value: str, template: str) -> str:
    return template.format(p=person, v=value)


def other_value(rng: random.Random, attribute: str, value: str) -> str:
    return rng.choice([v for v in VALUES[attribute] if v != value])
