"""Ephemeral events (trips, gifts, visits) used by stories, summaries and question generation."""

from __future__ import annotations

import random
from dataclasses import dataclass

from amuro.tinyworld.world import VALUES, World

DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
OBJECTS = "book lamp hat kite cup clock bag map ring scarf".split()
MOODS = "sad tired bored lonely ill".split()
WEATHER = "rainy sunny windy cold warm foggy".split()
# Asymmetric relations (who did what to whom matters): the PAWS-style word-swap pairs use them.
RELATIONS = "taught helped called visited thanked followed painted warned".split()


@dataclass(frozen=True)
class Event:
    kind: str  # "trip" | "gift" | "relation"
    actor: str
    other: str  # second person (gift receiver, relation object); "" for trips
    origin: str
    place: str
    thing: str  # object of a gift; "" otherwise
    day: str
    mood: str  # why a gift was given
    verb: str  # relation verb


def random_event(rng: random.Random, world: World, kind: str | None = None) -> Event:
    kind = kind or rng.choice(["trip", "gift", "relation"])
    actor, other = rng.sample(world.people, 2)
    origin = world.value(actor, "city")
    place = rng.choice([c for c in VALUES["city"] if c != origin])
    return Event(
        kind=kind,
        actor=actor,
        other=other if kind != "trip" else "",
        origin=origin,
        place=place,
        thing=rng.choice(OBJECTS) if kind == "gift" else "",
        day=rng.choice(DAYS),
        mood=rng.choice(MOODS),
        verb=rng.choice(RELATIONS),
    )


def event_sentence(e: Event) -> str:
    """The canonical one-sentence statement of an event (used as the summary target)."""
    if e.kind == "trip":
        return f"{e.actor} travelled from {e.origin} to {e.place}."
    if e.kind == "gift":
        return f"{e.actor} gave {e.other} a {e.thing} in {e.place}."
    return f"{e.actor} {e.verb} {e.other} in {e.place}."


def event_summary(e: Event) -> str:
    if e.kind == "trip":
        return f"{e.actor} travelled to {e.place}."
    if e.kind == "gift":
        return f"{e.actor} gave a {e.thing} to {e.other}."
    return f"{e.actor} {e.verb} {e.other}."
