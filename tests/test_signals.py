"""amuro.signals on the session's tiny random OLMo checkpoint: the target loss against a direct
computation with the model, the linear probe on a separable and on a shuffled toy task, the
output JSON, the logistic regression against its optimality conditions (and scikit-learn where
installed), and one-line errors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from conftest import SENTENCES

from amuro import signals
from amuro.finetune import DEFAULTS, encode_examples, heldout_loss, parse_task
from amuro.modeling import load_model, load_tokenizer
from amuro.prompts import render_example

LABELS = ["entailment", "contradiction"]
TASK = {"name": "nli", "type": "classification", "template": "nli", "labels": LABELS}
N = 40


def toy_records(shuffle: bool = False) -> list[dict]:
    """A task the prompt decides: premises 0-1 are entailment, 2-3 contradiction; with
    `shuffle` the same prompts get a seeded permutation of the labels."""
    rows = []
    for i in range(N):
        label = i % 2
        rows.append({"id": f"r{i:02d}",
                     "fields": {"premise": SENTENCES[2 * label + (i // 2) % 2],
                                "hypothesis": SENTENCES[(i // 4) % 6]},
                     "target": LABELS[label]})
    if shuffle:
        targets = [r["target"] for r in rows]
        random.Random(7).shuffle(targets)
        for r, t in zip(rows, targets, strict=True):
            r["target"] = t
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def run(tiny_checkpoint, tmp_path, rows, *extra, task=TASK, name="out.json"):
    train = write_jsonl(tmp_path / f"{name}.train.jsonl", rows)
    out = tmp_path / name
    signals.main(["--checkpoint", str(tiny_checkpoint), "--train", train, "--task",
                  json.dumps(task), "--out", str(out), "--bootstrap-resamples", "200",
                  *extra])
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def probe_runs(tiny_checkpoint, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("signals")
    return (run(tiny_checkpoint, tmp, toy_records(), "--heldout", str(N), name="sep.json"),
            run(tiny_checkpoint, tmp, toy_records(True), "--heldout", str(N),
                name="shuffled.json"))


def test_target_loss_equals_a_direct_computation(tiny_checkpoint, probe_runs):
    doc = probe_runs[0]["signals"]["target_loss"]
    rec = {r["id"]: r for r in toy_records()}[doc["ids"][0]]
    tok, model = load_tokenizer(tiny_checkpoint), load_model(tiny_checkpoint).eval()
    prompt, answer = render_example("nli", "default", rec, tuple(LABELS))
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    a = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p + a])).logits[0]
    logp = torch.log_softmax(logits.double(), -1)
    direct = -np.mean([float(logp[len(p) - 1 + k, t]) for k, t in enumerate(a)])
    assert doc["values"][0] == pytest.approx(direct, abs=1e-5)
    assert doc["n_tokens"][0] == len(a)
    # the token-weighted mean is amuro.finetune's held-out loss of the same examples
    task = parse_task(json.dumps(TASK))
    examples, _ = encode_examples(toy_records(), task, tok, "default", DEFAULTS["max_length"])
    held = heldout_loss(model, examples, 8, tok.pad_token_id, "cpu", None)
    assert doc["token_mean"] == pytest.approx(held, rel=1e-5)


def test_linear_probe_separates_a_separable_task_and_not_a_shuffled_one(probe_runs):
    sep, shuffled = (d["signals"]["linear_probe"] for d in probe_runs)
    assert sep["value"] >= 0.9
    assert sep["chance"] == 0.5 and sep["label_counts"] == {"entailment": 20,
                                                            "contradiction": 20}
    assert abs(shuffled["value"] - 0.5) <= 0.2


def test_json_has_per_item_values_intervals_settings_and_cost(probe_runs):
    doc = probe_runs[0]
    assert doc["n_records"] == N and doc["task"] == "nli" and doc["task_type"] == "classification"
    assert doc["settings"]["signals"] == ["target_loss", "linear_probe"]
    assert doc["settings"]["heldout"] == N and doc["settings"]["folds"] == 5
    for name, sig in doc["signals"].items():
        assert sig["n"] == N == len(sig["ids"]) == len(sig["values"]) == len(set(sig["ids"]))
        assert sig["value"] == pytest.approx(float(np.mean(sig["values"])))
        assert sig["ci_low"] <= sig["value"] <= sig["ci_high"], name
    loss = doc["signals"]["target_loss"]
    assert loss["ci_low"] < loss["ci_high"] and len(loss["n_tokens"]) == N
    assert set(doc["signals"]["linear_probe"]["values"]) <= {0.0, 1.0}
    assert doc["signals"]["target_loss"]["higher_is_better"] is False
    assert doc["wall_s"] > 0 and doc["cpu_s"] > 0 and "load_model" in doc["timing"]


def test_slice_is_a_seeded_sample_independent_of_the_signals(tiny_checkpoint, tmp_path):
    rows = toy_records()
    a = run(tiny_checkpoint, tmp_path, rows, "--heldout", "7", "--signals", "target_loss",
            name="a.json")
    b = run(tiny_checkpoint, tmp_path, rows, "--heldout", "7", "--folds", "2", name="b.json")
    c = run(tiny_checkpoint, tmp_path, rows, "--heldout", "7", "--seed", "2",
            "--signals", "target_loss", name="c.json")
    ids = a["signals"]["target_loss"]["ids"]
    assert len(ids) == 7 and list(a["signals"]) == ["target_loss"]
    assert ids == b["signals"]["target_loss"]["ids"] == b["signals"]["linear_probe"]["ids"]
    assert a["signals"]["target_loss"]["values"] == b["signals"]["target_loss"]["values"]
    assert ids != c["signals"]["target_loss"]["ids"]


def test_fit_logistic_is_the_penalised_optimum():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = np.argmax(x[:, :3] + 0.5 * rng.normal(size=(60, 3)), axis=1)
    l2 = 0.05
    w, b = signals.fit_logistic(x, y, 3, l2)
    z = x @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = (p - np.eye(3)[y]) / len(y)
    assert np.abs(x.T @ g + l2 * w).max() < 1e-6 and np.abs(g.sum(0)).max() < 1e-6
    sklearn = pytest.importorskip("sklearn.linear_model")
    ref = sklearn.LogisticRegression(C=1 / (l2 * len(y)), tol=1e-10, max_iter=10_000).fit(x, y)
    assert np.allclose(ref.predict_proba(x), p, atol=1e-5)


def test_stratified_folds_balance_every_label():
    y = np.array([0] * 7 + [1] * 5 + [2] * 3)
    fold = signals.stratified_folds(y, 3, seed=4)
    assert sorted(np.bincount(fold).tolist()) == [5, 5, 5]
    for label in range(3):
        counts = np.bincount(fold[y == label], minlength=3)
        assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("task, extra, where", [
    ('{"name": "nli", "type": "classification"', [], "--task: not valid JSON"),
    ('{"name": "nli", "type": "classification", "labels": ["a", "b"]}', [], "--task"),
    (json.dumps({**TASK, "labels": "entailment"}), [], "'labels'"),
    (json.dumps({"name": "s", "type": "generation", "template": "summarization"}),
     ["--signals", "linear_probe"], "--signals: linear_probe needs a classification task"),
    (json.dumps({"name": "c", "type": "chat"}), [], "--task: task 'c' is of type 'chat'"),
])
def test_bad_task_is_one_line(tiny_checkpoint, tmp_path, cli_error, task, extra, where):
    train = write_jsonl(tmp_path / "t.jsonl", toy_records())
    err = cli_error(signals.main, ["--checkpoint", str(tiny_checkpoint), "--train", train,
                                   "--task", task, "--out", str(tmp_path / "o.json"), *extra])
    assert where in err
    assert not (tmp_path / "o.json").exists()


def test_bad_records_are_one_line(tiny_checkpoint, tmp_path, cli_error):
    rows = toy_records()
    rows[3]["id"] = rows[2]["id"]
    train = write_jsonl(tmp_path / "t.jsonl", rows)
    argv = ["--checkpoint", str(tiny_checkpoint), "--train", train, "--task", json.dumps(TASK),
            "--out", str(tmp_path / "o.json")]
    assert "t.jsonl: record 4: field 'id' 'r02' repeats" in cli_error(signals.main, argv)
    rows[3]["target"] = "maybe"
    write_jsonl(tmp_path / "t.jsonl", rows)
    assert "t.jsonl: record 4: field 'target'" in cli_error(signals.main, argv)
    small = write_jsonl(tmp_path / "s.jsonl", toy_records()[:3])
    err = cli_error(signals.main, [*argv[:3], small, *argv[4:]])
    assert "s.jsonl: 3 held-out item(s) cannot fill 5 folds" in err
    good = write_jsonl(tmp_path / "g.jsonl", toy_records())
    err = cli_error(signals.main, [*argv[:3], good, *argv[4:], "--format", "fancy"])
    assert "format 'fancy' unknown" in err
    assert cli_error(signals.main, [*argv, "--folds", "1"]) == "error: --folds: must be >= 2, got 1"
    assert not (tmp_path / "o.json").exists()
