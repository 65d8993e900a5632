"""Supervised fine-tuning of one checkpoint on one task (full-parameter, or LoRA via peft).

    python -m amuro.finetune --checkpoint results/checkpoints/tiny/step800 \
        --train results/data/tw_nli/train.jsonl --task '{"name": "nli", ...}' \
        --settings '{"epochs": 3, "batch_size": 8, "lr": 2e-6, ...}' --out DIR

Loss is on the completion only (prompt tokens masked) with EOS appended; AdamW with a linear
schedule and warm-up ratio. Writes the model in Hugging Face format (safetensors), the per-step
loss log (`train_log.csv`) and the exact settings (`settings.json`) into DIR.
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402
from transformers import get_linear_schedule_with_warmup  # noqa: E402

from amuro.errors import AmuroError, run_cli  # noqa: E402
from amuro.io import (  # noqa: E402
    atomic_dir,
    parse_json_object,
    read_jsonl,
    sha256_file,
    write_json,
)
from amuro.modeling import (  # noqa: E402
    Stopwatch,
    load_model,
    load_tokenizer,
    seed_everything,
    set_threads,
)
from amuro.prompts import render_example  # noqa: E402
from amuro.tasks import TaskSpec, task_from_dict  # noqa: E402

# Paper defaults (reference.md §1); the workflow passes the configured values explicitly.
DEFAULTS = {
    "epochs": 3, "batch_size": 8, "lr": 2e-6, "warmup_ratio": 0.03, "weight_decay": 0.0,
    "max_length": 2048, "max_examples": 6000, "seed": 42, "format": "default",
    "lora": None, "log_every": 25, "heldout": 0, "precision": "auto",
}
PRECISIONS = ("auto", "fp32", "bf16")
IGNORE = -100


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m amuro.finetune", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="Hugging Face model folder")
    ap.add_argument("--train", required=True, help="training records (jsonl)")
    ap.add_argument("--task", required=True, help="JSON task spec (name, type, template, ...)")
    ap.add_argument("--settings", default="{}", help=f"JSON; defaults {DEFAULTS}")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args(argv)


def check_settings(settings: dict) -> dict:
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise AmuroError(f"--settings: unknown keys {unknown}; expected some of {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **settings}
    for key in ("epochs", "batch_size", "max_length", "max_examples"):
        if not isinstance(s[key], int) or s[key] < 1:
            raise AmuroError(f"--settings: {key!r} must be a positive integer, got {s[key]!r}")
    if not s["lr"] > 0:
        raise AmuroError(f"--settings: 'lr' must be > 0, got {s['lr']!r}")
    if not isinstance(s["heldout"], int) or s["heldout"] < 0:
        raise AmuroError(f"--settings: 'heldout' must be an integer >= 0, got {s['heldout']!r}")
    if s["precision"] not in PRECISIONS:
        raise AmuroError(f"--settings: 'precision' must be one of {PRECISIONS}, "
                         f"got {s['precision']!r}")
    if not 0 <= s["warmup_ratio"] < 1:
        raise AmuroError(f"--settings: 'warmup_ratio' must be in [0, 1), got {s['warmup_ratio']}")
    return s


def encode_examples(records, task: TaskSpec, tokenizer, fmt: str, max_length: int):
    """Token ids and completion-only labels per record; long prompts lose their left part."""
    examples, n_truncated = [], 0
    for rec in records:
        prompt, answer = render_example(task.template, fmt, rec, task.labels)
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        a_ids = a_ids[:max_length]
        room = max_length - len(a_ids)
        if len(p_ids) > room:
            p_ids = p_ids[len(p_ids) - room:] if room > 0 else []
            n_truncated += 1
        examples.append((p_ids + a_ids, [IGNORE] * len(p_ids) + a_ids))
    return examples, n_truncated


def collate(batch, pad_id: int):
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id)
    labels = torch.full((len(batch), width), IGNORE)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (ids, labs) in enumerate(batch):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(labs)] = torch.tensor(labs)
        mask[i, : len(ids)] = 1
    return input_ids, mask, labels


def check_records(records: list[dict], path: str, task: TaskSpec) -> None:
    for i, rec in enumerate(records, 1):
        if not isinstance(rec.get("fields"), dict) or not isinstance(rec.get("target"), str):
            raise AmuroError(f"{path}: record {i}: expected fields 'fields' (object) and "
                             "'target' (string)")
        if task.type == "classification" and rec["target"] not in task.labels:
            raise AmuroError(f"{path}: record {i}: field 'target' is {rec['target']!r}, "
                             f"expected one of {list(task.labels)}")


def autocast_dtype(precision: str, device: str):
    """bf16 autocast on a GPU that supports it ("auto" or "bf16"); fp32 everywhere else.

    On CPUs without AVX512_BF16, bf16 autocast is ~10x slower than fp32, so "auto" keeps fp32
    there; an explicit "bf16" on a CPU is honoured but announced.
    """
    if precision == "fp32":
        return None
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if precision == "bf16":
        if device == "cuda":
            raise AmuroError("--settings: precision 'bf16' but this GPU does not support bf16")
        print("[finetune] precision bf16 on a CPU: autocast may be much slower than fp32",
              file=sys.stderr)
        return torch.bfloat16
    return None


@torch.no_grad()
def heldout_loss(model, examples, batch_size: int, pad_id: int, device: str, dtype) -> float:
    """Mean completion-token loss over held-out examples (the learning-rate selection score)."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        input_ids, mask, labels = (t.to(device) for t in
                                   collate(examples[start: start + batch_size], pad_id))
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
        shift, target = logits[:, :-1], labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(shift.reshape(-1, shift.size(-1)),
                                                 target.reshape(-1), ignore_index=IGNORE,
                                                 reduction="sum")
        total += float(loss)
        count += int((target != IGNORE).sum())
    model.train()
    return total / max(count, 1)


