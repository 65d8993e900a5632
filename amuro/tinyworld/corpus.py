"""The pre-training corpus: varied prose about the world's facts and events.

A mix of document kinds (biographies, question–answer lines, stories, descriptions of places
and things, miscellany) — a corpus of one template kind made pre-training loss plateau before
facts were learned. No document uses the task formats ("### Premise:", "Summary", sentence
pairs), and label words occur only in ordinary prose so the tokenizer keeps them whole.
"""

from __future__ import annotations

import random

from amuro.tinyworld.events import WEATHER, event_sentence, random_event
from amuro.tinyworld.world import (
    ATTRIBUTES,
    FACT_TEMPLATES,
    WH_PHRASINGS,
    YES_NO_PHRASINGS,
    World,
    other_value,
)

SCIENCE = [
    "Iron is a metal that rusts in wet air.",
    "Copper is a metal that carries electricity.",
    "Ice is water that has frozen.",
    "Steam is water that has boiled.",
    "Salt is a mineral that melts ice.",
    "Oak is a tree that drops acorns.",
    "Bees are insects that make honey.",
    "Owls are birds that hunt at night.",
    "Glass is a material that lets light through.",
    "Rubber is a material that stretches.",
    "Plants are living things that need sunlight.",
    "The moon is a rock that circles the earth.",
]

MISC = [
    "The judge stayed neutral during the long debate.",
    "Her story held a contradiction that nobody noticed.",
    "Old books on logic discuss entailment and proof.",
    "The referee tried to remain neutral.",
    "There is no contradiction between being kind and being firm.",
    "Some people say yes to every plan and others say no.",
    "The teacher explained entailment with a simple drawing.",
    "When asked, the child said yes.",
    "The shop was closed, so the answer was no.",
]

CITY_WORDS = {
    "Paris": "bridges", "Rome": "fountains", "Oslo": "fjords", "Lima": "markets",
    "Cairo": "old towers", "Tokyo": "trains", "Delhi": "gardens", "Quito": "hills",
    "Dakar": "beaches", "Perth": "parks",
}


def _biography(rng: random.Random, world: World) -> str:
    p = rng.choice(world.people)
    attrs = rng.sample(ATTRIBUTES, rng.randint(2, 4))
    return " ".join(
        rng.choice(FACT_TEMPLATES[a]).format(p=p, v=world.value(p, a)) for a in attrs
    )


def _qa_lines(rng: random.Random, world: World) -> str:
    lines = []
    for _ in range(rng.randint(3, 6)):
        p, a = rng.choice(world.people), rng.choice(ATTRIBUTES)
        v = world.value(p, a)
        if rng.random() < 0.5:
            phrasing = rng.choice(WH_PHRASINGS)
            lines.append(f"Question: {phrasing[a].format(p=p)}\nAnswer: {v}.")
        else:
            truth = rng.random() < 0.5
            asked = v if truth else other_value(rng, a, v)
            question = rng.choice(YES_NO_PHRASINGS)[a].format(p=p, v=asked)
            lines.append(f"Question: {question}\nAnswer: {'yes' if truth else 'no'}.")
    return "\n".join(lines)


def _story(rng: random.Random, world: World) -> str:
    e = random_event(rng, world)
    job = world.value(e.actor, "job")
    opening = rng.choice(
        [
            f"It was a {rng.choice(WEATHER)} {e.day}.",
            f"On {e.day}, the weather was {rng.choice(WEATHER)}.",
        ]
    )
    intro = f"{e.actor} the {job} woke up early."
    closing = rng.choice(
        [
            f"Later, {e.actor} went home to {e.origin}.",
            f"{e.actor} was happy that day.",
            f"In the evening, {e.actor} fed the {world.value(e.actor, 'pet')}.",
        ]
    )
    return " ".join([opening, intro, event_sentence(e), closing])


def _place(rng: random.Random, world: World) -> str:
    city = rng.choice(list(CITY_WORDS))
    residents = [p for p in world.people if world.value(p, "city") == city]
    text = f"{city} is a city known for its {CITY_WORDS[city]}."
    if residents:
        text += f" {rng.choice(residents)} lives there."
    return text


def _science(rng: random.Random, world: World) -> str:
    return " ".join(rng.sample(SCIENCE, 3))


def _misc(rng: random.Random, world: World) -> str:
    return " ".join(rng.sample(MISC, 2))


DOCUMENT_KINDS = [
    (_biography, 0.32),
    (_qa_lines, 0.26),
    (_story, 0.20),
    (_place, 0.08),
    (_science, 0.08),
    (_misc, 0.06),
]


def generate_corpus(world: World, n_documents: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    makers = [m for m, _ in DOCUMENT_KINDS]
    weights = [w for _, w in DOCUMENT_KINDS]
    return [rng.choices(makers, weights)[0](rng, world) for _ in range(n_documents)]
