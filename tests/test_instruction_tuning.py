"""Instruction tuning (task type "chat"): loss only on assistant turns, the chat template saved
with the model, one-line errors for bad conversations; and the tiny world's instruction mixture
and benchmarks (tw_instruct, tw_facts_mc, tw_cloze_mc, tw_pairs)."""

from __future__ import annotations

import collections
import json
import re

import pytest

from amuro.chat import IGNORE, TULU_CHAT_TEMPLATE, chat_tokenizer, check_chat_records, encode_chat
from amuro.errors import AmuroError
from amuro.finetune import CHAT_DEFAULTS, DEFAULTS, check_settings
from amuro.finetune import main as finetune_main
from amuro.make_world import main as make_world_main
from amuro.modeling import load_tokenizer
from amuro.tinyworld.datasets import (
    DATASETS,
    benchmark_people,
    build_dataset,
    input_key,
    instruction_people,
)
from amuro.tinyworld.world import NAMES, VALUES, make_world

CHAT_TASK = {"name": "instruct", "type": "chat", "template": "chat"}
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Is the sky blue?"},
    {"role": "assistant", "content": "yes"},
    {"role": "user", "content": "Does the cat sit on the mat?"},
    {"role": "assistant", "content": "The cat sat on the mat."},
]


@pytest.fixture
def tulu_tokenizer(tiny_checkpoint):
    return chat_tokenizer(load_tokenizer(tiny_checkpoint), "tulu", str(tiny_checkpoint))


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


# --- chat encoding ---------------------------------------------------------------------------
def test_tulu_template_renders_open_instructs_format(tulu_tokenizer):
    text = tulu_tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    eos = tulu_tokenizer.eos_token
    assert text == ("<|system|>\nBe brief.\n<|user|>\nIs the sky blue?\n<|assistant|>\n"
                    f"yes{eos}\n<|user|>\nDoes the cat sit on the mat?\n<|assistant|>\n"
                    f"The cat sat on the mat.{eos}")
    prompt = tulu_tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False,
                                                add_generation_prompt=True)
    assert prompt.endswith("<|user|>\nIs the sky blue?\n<|assistant|>\n")


def test_labels_are_the_assistant_turns_and_eos_only(tulu_tokenizer):
    tok = tulu_tokenizer
    (ids, labels), = encode_chat([{"messages": CONVERSATION}], tok, 1000)[0]
    eos = tok.eos_token_id
    assert len(ids) == len(labels)
    learned = [lab for lab in labels if lab != IGNORE]
    assert learned == _ids(tok, "yes") + [eos] + _ids(tok, "The cat sat on the mat.") + [eos]
    assert all(lab in (IGNORE, i) for i, lab in zip(ids, labels, strict=True))
    # Everything masked is the system and user turns and the role markers.
    masked = tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab == IGNORE])
    assert masked == ("<|system|>\nBe brief.\n<|user|>\nIs the sky blue?\n<|assistant|>\n"
                      "\n<|user|>\nDoes the cat sit on the mat?\n<|assistant|>\n")
    assert tok.decode(ids) == tok.apply_chat_template(CONVERSATION, tokenize=False)


def test_tokens_after_the_last_assistant_turn_are_dropped(tulu_tokenizer):
    tok = tulu_tokenizer
    trailing = [*CONVERSATION[1:3], {"role": "user", "content": "Thanks."}]
    (ids, labels), = encode_chat([{"messages": trailing}], tok, 1000)[0]
    assert ids[-1] == tok.eos_token_id and labels[-1] == tok.eos_token_id
    assert "Thanks" not in tok.decode(ids)