def apply_lora(model, lora: dict):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.get("r", 8), lora_alpha=lora.get("alpha", 16),
        lora_dropout=lora.get("dropout", 0.0),
        target_modules=lora.get("target_modules", "all-linear"), task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def main(argv=None):
    args = parse_args(argv)
    clock = Stopwatch()
    clock.phases["import"] = round(time.perf_counter() - _T_START, 3)
    task = parse_task(args.task)
    s = check_settings(parse_json_object("--settings", args.settings))
    set_threads(args.threads)
    seed_everything(s["seed"])

    records = read_jsonl(args.train)
    check_records(records, args.train, task)
    if not records:
        raise AmuroError(f"{args.train}: no training records")
    random.Random(s["seed"]).shuffle(records)
    # The held-out slice (for choosing the learning rate) never overlaps the training subset:
    # it comes after the first max_examples records, or from the tail when there are too few.
    n_train = min(s["max_examples"], len(records) - s["heldout"])
    if n_train < 1:
        raise AmuroError(f"{args.train}: {len(records)} records cannot hold heldout="
                         f"{s['heldout']} and at least one training example")
    heldout_records = records[len(records) - s["heldout"]:] if s["heldout"] else []
    records = records[:n_train]

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = autocast_dtype(s["precision"], device)
    tokenizer = load_tokenizer(args.checkpoint)
    model = load_model(args.checkpoint).to(device)
    clock.lap("load_model")
    if s["lora"]:
        model = apply_lora(model, s["lora"])
    examples, n_truncated = encode_examples(records, task, tokenizer, s["format"], s["max_length"])
    heldout_examples, _ = encode_examples(heldout_records, task, tokenizer, s["format"],
                                          s["max_length"])

    steps_per_epoch = math.ceil(len(examples) / s["batch_size"])
    total = steps_per_epoch * s["epochs"]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=s["lr"], weight_decay=s["weight_decay"])
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(s["warmup_ratio"] * total),
                                               total)
    generator = torch.Generator().manual_seed(s["seed"])
    print(f"[finetune] {task.name} on {args.checkpoint}: {len(examples)} examples "
          f"({n_truncated} truncated), {s['epochs']} epochs x {steps_per_epoch} steps, "
          f"lr {s['lr']}, {device}" + (f" {dtype}" if dtype else " fp32"), file=sys.stderr)

    log_rows = []
    model.train()
    bar = tqdm(total=total, desc=f"finetune {task.name}", unit="step", disable=None)
    step = 0
    for epoch in range(1, s["epochs"] + 1):
        order = torch.randperm(len(examples), generator=generator).tolist()
        for start in range(0, len(order), s["batch_size"]):
            batch = [examples[i] for i in order[start: start + s["batch_size"]]]
            input_ids, mask, labels = (t.to(device) for t in
                                       collate(batch, tokenizer.pad_token_id))
            with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            value = loss.item()
            if not math.isfinite(value):
                raise AmuroError(f"fine-tuning loss became {value} at step {step}; lower 'lr'")
            log_rows.append((step, epoch, value, schedule.get_last_lr()[0]))
            bar.update(1)
            if step % s["log_every"] == 0 or step == total:
                bar.set_postfix(loss=f"{value:.3f}")
                print(f"[finetune] step {step}/{total} epoch {epoch} loss {value:.4f}",
                      file=sys.stderr)
    bar.close()
    clock.lap("train")
    held = None
    if heldout_examples:
        held = heldout_loss(model, heldout_examples, s["batch_size"], tokenizer.pad_token_id,
                            device, dtype)
        print(f"[finetune] held-out loss {held:.4f} on {len(heldout_examples)} examples",
              file=sys.stderr)
        clock.lap("heldout")

    if s["lora"]:
        model = model.merge_and_unload()  # downstream steps load a plain model
    model = model.to("cpu")
    with atomic_dir(args.out) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        with (staging / "train_log.csv").open("w") as fh:
            fh.write("step,epoch,loss,lr\n")
            fh.writelines(f"{st},{ep},{lo:.6f},{lr:.6e}\n" for st, ep, lo, lr in log_rows)
        clock.lap("save")
        clock.phases["total"] = round(time.perf_counter() - _T_START, 3)
        write_json(staging / "settings.json", {
            "task": task.name, "template": task.template, "settings": s,
            "checkpoint": str(args.checkpoint), "train_file": str(args.train),
            "checkpoint_sha256": weights_digest(Path(args.checkpoint)),
            "device": device, "precision": str(dtype or "fp32"),
            "heldout_loss": held, "heldout_n": len(heldout_examples),
            "n_examples": len(examples), "n_truncated": n_truncated, "steps": total,
            "first_loss": log_rows[0][2], "last_epoch_mean_loss": _epoch_mean(log_rows),
            "timing": clock.phases,
        })


def parse_task(text: str) -> TaskSpec:
    d = parse_json_object("--task", text)
    if "name" not in d:
        raise AmuroError("--task: field 'name' missing")
    return task_from_dict(d.pop("name"), d)


def weights_digest(folder: Path) -> str:
    """sha256 of the weights: the one safetensors file, or of the shards' digests in order."""
    files = sorted(folder.glob("*.safetensors"))
    if len(files) == 1:
        return sha256_file(files[0])
    return hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()


def _epoch_mean(rows) -> float:
    last = rows[-1][1]
    values = [lo for _, ep, lo, _ in rows if ep == last]
    return sum(values) / len(values)


if __name__ == "__main__":
    run_cli(main)
