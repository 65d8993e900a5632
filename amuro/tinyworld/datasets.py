"""The tiny world's task datasets, mirroring each of the paper's task types.

| dataset     | task                | mirrors          | role |
|-------------|---------------------|------------------|------|
| tw_news     | summarization       | XSum             | ID   |
| tw_stories  | summarization       | CNN/DailyMail    | OOD  |
| tw_social   | question_generation | SocialIQa        | ID   |
| tw_science  | question_generation | SciQ             | OOD  |
| tw_nli      | nli (3 labels)      | MNLI             | ID   |
| tw_nli2     | nli (2 labels)      | RTE              | OOD  |
| tw_paws     | paraphrase          | PAWS (word swap) | ID   |
| tw_qqp      | paraphrase          | QQP              | OOD  |
| tw_facts    | fact_qa             | SciQ/ARC-like    | ID   |
| tw_truth    | fact_check          | BoolQ-like       | ID   |

The last two are "learned during pre-training": their facts and question–answer lines occur in
the corpus. The others' input/output patterns never do.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

from amuro.tinyworld.events import (
    DAYS,
    MOODS,
    OBJECTS,
    RELATIONS,
    WEATHER,
    Event,
    event_sentence,
    event_summary,
    random_event,
)
from amuro.tinyworld.world import (
    ALT_FACT_TEMPLATES,
    ALT_WH_QUESTIONS,
    ATTRIBUTES,
    FACT_TEMPLATES,
    VALUES,
    WH_QUESTIONS,
    YES_NO_QUESTIONS,
    World,
    other_value,
)

NLI_LABELS = ("entailment", "neutral", "contradiction")
YES_NO = ("yes", "no")
BASE_VERB = {
    "taught": "teach", "helped": "help", "called": "call", "visited": "visit",
    "thanked": "thank", "followed": "follow", "painted": "paint", "warned": "warn",
}
assert set(BASE_VERB) == set(RELATIONS)

Maker = Callable[[random.Random, World, str | None], tuple[dict, str]]


# --- summarization -------------------------------------------------------------------------
def _details(rng: random.Random, world: World, e: Event) -> list[str]:
    p = e.actor
    pool = [
        f"{p} is a {world.value(p, 'job')} from {e.origin}.",
        f"The weather was {rng.choice(WEATHER)}.",
        f"{p} brought the {world.value(p, 'pet')} along.",
        f"{p} wore a {world.value(p, 'colour')} coat.",
    ]
    return rng.sample(pool, 2)


def news(rng, world, label=None):
    e = random_event(rng, world)
    sents = _details(rng, world, e)
    sents.insert(rng.randint(0, 1), event_sentence(e))
    return {"passage": f"News from {e.place} on {e.day}: " + " ".join(sents)}, event_summary(e)


def stories(rng, world, label=None):
    e = random_event(rng, world)
    bystander = rng.choice([q for q in world.people if q not in (e.actor, e.other)])
    sents = [
        f"It was a {rng.choice(WEATHER)} morning and the streets of {e.place} were quiet.",
        f"Meanwhile {bystander} was busy at work as a {world.value(bystander, 'job')}.",
        event_sentence(e),
        f"People who saw it talked about it until {rng.choice(DAYS)}.",
        f"{e.actor} later said that the {world.value(e.actor, 'pet')} had been restless.",
    ]
    return {"passage": " ".join(sents)}, event_summary(e)


# --- question generation -------------------------------------------------------------------
def social(rng, world, label=None):
    e = random_event(rng, world)
    a, b, where = e.actor, e.other, e.place
    if e.kind == "gift":
        context = f"{a} gave {b} a {e.thing} in {where} because {b} was {e.mood}."
        qa = [
            (b, f"Who did {a} give a {e.thing} to?"),
            (f"a {e.thing}", f"What did {a} give {b}?"),
            (where, f"Where did {a} give {b} a {e.thing}?"),
            (f"because {b} was {e.mood}", f"Why did {a} give {b} a {e.thing}?"),
        ]
    elif e.kind == "relation":
        verb = BASE_VERB[e.verb]
        context = f"{a} {e.verb} {b} in {where} on {e.day}."
        qa = [
            (b, f"Who did {a} {verb}?"),
            (a, f"Who {e.verb} {b}?"),
            (where, f"Where did {a} {verb} {b}?"),
            (e.day, f"When did {a} {verb} {b}?"),
        ]
    else:
        context = f"{a} travelled from {e.origin} to {where} on {e.day}."
        qa = [
            (where, f"Where did {a} travel to?"),
            (e.origin, f"Where did {a} travel from?"),
            (e.day, f"When did {a} travel to {where}?"),
        ]
    answer, question = rng.choice(qa)
    return {"context": context, "answer": answer}, question


MATERIALS = "wood glass iron copper rubber paper stone wool".split()
FURNITURE = "table shelf desk chair bed".split()


def science(rng, world, label=None):
    thing, colour = rng.choice(OBJECTS), rng.choice(VALUES["colour"])
    material, spot = rng.choice(MATERIALS), rng.choice(FURNITURE)
    context = f"The {colour} {thing} on the {spot} is made of {material}."
    answer, question = rng.choice(
        [
            (material, f"What is the {thing} made of?"),
            (colour, f"What colour is the {thing}?"),
            (f"on the {spot}", f"Where is the {thing}?"),
        ]
    )
    return {"context": context, "answer": answer}, question


# --- NLI -----------------------------------------------------------------------------------
def _nli_pair(rng, world, label, templates):
    p, a = rng.choice(world.people), rng.choice(ATTRIBUTES)
    v = world.value(p, a)
    t_premise, t_other = rng.sample(templates[a], 2)
    premise = t_premise.format(p=p, v=v)
    if label == "entailment":
        hypothesis = t_other.format(p=p, v=v)
    elif label == "contradiction":
        hypothesis = t_other.format(p=p, v=other_value(rng, a, v))
    else:  # neutral: an attribute the premise does not mention
        b = rng.choice([x for x in ATTRIBUTES if x != a])
        hypothesis = rng.choice(templates[b]).format(p=p, v=rng.choice(VALUES[b]))
    return {"premise": premise, "hypothesis": hypothesis}, label


def nli(rng, world, label):
    return _nli_pair(rng, world, label, FACT_TEMPLATES)


def nli2(rng, world, label):
    # Two labels as RTE: "not entailment" is written "neutral" and is half contradictions.
    inner = label if label == "entailment" else rng.choice(["neutral", "contradiction"])
    fields, _ = _nli_pair(rng, world, inner, ALT_FACT_TEMPLATES)
    return fields, label


# --- paraphrase ----------------------------------------------------------------------------
_RELATION_TEMPLATES = [
    "{a} {verb} {b} in {place}.",
    "In {place}, {a} {verb} {b}.",
    "{b} was {verb} by {a} in {place}.",
]


def paws(rng, world, label):
    a, b = rng.sample(world.people, 2)
    verb, place = rng.choice(RELATIONS), rng.choice(VALUES["city"])
    t1, t2 = rng.choice(_RELATION_TEMPLATES), rng.choice(_RELATION_TEMPLATES)
    s1 = t1.format(a=a, b=b, verb=verb, place=place)
    if label == "yes":
        t2 = rng.choice([t for t in _RELATION_TEMPLATES if t != t1])
        s2 = t2.format(a=a, b=b, verb=verb, place=place)
    elif rng.random() < 0.7:  # word swap: same words, roles exchanged (PAWS's adversarial pairs)
        s2 = t2.format(a=b, b=a, verb=verb, place=place)
    else:
        s2 = t2.format(a=a, b=b, verb=verb, place=other_value(rng, "city", place))
    return {"sentence1": s1, "sentence2": s2}, label


def qqp(rng, world, label):
    p, a = rng.choice(world.people), rng.choice(ATTRIBUTES)
    phrasings = [WH_QUESTIONS, ALT_WH_QUESTIONS]
    rng.shuffle(phrasings)
    q1 = phrasings[0][a].format(p=p)
    if label == "yes":
        q2 = phrasings[1][a].format(p=p)
    elif rng.random() < 0.5:
        q2 = rng.choice(phrasings)[a].format(p=rng.choice([x for x in world.people if x != p]))
    else:
        b = rng.choice([x for x in ATTRIBUTES if x != a])
        q2 = rng.choice(phrasings)[b].format(p=p)
    return {"sentence1": q1, "sentence2": q2}, label


# --- learned in pre-training ---------------------------------------------------------------
def facts(rng, world, label=None):
    p, a = rng.choice(world.people), rng.choice(ATTRIBUTES)
    phrasing = rng.choice([WH_QUESTIONS, ALT_WH_QUESTIONS])
    return {"question": phrasing[a].format(p=p)}, world.value(p, a)


def truth(rng, world, label):
    p, a = rng.choice(world.people), rng.choice(ATTRIBUTES)
    v = world.value(p, a)
    asked = v if label == "yes" else other_value(rng, a, v)
    return {"question": YES_NO_QUESTIONS[a].format(p=p, v=asked)}, label


# name -> (maker, label words or None for generation, splits that exist)
DATASETS: dict[str, tuple[Maker, tuple[str, ...] | None, tuple[str, ...]]] = {
    "tw_news": (news, None, ("train", "demo", "test")),
    "tw_stories": (stories, None, ("demo", "test")),
    "tw_social": (social, None, ("train", "demo", "test")),
    "tw_science": (science, None, ("demo", "test")),
    "tw_nli": (nli, NLI_LABELS, ("train", "demo", "test")),
    "tw_nli2": (nli2, ("entailment", "neutral"), ("demo", "test")),
    "tw_paws": (paws, YES_NO, ("train", "demo", "test")),
    "tw_qqp": (qqp, YES_NO, ("demo", "test")),
    "tw_facts": (facts, None, ("demo", "test")),
    "tw_truth": (truth, YES_NO, ("demo", "test")),
}

# Labels every classification dataset uses, so the tokenizer keeps each one a single token.
LABEL_WORDS = sorted({w for _, labels, _ in DATASETS.values() for w in labels or ()})

_MAX_TRIES_PER_RECORD = 50


def build_dataset(name: str, world: World, sizes: dict[str, int], seed: int) -> dict:
    """Splits of one dataset, disjoint by input: demo first, then test, then train.

    Classification labels cycle, so every split is balanced to within one example. When the
    world has fewer distinct inputs than asked for (fact questions: 40 people × 4 attributes),
    a split comes out smaller; the caller reports the counts.
    """
    maker, labels, splits = DATASETS[name]
    rng = random.Random(f"{seed}:{name}")
    seen: set[str] = set()
    out: dict[str, list[dict]] = {}
    for split in ("demo", "test", "train"):
        if split not in splits:
            continue
        rows: list[dict] = []
        want = sizes.get(split, 0)
        misses = 0
        while len(rows) < want and misses < _MAX_TRIES_PER_RECORD * max(want, 1):
            label = labels[len(rows) % len(labels)] if labels else None
            fields, target = maker(rng, world, label)
            key = json.dumps(fields, sort_keys=True)
            if key in seen:
                misses += 1
                continue
            seen.add(key)
            rows.append({"id": f"{name}-{split}-{len(rows):05d}", "fields": fields,
                         "target": target})
        rng.shuffle(rows)
        out[split] = rows
    return out


__all__ = ["DATASETS", "LABEL_WORDS", "MOODS", "build_dataset"]