def test_long_conversations_lose_their_left_part_but_keep_the_last_answer(tulu_tokenizer):
    tok = tulu_tokenizer
    last = _ids(tok, "The cat sat on the mat.") + [tok.eos_token_id]
    full = encode_chat([{"messages": CONVERSATION}], tok, 1000)[0][0]
    examples, n_truncated = encode_chat([{"messages": CONVERSATION}] * 2, tok, len(last) + 3)
    assert n_truncated == 2
    ids, labels = examples[0]
    assert len(ids) == len(last) + 3
    assert ids == full[0][-len(ids):]  # cut from the left
    assert [lab for lab in labels if lab != IGNORE] == last
    # A last turn longer than max_length keeps its beginning.
    (ids, labels), = encode_chat([{"messages": CONVERSATION}], tok, 4)[0]
    assert ids == labels == last[:4]


def test_tokenizer_template_is_used_and_required(tiny_checkpoint):
    tok = load_tokenizer(tiny_checkpoint)
    with pytest.raises(AmuroError, match="has no chat template; use 'tulu'") as err:
        chat_tokenizer(tok, "tokenizer", "ckpt")
    assert "\n" not in str(err.value)
    tok.chat_template = (
        "{% for m in messages %}{{ '[' + m['role'] + '] ' + m['content'] + ' [end]\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '[assistant] ' }}{% endif %}")
    chat_tokenizer(tok, "tokenizer", "ckpt")
    (ids, labels), = encode_chat([{"messages": CONVERSATION[1:3]}], tok, 1000)[0]
    # The turn as the template writes it, end marker included; " yes" merges across the
    # prompt's trailing space and is learned whole.
    assert tok.decode([lab for lab in labels if lab != IGNORE]) == " yes [end]\n"
    assert tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab == IGNORE]) == \
        "[user] Is the sky blue? [end]\n[assistant]"
    # A template that renders a prefix differently cannot locate assistant turns.
    tok.chat_template = "{% for m in messages|reverse %}{{ m['content'] + '\n' }}{% endfor %}"
    with pytest.raises(AmuroError, match="differently from its prefixes"):
        encode_chat([{"messages": CONVERSATION}], tok, 1000)


def test_chat_settings_defaults_and_sft_unchanged():
    s = check_settings({}, chat=True)
    assert (s["epochs"], s["batch_size"], s["lr"], s["chat_template"]) == (5, 8, 2e-6, "tulu")
    assert check_settings({}) == DEFAULTS  # supervised fine-tuning: exactly as before
    assert CHAT_DEFAULTS["warmup_ratio"] == DEFAULTS["warmup_ratio"]
    with pytest.raises(AmuroError, match="'chat_template' must be one of"):
        check_settings({"chat_template": "chatml"}, chat=True)


@pytest.mark.parametrize("messages, message", [
    (None, "field 'messages' must be a non-empty list"),
    ([{"role": "user", "content": "hi"}], "field 'messages' has no assistant turn"),
    ([{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}],
     r"field 'messages\[1\].role' is 'tool', expected one of"),
    ([{"role": "user", "content": " "}, {"role": "assistant", "content": "x"}],
     r"field 'messages\[0\].content' is empty"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant"}],
     r"field 'messages\[1\].content' is empty or not text"),
])
def test_bad_chat_records_fail_with_one_line(tiny_checkpoint, tmp_path, messages, message):
    good = {"id": "a", "messages": CONVERSATION}
    bad = {"id": "b"} if messages is None else {"id": "b", "messages": messages}
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(AmuroError) as err:
        finetune_main(["--checkpoint", str(tiny_checkpoint), "--train", str(train),
                       "--task", json.dumps(CHAT_TASK), "--out", str(tmp_path / "out")])
    text = str(err.value)
    assert "\n" not in text and re.search(message, text)
    assert text.startswith(f"{train}: record 2 (id 'b'): ")


