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
| tw_instruct | instruction tuning  | TULU v2          | train only |
| tw_facts_mc | multiple choice     | ARC              | benchmark |
| tw_cloze_mc | multiple choice     | HellaSwag        | benchmark |
| tw_pairs    | pairwise ("1"/"2")  | LLMBar           | benchmark |

tw_facts and tw_truth are "learned during pre-training": their facts and question–answer lines
occur in the corpus. The SFT tasks' input/output patterns never do.

The last four serve instruction tuning (paper §3.2). tw_instruct is a small instruction mixture
in the TULU schema (`{"id", "messages": [{"role", "content"}, ...]}`) about the even-indexed
half of the people (`world.people[::2]`); the three benchmarks ask only about the other half
(`world.people[1::2]`), so they keep testing what pre-training taught rather than facts the
instruction data states. Multiple-choice records are `{"id", "fields": {"question", "choices"},
"target": correct choice, "label": its index}` (the index cycles, so every position is correct
equally often); tw_pairs records are `{"id", "fields": {"instruction", "output_1", "output_2"},
"target": "1" | "2"}`, balanced.
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
    WH_PHRASINGS,
    WH_QUESTIONS,
    YES_NO_PHRASINGS,
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

# A maker draws one record: (fields, target), or the record's body as a dict (the MC and chat
# shapes). Its third argument is the label (or correct-choice position) to produce, if any.
Maker = Callable[[random.Random, World, str | int | None], tuple[dict, str] | dict]


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
    # Four sentences (≈ 80 tokens) so a 4-shot prompt fits the tiny model's 512 positions in
    # every format: with a fifth, every 4-shot prompt was cut and lost the shared-prefix cache.
    e = random_event(rng, world)
    bystander = rng.choice([q for q in world.people if q not in (e.actor, e.other)])
    sents = [
        f"It was a {rng.choice(WEATHER)} morning and the streets of {e.place} were quiet.",
        f"Meanwhile {bystander} was busy at work as a {world.value(bystander, 'job')}.",
        event_sentence(e),
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
# The premise states a fact; an entailed hypothesis restates it in other words, a contradiction
# keeps the premise's words and changes the value, a neutral one is about another attribute.
# Measured on 1,200-step series (4-layer, 2-head): with contradictions reworded too, fine-tuning
# reached 0.44-0.55 (4-shot, steps 800-1200) and confused every label; keeping their wording
# lifted it to 0.62-0.71 with the same settings.
def _nli_pair(rng, world, label, templates):
    p, a = rng.choice(world.people), rng.choice(ATTRIBUTES)
    v = world.value(p, a)
    t_premise = rng.choice(templates[a])
    premise = t_premise.format(p=p, v=v)
    if label == "entailment":
        hypothesis = rng.choice([t for t in templates[a] if t != t_premise]).format(p=p, v=v)
    elif label == "contradiction":
        hypothesis = t_premise.format(p=p, v=other_value(rng, a, v))
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
# Every form names the doer first, the other person next, and rewords only the rest: a
# paraphrase keeps who did what to whom, a word swap (the two people exchanged) keeps every
# word but changes the meaning (PAWS's word-scrambling pairs, e.g. "flights from A to B" /
# "from B to A"). Measured on a 4-layer, 2-head series: with a fronted place ("In Rome, A
# helped B") or a passive ("B was helped by A") in the mix, fine-tuning learned the task from
# some checkpoints and stayed at chance from others (0.53-0.99 at step 800 across two
# pre-training runs), so the forms were kept to this order.
_RELATION_TEMPLATES = [
    "{a} {verb} {b} in {place}.",
    "{a} {verb} {b} while in {place}.",
    "{a} {verb} {b}, there in {place}.",
]


def paws(rng, world, label):
    """Two phrasings (always different templates) of one event: the same roles ("yes") or the
    roles swapped ("no": the same words in another order, PAWS's word-scrambling pairs)."""
    a, b = rng.sample(world.people, 2)
    verb, place = rng.choice(RELATIONS), rng.choice(VALUES["city"])
    t1, t2 = rng.sample(_RELATION_TEMPLATES, 2)
    s1 = t1.format(a=a, b=b, verb=verb, place=place)
    if label == "yes":
        s2 = t2.format(a=a, b=b, verb=verb, place=place)
    else:
        s2 = t2.format(a=b, b=a, verb=verb, place=place)
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
    phrasing = rng.choice(WH_PHRASINGS)
    return {"question": phrasing[a].format(p=p)}, world.value(p, a)


def truth(rng, world, label):
    p, a = rng.choice(world.people), rng.choice(ATTRIBUTES)
    v = world.value(p, a)
    asked = v if label == "yes" else other_value(rng, a, v)
    return {"question": rng.choice(YES_NO_PHRASINGS)[a].format(p=p, v=asked)}, label


# --- instruction tuning and its benchmarks (paper §3.2) -------------------------------------
def instruction_people(world: World) -> tuple[str, ...]:
    """The people tw_instruct talks about; the benchmarks use the others."""
    return world.people[::2]


def benchmark_people(world: World) -> tuple[str, ...]:
    return world.people[1::2]


def _half(world: World, people: tuple[str, ...]) -> World:
    return World(people=people, facts=world.facts)


# Requests about one attribute, phrased as instructions (not the corpus's question lines).
ASK = {
    "city": ["Tell me where {p} lives.", "Which city is {p}'s home?", "Where is {p}'s home?"],
    "job": ["Tell me the job of {p}.", "What is {p}'s job?", "What work does {p} do?"],
    "pet": ["Tell me which pet {p} has.", "What is {p}'s pet?", "Which animal lives with {p}?"],
    "colour": ["Tell me {p}'s favourite colour.", "What is {p}'s favourite colour?",
               "Which colour does {p} love?"],
}
IS_IT = {  # yes/no checks, "Is Bob's pet a cat?"
    "city": "Is {p}'s home in {v}?",
    "job": "Does {p} work as a {v}?",
    "pet": "Is {p}'s pet a {v}?",
    "colour": "Is {p}'s favourite colour {v}?",
}
ONE_WORD = ["Answer in one word: {q}", "Reply with a single word. {q}"]
FOLLOW_UPS = {"city": "And where does {p} live?", "job": "And what is {p}'s job?",
              "pet": "And what pet does {p} have?", "colour": "And which colour does {p} like?"}
SYSTEM_PROMPTS = ["You are a helpful assistant.", "Answer briefly and truthfully.",
                  "You know the people of a small town well."]


def _fact(rng: random.Random, world: World, p: str, a: str) -> str:
    return rng.choice(FACT_TEMPLATES[a]).format(p=p, v=world.value(p, a))


def _it_ask(rng, world, p, a):
    return [(rng.choice(ASK[a]).format(p=p), _fact(rng, world, p, a))]


def _it_yes_no(rng, world, p, a):
    v = world.value(p, a)
    asked = v if rng.random() < 0.5 else other_value(rng, a, v)
    answer = "Yes" if asked == v else "No"
    return [(IS_IT[a].format(p=p, v=asked), f"{answer}. {_fact(rng, world, p, a)}")]


def _it_one_word(rng, world, p, a):
    question = rng.choice(ASK[a]).format(p=p)
    return [(rng.choice(ONE_WORD).format(q=question), world.value(p, a))]


def _it_summarize(rng, world, p, a):
    e = random_event(rng, world)
    sents = _details(rng, world, e)
    sents.insert(rng.randint(0, 2), event_sentence(e))
    lead = rng.choice(["Summarize in one sentence:", "Summarize:", "Give a one-sentence summary."])
    return [(f"{lead}\n{' '.join(sents)}", event_summary(e))]


def _it_rewrite(rng, world, p, a):
    v = world.value(p, a)
    source, target = rng.sample(FACT_TEMPLATES[a], 2)
    lead = rng.choice(["Rewrite in other words:", "Say this differently:"])
    return [(f"{lead} {source.format(p=p, v=v)}", target.format(p=p, v=v))]


def _it_profile(rng, world, p, a):
    v = {b: world.value(p, b) for b in ATTRIBUTES}
    answer = (f"{p} lives in {v['city']}, works as a {v['job']}, has a pet {v['pet']} "
              f"and likes the colour {v['colour']}.")
    return [(rng.choice(["List what you know about {p}.", "Describe {p} in one sentence."])
             .format(p=p), answer)]


def _it_two_turns(rng, world, p, a):
    first = _it_ask(rng, world, p, a)
    if rng.random() < 0.5:  # a follow-up on another attribute of the same person
        b = rng.choice([x for x in ATTRIBUTES if x != a])
        return first + [(FOLLOW_UPS[b].format(p=p), _fact(rng, world, p, b))]
    return first + [(rng.choice(["Now say it in one word.", "Shorter, please: one word."]),
                     world.value(p, a))]


_INSTRUCTION_KINDS = [
    (_it_ask, 0.15), (_it_yes_no, 0.2), (_it_one_word, 0.1), (_it_summarize, 0.2),
    (_it_rewrite, 0.1), (_it_profile, 0.05), (_it_two_turns, 0.2),
]


def instruct(rng, world, label=None):
    """One conversation of the instruction mixture, about instruction_people only."""
    half = _half(world, instruction_people(world))
    kinds = [(k, w) for k, w in _INSTRUCTION_KINDS
             if k is not _it_summarize or len(half.people) >= 2]  # events need two people
    kind = rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
    p, a = rng.choice(half.people), rng.choice(ATTRIBUTES)
    messages = []
    if rng.random() < 0.2:
        messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
    for user, assistant in kind(rng, half, p, a):
        messages += [{"role": "user", "content": user},
                     {"role": "assistant", "content": assistant}]
    return {"messages": messages}


def _choices(rng, label: int, correct: str, pool: list[str]) -> list[str]:
    """Three distractors from the pool, in seeded order, with the correct one at `label`."""
    choices = rng.sample([x for x in pool if x != correct], 3)
    choices.insert(label, correct)
    return choices


# ARC-like phrasings besides the corpus's four: 8 x 4 questions per benchmark person, so the
# set holds 200+ distinct items with 8 benchmark people.
MC_PHRASINGS = (
    {"city": "Which city is the home of {p}?", "job": "Which job does {p} have?",
     "pet": "Which animal is the pet of {p}?", "colour": "Which colour does {p} like best?"},
    {"city": "In what city is the home of {p}?", "job": "Which trade does {p} work in?",
     "pet": "Which animal does {p} look after?", "colour": "Which colour is loved by {p}?"},
    {"city": "Name the city where {p} lives.", "job": "Name the job of {p}.",
     "pet": "Name the pet of {p}.", "colour": "Name the favourite colour of {p}."},
    {"city": "{p} lives in which city?", "job": "{p} works as what?",
     "pet": "{p} owns which animal?", "colour": "{p} likes which colour?"},
)


def facts_mc(rng, world, label):
    p, a = rng.choice(benchmark_people(world)), rng.choice(ATTRIBUTES)
    phrasing = rng.choice(WH_PHRASINGS + MC_PHRASINGS)
    v = world.value(p, a)
    choices = _choices(rng, label, v, VALUES[a])
    return {"fields": {"question": phrasing[a].format(p=p), "choices": choices},
            "target": v, "label": label}


def _cloze_templates() -> dict[str, list[str]]:
    """Corpus sentences cut before the value: the context ends where the ending begins."""
    story = {
        "city": ["Later, {p} went home to {v}.", "{p} travelled from {v} to {dest}."],
        "job": ["It was a {weather} {day}. {p} the {v} woke up early."],
        "pet": ["In the evening, {p} fed the {v}."],
        "colour": [],
    }
    return {a: FACT_TEMPLATES[a] + story[a] for a in ATTRIBUTES}


CLOZE_TEMPLATES = _cloze_templates()


def cloze_mc(rng, world, label):
    p, a = rng.choice(benchmark_people(world)), rng.choice(ATTRIBUTES)
    template, v = rng.choice(CLOZE_TEMPLATES[a]), world.value(p, a)
    head, tail = template.split("{v}")
    fill = {"p": p, "weather": rng.choice(WEATHER), "day": rng.choice(DAYS),
            "dest": rng.choice([c for c in VALUES["city"] if c != v])}
    context = head.format(**fill).strip()
    # "travelled from X to <dest>": no ending may start from the destination itself
    pool = [x for x in VALUES[a] if not ("{dest}" in tail and x == fill["dest"])]
    values = _choices(rng, label, v, pool)
    endings = [(x + tail).format(**fill) for x in values]
    return {"fields": {"question": context, "choices": endings}, "target": endings[label],
            "label": label}


def pairs(rng, world, label):
    """An instruction and two outputs: the one at position `label` follows it correctly."""
    p, a = rng.choice(benchmark_people(world)), rng.choice(ATTRIBUTES)
    v = world.value(p, a)
    kind = rng.choice(["wrong_fact", "off_topic", "one_word", "yes_no"])
    if kind in ("wrong_fact", "off_topic"):
        instruction = rng.choice(ASK[a]).format(p=p)
        template = rng.choice(FACT_TEMPLATES[a])
        good = template.format(p=p, v=v)
        if kind == "wrong_fact":
            bad = template.format(p=p, v=other_value(rng, a, v))
        else:  # true, but about something else
            bad = _fact(rng, world, p, rng.choice([x for x in ATTRIBUTES if x != a]))
    elif kind == "one_word":
        instruction = rng.choice(ONE_WORD).format(q=rng.choice(ASK[a]).format(p=p))
        good, bad = v, _fact(rng, world, p, a)  # the bad one is right but ignores the format
    else:
        asked = v if rng.random() < 0.5 else other_value(rng, a, v)
        instruction = "Answer yes or no. " + IS_IT[a].format(p=p, v=asked)
        good, bad = ("yes", "no") if asked == v else ("no", "yes")
    first, second = (good, bad) if label == "1" else (bad, good)
    return {"instruction": instruction, "output_1": first, "output_2": second}, label


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
    "tw_instruct": (instruct, None, ("train",)),
    "tw_facts_mc": (facts_mc, None, ("demo", "test")),
    "tw_cloze_mc": (cloze_mc, None, ("demo", "test")),
    "tw_pairs": (pairs, ("1", "2"), ("demo", "test")),
}
# Multiple-choice sets: how many choices; the correct position cycles like a label does.
CHOICE_POSITIONS = {"tw_facts_mc": 4, "tw_cloze_mc": 4}

