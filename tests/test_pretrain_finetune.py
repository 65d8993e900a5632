"""A pre-trained series reloads exactly as saved, and a short fine-tune lowers training loss."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import NLI_TASK as NLI
from conftest import SERIES_MODEL as MODEL
from conftest import SERIES_TRAIN as TRAIN

from amuro.errors import AmuroError
from amuro.finetune import (
    IGNORE,
    completion_loss_sum,
    linear_schedule,
    pack_sequences,
    token_loss_sum,
)
from amuro.finetune import main as finetune_main
from amuro.io import sha256_file
from amuro.modeling import load_model, load_tokenizer
from amuro.pretrain import main as pretrain_main
from amuro.scoring import first_subtoken_ids


def test_series_reloads_with_manifest(nli_series):
    manifest = json.loads((nli_series / "ckpt" / "manifest.json").read_text())
    steps = [c["step"] for c in manifest["checkpoints"]]
    assert steps == [0, 4, 10]
    hashes = set()
    for entry in manifest["checkpoints"]:
        folder = nli_series / "ckpt" / entry["path"]
        assert entry["tokens"] == entry["step"] * TRAIN["batch_size"] * TRAIN["seq_len"]
        assert sha256_file(folder / "model.safetensors") == entry["sha256"]
        model, tok = load_model(folder), load_tokenizer(folder)
        assert model.config.model_type == "olmo"
        first_subtoken_ids(tok, NLI["labels"], task="nli")  # labels stay whole tokens
        hashes.add(entry["sha256"])
    assert len(hashes) == 3  # training changed the weights between checkpoints


def test_pretraining_is_deterministic(nli_series, tmp_path):
    pretrain_main([
        "--corpus", str(nli_series / "corpus.txt"), "--out-dir", str(tmp_path / "again"),
        "--save-steps", "0", "4", "10", "--model-config", json.dumps(MODEL),
        "--train", json.dumps(TRAIN), "--whole-words", *NLI["labels"],
    ])
    again = json.loads((tmp_path / "again" / "manifest.json").read_text())["checkpoints"]
    first = json.loads((nli_series / "ckpt" / "manifest.json").read_text())["checkpoints"]
    assert [c["sha256"] for c in again] == [c["sha256"] for c in first]


def test_short_finetune_lowers_training_loss(nli_series, tmp_path):
    out = tmp_path / "ft"
    finetune_main([
        "--checkpoint", str(nli_series / "ckpt" / "step10"),
        "--train", str(nli_series / "data" / "tw_nli" / "train.jsonl"),
        "--task", json.dumps(NLI),
        "--settings", json.dumps({"epochs": 4, "batch_size": 8, "lr": 3e-3, "max_length": 128,
                                  "seed": 1, "max_examples": 48}),
        "--out", str(out),
    ])
    settings = json.loads((out / "settings.json").read_text())
    log = [line.split(",") for line in (out / "train_log.csv").read_text().splitlines()[1:]]
    first_epoch = [float(r[2]) for r in log if r[1] == "1"]
    last_epoch = [float(r[2]) for r in log if r[1] == "4"]
    assert sum(last_epoch) / len(last_epoch) < 0.8 * sum(first_epoch) / len(first_epoch)
    assert settings["n_examples"] == 48 and settings["steps"] == 24
    reloaded = load_model(out)
    base = load_model(nli_series / "ckpt" / "step10")
    assert not torch.equal(reloaded.lm_head.weight, base.lm_head.weight)


def test_packed_finetune_steps_over_records_in_few_shot_sequences(nli_series, tmp_path):
    out = tmp_path / "ft"
    finetune_main([
        "--checkpoint", str(nli_series / "ckpt" / "step10"),
        "--train", str(nli_series / "data" / "tw_nli" / "train.jsonl"),
        "--task", json.dumps(NLI),
        "--settings", json.dumps({"epochs": 2, "batch_size": 2, "lr": 3e-3, "max_length": 128,
                                  "seed": 1, "max_examples": 48, "pack": 3}),
        "--out", str(out),
    ])
    settings = json.loads((out / "settings.json").read_text())
    # 48 records, 2 sequences of 3 records per step: 8 steps an epoch
    assert settings["n_examples"] == 48 and settings["steps"] == 16


def test_completion_logits_give_the_full_logits_loss_and_gradient(nli_series):
    """Projecting only the positions that carry loss changes neither the loss nor a gradient."""
    model = load_model(nli_series / "ckpt" / "step10")
    torch.manual_seed(0)
    ids = torch.randint(3, 60, (3, 12))
    mask = torch.ones_like(ids)
    mask[2, 9:] = 0
    labels = torch.full_like(ids, IGNORE)
    labels[0, 5:7], labels[1, 9:11], labels[2, 3] = ids[0, 5:7], ids[1, 9:11], ids[2, 3]
    grads = []
    for loss_fn in (lambda: token_loss_sum(model(input_ids=ids, attention_mask=mask)
                                           .logits.float(), labels),
                    lambda: completion_loss_sum(model, ids, mask, labels)):
        model.zero_grad()
        loss = loss_fn()
        loss.backward()
        grads.append((loss.item(), model.get_input_embeddings().weight.grad.clone()))
    assert grads[1][0] == pytest.approx(grads[0][0], rel=1e-5)
    assert torch.allclose(grads[1][1], grads[0][1], atol=1e-6)
    # A batch share with no labelled token costs nothing and still runs the model.
    empty = torch.full_like(ids, IGNORE)
    assert completion_loss_sum(model, ids, mask, empty).item() == 0.0


def test_pack_sequences_joins_blocks_like_a_few_shot_prompt():
    blocks = [([1, 2, 3], [IGNORE, IGNORE, 3]), ([4, 5], [IGNORE, 5]), ([6, 7], [IGNORE, 7])]
    sep, eos = [9], 0
    assert pack_sequences(blocks, 2, sep, eos, 100) == [
        ([1, 2, 3, 9, 4, 5, 0], [IGNORE, IGNORE, 3, IGNORE, IGNORE, 5, 0]),
        ([6, 7, 0], [IGNORE, 7, 0]),
    ]
    # a block that would pass max_length starts the next sequence
    assert [len(ids) for ids, _ in pack_sequences(blocks, 5, sep, eos, 7)] == [7, 3]
    assert pack_sequences(blocks, 1, sep, eos, 100)[0] == ([1, 2, 3, 0], [IGNORE, IGNORE, 3, 0])


def test_linear_schedule_matches_transformers():
    from transformers import get_linear_schedule_with_warmup

    for warmup, total in [(3, 20), (0, 5), (5, 5)]:
        rates = []
        for make in (get_linear_schedule_with_warmup, linear_schedule):
            optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0)
            schedule, seen = make(optimizer, warmup, total), []
            for _ in range(total + 2):
                seen.append(schedule.get_last_lr()[0])
                optimizer.step()
                schedule.step()
            rates.append(seen)
        assert rates[0] == rates[1]


def test_lora_switch_trains_adapters_and_saves_a_plain_model(nli_series, tmp_path):
    out = tmp_path / "lora"
    finetune_main([
        "--checkpoint", str(nli_series / "ckpt" / "step10"),
        "--train", str(nli_series / "data" / "tw_nli" / "train.jsonl"),
        "--task", json.dumps(NLI),
        "--settings", json.dumps({"epochs": 1, "batch_size": 8, "lr": 1e-2, "max_length": 128,
                                  "lora": {"r": 4, "alpha": 8}}),
        "--out", str(out),
    ])
    from safetensors import safe_open

    assert load_model(out).config.model_type == "olmo"
    with safe_open(out / "model.safetensors", "pt") as weights:
        keys = list(weights.keys())
    assert keys and not any("lora" in k for k in keys)  # adapters merged into the weights


def test_finetune_rejects_bad_settings_and_labels(nli_series, tmp_path):
    args = ["--checkpoint", str(nli_series / "ckpt" / "step10"),
            "--train", str(nli_series / "data" / "tw_nli" / "train.jsonl"),
            "--out", str(tmp_path)]
    with pytest.raises(AmuroError, match="'lr' must be > 0"):
        finetune_main([*args, "--task", json.dumps(NLI), "--settings", '{"lr": -1}'])
    two_labels = {**NLI, "labels": ["entailment", "neutral"]}
    with pytest.raises(AmuroError, match="field 'target' is 'contradiction'"):
        finetune_main([*args, "--task", json.dumps(two_labels)])