def test_short_instruction_tuning_lowers_loss_and_saves_the_template(tiny_checkpoint, tmp_path):
    world = make_world(1, 8)
    rows = build_dataset("tw_instruct", world, {"train": 48}, seed=1)["train"]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "it"
    finetune_main([
        "--checkpoint", str(tiny_checkpoint), "--train", str(train),
        "--task", json.dumps(CHAT_TASK), "--out", str(out),
        "--settings", json.dumps({"epochs": 6, "batch_size": 8, "lr": 1e-2, "max_length": 128,
                                  "seed": 1, "heldout": 8}),
    ])
    log = [line.split(",") for line in (out / "train_log.csv").read_text().splitlines()[1:]]
    first = [float(r[2]) for r in log if r[1] == "1"]
    last = [float(r[2]) for r in log if r[1] == "6"]
    assert sum(last) / len(last) < 0.8 * sum(first) / len(first)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["type"] == "chat" and settings["chat_template"] == "tulu"
    assert settings["settings"]["epochs"] == 6 and settings["n_examples"] == 40
    assert settings["steps"] == 30 and settings["heldout_n"] == 8
    assert settings["n_label_tokens"] > 0 and settings["n_truncated"] >= 0
    reloaded = load_tokenizer(out)
    assert reloaded.chat_template == TULU_CHAT_TEMPLATE
    assert reloaded.apply_chat_template(CONVERSATION[1:2], tokenize=False,
                                        add_generation_prompt=True).endswith("<|assistant|>\n")


# --- tiny-world instruction mixture and benchmarks ------------------------------------------
SIZES = {"train": 1000, "demo": 32, "test": 64}  # the default study's world (config.yaml)
BENCHMARKS = ("tw_facts_mc", "tw_cloze_mc", "tw_pairs")


@pytest.fixture(scope="module")
def default_world():
    world = make_world(1, 16)
    return world, {name: build_dataset(name, world, SIZES, seed=1)
                   for name in ("tw_instruct", *BENCHMARKS)}


def _names(text: str) -> set[str]:
    return set(re.findall(r"\b(?:" + "|".join(NAMES) + r")\b", text))


def test_default_world_sizes(default_world):
    _, data = default_world
    assert {s: len(r) for s, r in data["tw_instruct"].items()} == {"train": 1000}
    for name in BENCHMARKS:
        assert {s: len(r) for s, r in data[name].items()} == {"demo": 32, "test": 64}, name


def test_instruction_people_are_disjoint_from_benchmark_people(default_world):
    world, data = default_world
    assert set(instruction_people(world)).isdisjoint(benchmark_people(world))
    taught = set()
    for rec in data["tw_instruct"]["train"]:
        taught |= _names(" ".join(m["content"] for m in rec["messages"]))
    assert taught == set(instruction_people(world))
    for name in BENCHMARKS:
        for split, rows in data[name].items():
            asked = set().union(*(_names(json.dumps(r["fields"])) for r in rows))
            assert asked <= set(benchmark_people(world)), (name, split)
            assert asked.isdisjoint(taught), (name, split)


def test_instruction_mixture_is_valid_tulu(default_world, tmp_path):
    _, data = default_world
    rows = data["tw_instruct"]["train"]
    check_chat_records(rows, "tw_instruct/train.jsonl")  # finetune accepts every record
    assert all(set(r) == {"id", "messages"} for r in rows)
    for r in rows:
        roles = [m["role"] for m in r["messages"] if m["role"] != "system"]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and roles
    turns = collections.Counter(sum(m["role"] == "assistant" for m in r["messages"]) for r in rows)
    assert set(turns) == {1, 2} and turns[2] > 100  # some two-exchange conversations
    assert sum(r["messages"][0]["role"] == "system" for r in rows) > 100
    leads = collections.Counter(r["messages"][-2]["content"].split()[0] for r in rows)
    assert {"Summarize:", "Rewrite", "Answer", "Is", "Tell"} <= set(leads)