# Labels every classification dataset uses, so the tokenizer keeps each one a single token.
LABEL_WORDS = sorted({w for _, labels, _ in DATASETS.values() for w in labels or ()})

_MAX_TRIES_PER_RECORD = 50
# Fields that are answers, not input: two records that differ only in them share an input.
_ANSWER_FIELDS = ("choices", "output_1", "output_2")


def input_key(body: dict) -> str:
    """What makes two records the same input: the prompt messages, or the input fields."""
    if "messages" in body:
        return json.dumps([m for m in body["messages"] if m["role"] != "assistant"],
                          sort_keys=True)
    fields = {k: v for k, v in body["fields"].items() if k not in _ANSWER_FIELDS}
    return json.dumps(fields, sort_keys=True)


def build_dataset(name: str, world: World, sizes: dict[str, int], seed: int) -> dict:
    """Splits of one dataset, disjoint by input: demo first, then test, then train.

    Classification labels (and the correct position of multiple-choice records) cycle, so
    every split is balanced to within one example. When the
    world has fewer distinct inputs than asked for (fact questions: 40 people × 4 attributes),
    a split comes out smaller; the caller reports the counts.
    """
    maker, labels, splits = DATASETS[name]
    cycle = labels or tuple(range(CHOICE_POSITIONS.get(name, 0))) or None
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
            label = cycle[len(rows) % len(cycle)] if cycle else None
            made = maker(rng, world, label)
            body = made if isinstance(made, dict) else {"fields": made[0], "target": made[1]}
            key = input_key(body)
            if key in seen:
                misses += 1
                continue
            seen.add(key)
            rows.append({"id": f"{name}-{split}-{len(rows):05d}", **body})
        rng.shuffle(rows)
        out[split] = rows
    return out


__all__ = ["CHOICE_POSITIONS", "DATASETS", "LABEL_WORDS", "MOODS", "benchmark_people",
           "build_dataset", "input_key", "instruction_people"]
