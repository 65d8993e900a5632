"""The tiny world is deterministic, balanced, disjoint across splits, and keeps task patterns
out of the corpus."""

from __future__ import annotations

import collections
import json

import pytest

from amuro.make_world import main as make_world_main
from amuro.tinyworld.corpus import generate_corpus
from amuro.tinyworld.datasets import (
    CHOICE_POSITIONS,
    DATASETS,
    LABEL_WORDS,
    build_dataset,
    input_key,
)
from amuro.tinyworld.world import make_world

SIZES = {"train": 300, "demo": 16, "test": 90}


def test_world_and_corpus_are_deterministic():
    assert make_world(3) == make_world(3)
    assert make_world(3) != make_world(4)
    assert generate_corpus(make_world(3), 200, 3) == generate_corpus(make_world(3), 200, 3)
    assert generate_corpus(make_world(3), 200, 3) != generate_corpus(make_world(3), 200, 4)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_datasets_are_deterministic_disjoint_and_balanced(name):
    world = make_world(1, 20)
    first = build_dataset(name, world, SIZES, seed=1)
    assert first == build_dataset(name, world, SIZES, seed=1)
    inputs = {split: {input_key(r) for r in rows} for split, rows in first.items()}
    splits = list(inputs)
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            assert not inputs[a] & inputs[b], f"{name}: {a} and {b} share inputs"
    labels = DATASETS[name][1]
    if labels:
        for split, rows in first.items():
            counts = collections.Counter(r["target"] for r in rows)
            assert set(counts) <= set(labels)
            assert max(counts.values()) - min(counts.values()) <= 1, (name, split, counts)
    if name in CHOICE_POSITIONS:  # multiple choice: the correct position is balanced
        for split, rows in first.items():
            counts = collections.Counter(r["label"] for r in rows)
            assert set(counts) == set(range(CHOICE_POSITIONS[name]))
            assert max(counts.values()) - min(counts.values()) <= 1, (name, split, counts)


def test_task_patterns_never_occur_in_the_corpus_but_facts_do():
    world = make_world(1, 20)
    text = "\n".join(generate_corpus(world, 3000, 1))
    for marker in ("### ", "Premise", "Hypothesis", "Summary", "Sentence 1", "Paraphrase"):
        assert marker not in text
    for word in LABEL_WORDS:  # label words occur in prose, so the tokenizer keeps them whole
        if word.isalpha():  # the pairwise "1"/"2" are kept whole by the tokenizer's boost
            assert f" {word}" in text
    person = world.people[0]
    assert f"{person} lives in {world.value(person, 'city')}." in text or \
        f"{person}'s home is in {world.value(person, 'city')}." in text


def test_label_words_are_single_tokens():
    from amuro.tokenizer import train_tokenizer

    world = make_world(1, 20)
    tok = train_tokenizer(generate_corpus(world, 300, 1), vocab_size=600,
                          whole_words=LABEL_WORDS)
    for word in LABEL_WORDS:
        assert len(tok(f" {word}", add_special_tokens=False)["input_ids"]) == 1, word


def test_fact_answers_come_from_the_world():
    world = make_world(1, 20)
    rows = build_dataset("tw_facts", world, SIZES, seed=1)["test"]
    values = set(world.facts.values())
    assert rows and all(r["target"] in values for r in rows)


def test_cli_writes_every_split_and_reports_short_sets(tmp_path, capsys):
    make_world_main([
        "--seed", "1", "--people", "4", "--documents", "50", "--train-size", "20",
        "--demo-size", "4", "--test-size", "70", "--datasets", "tw_nli", "tw_facts",
        "--corpus", str(tmp_path / "corpus.txt"), "--data-dir", str(tmp_path / "data"),
        "--summary", str(tmp_path / "summary.json"),
    ])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["datasets"]["tw_nli"]["test"]["n"] == 70
    assert summary["datasets"]["tw_nli"]["train"]["labels"] == {
        "entailment": 7, "neutral": 7, "contradiction": 6}
    # 4 people x 4 attributes x 4 phrasings = 64 distinct fact questions, 4 of them demos:
    # 60 test items at most, and a larger test split comes out short
    assert summary["datasets"]["tw_facts"]["test"]["n"] == 60
    assert "tw_facts/test" in capsys.readouterr().err
    assert (tmp_path / "data" / "tw_nli" / "train.jsonl").exists()