@pytest.mark.parametrize("name", ["tw_facts_mc", "tw_cloze_mc"])
def test_multiple_choice_records(default_world, name):
    world, data = default_world
    for split, rows in data[name].items():
        positions = collections.Counter(r["label"] for r in rows)
        assert set(positions) == {0, 1, 2, 3}
        assert max(positions.values()) - min(positions.values()) <= 1, (split, positions)
        for r in rows:
            assert set(r) == {"id", "fields", "target", "label"}
            assert set(r["fields"]) == {"question", "choices"}
            choices = r["fields"]["choices"]
            assert len(choices) == 4 == len(set(choices)) and choices[r["label"]] == r["target"]
            person, = _names(r["fields"]["question"])
            attribute = next(a for a in VALUES if r["target"].split()[0].rstrip(".")
                             in VALUES[a])
            truth = world.value(person, attribute)
            assert r["target"].split()[0].rstrip(".") == truth
            assert [c.split()[0].rstrip(".") in VALUES[attribute] for c in choices] == [True] * 4


def test_pairwise_records(default_world):
    world, data = default_world
    for split, rows in data["tw_pairs"].items():
        targets = collections.Counter(r["target"] for r in rows)
        assert targets["1"] == targets["2"], split
        for r in rows:
            assert set(r) == {"id", "fields", "target"}
            assert set(r["fields"]) == {"instruction", "output_1", "output_2"}
            assert r["fields"]["output_1"] != r["fields"]["output_2"]
            good = r["fields"][f"output_{r['target']}"]
            if r["fields"]["instruction"].startswith("Answer yes or no."):
                person, = _names(r["fields"]["instruction"])
                value = r["fields"]["instruction"].rstrip("?").split()[-1]
                attribute = next(a for a in VALUES if value in VALUES[a])
                assert good == ("yes" if world.value(person, attribute) == value else "no")
            else:  # the good output states the person's true value
                person, = _names(r["fields"]["instruction"])
                assert any(world.value(person, a) in good.rstrip(".").split() for a in VALUES)


@pytest.mark.parametrize("name", ["tw_instruct", *BENCHMARKS])
def test_splits_are_disjoint_by_input(default_world, name):
    _, data = default_world
    keys = {split: {input_key(r) for r in rows} for split, rows in data[name].items()}
    for split, rows in data[name].items():
        assert len(keys[split]) == len(rows)  # no repeated input within a split
    if len(keys) == 2:
        assert keys["demo"].isdisjoint(keys["test"])


def test_make_world_is_deterministic_and_reports_short_sets(tmp_path, capsys):
    def run(folder, seed, people=16):
        make_world_main([
            "--seed", str(seed), "--people", str(people), "--documents", "20",
            "--train-size", "200", "--demo-size", "32", "--test-size", "64",
            "--datasets", "tw_instruct", *BENCHMARKS, "--corpus", str(folder / "corpus.txt"),
            "--data-dir", str(folder / "data"), "--summary", str(folder / "summary.json"),
        ])
        return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*.jsonl"))}

    first, again = run(tmp_path / "a", 1), run(tmp_path / "b", 1)
    assert len(first) == 7 and first == again
    other = run(tmp_path / "c", 2)
    assert all(first[k] != other[k] for k in first)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())["datasets"]
    assert summary["tw_facts_mc"]["test"] == {"n": 64, "positions": {str(i): 16 for i in range(4)}}
    assert summary["tw_pairs"]["demo"] == {"n": 32, "labels": {"1": 16, "2": 16}}
    assert summary["tw_instruct"] == {"train": {"n": 200}}
    capsys.readouterr()
    # 4 people: 2 asked about x 4 attributes x 8 phrasings = 64 distinct fact questions, 32 of
    # them demonstrations: the test split gets the other 32 of the 64 asked for
    run(tmp_path / "d", 1, people=4)
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())["datasets"]
    assert summary["tw_facts_mc"]["demo"]["n"] == 32 and summary["tw_facts_mc"]["test"]["n"] == 32
    assert "tw_facts_mc/test: 32 distinct items" in capsys.readouterr().err


def test_new_datasets_are_registered():
    assert DATASETS["tw_instruct"][2] == ("train",)
    for name in BENCHMARKS:
        assert DATASETS[name][2] == ("demo", "test")
    assert DATASETS["tw_pairs"][1] == ("1", "2")
