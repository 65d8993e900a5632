"""Fine-tuning of one checkpoint on one task (full-parameter, or LoRA via peft).

    python -m amuro.finetune --checkpoint results/checkpoints/tiny/step800 \
        --train results/data/tw_nli/train.jsonl --task '{"name": "nli", ...}' \
        --settings '{"epochs": 3, "batch_size": 8, "lr": 2e-6, ...}' --out DIR

Supervised fine-tuning (task records `{"id", "fields", "target"}`): loss on the completion only
(prompt tokens masked) with EOS appended. Instruction tuning (task type "chat", TULU records
`{"id", "messages": [{"role", "content"}, ...]}`): the conversation is rendered with the chat
template named by the setting `chat_template` ("tulu": open-instruct's `<|user|>` /
`<|assistant|>` format; "tokenizer": the checkpoint's own template) and the loss is on every
assistant turn (its content and the EOS the template puts after it); system and user turns and
the role markers are masked (amuro/chat.py). The template is saved with the tokenizer
(`chat_template.jinja`).
AdamW with a linear schedule and warm-up ratio. Writes the model in Hugging Face format
(safetensors), the per-step loss log (`train_log.csv`) and the exact settings (`settings.json`)
into DIR.

Preemption: with --state-dir, the run saves resumable state (amuro/train_state.py) every
--save-every-steps / --save-every-minutes and on SIGTERM (amuro/preemption.py), then exits
with status 143; the same command run again continues from it and ends with the model an
uninterrupted run would give.
Several GPUs (--gpus N): the run relaunches itself under torchrun, data parallel (setting
`parallel`: ddp, or fsdp for models that do not fit one GPU), global batch unchanged
(amuro/distributed.py).
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()

import argparse  # noqa: E402
import functools  # noqa: E402
import hashlib  # noqa: E402
import inspect  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from amuro import distributed  # noqa: E402
from amuro.chat import (  # noqa: E402
    CHAT_TEMPLATES,
    IGNORE,
    ChatTask,
    chat_tokenizer,
    check_chat_records,
    encode_chat,
)
from amuro.errors import AmuroError, run_cli  # noqa: E402
from amuro.io import (  # noqa: E402
    atomic_dir,
    check_json_types,
    parse_json_object,
    read_jsonl,
    sha256_file,
    write_json,
)
from amuro.modeling import (  # noqa: E402
    Stopwatch,
    load_model,
    load_tokenizer,
    process_cpu_seconds,
    seed_everything,
    set_threads,
)
from amuro.preemption import StopRequest, fault_hold_step, hold  # noqa: E402
from amuro.progress import LogProgress, progress  # noqa: E402
from amuro.prompts import DEMO_SEPARATOR, render_example  # noqa: E402
from amuro.tasks import TaskSpec, task_from_dict  # noqa: E402
from amuro.train_state import SaveSchedule, StateStore, TrainingRun, fingerprint  # noqa: E402

# Paper defaults (reference.md §1); the workflow passes the configured values explicitly.
DEFAULTS = {
    "epochs": 3, "batch_size": 8, "lr": 2e-6, "warmup_ratio": 0.03, "weight_decay": 0.0,
    "max_length": 2048, "max_examples": 6000, "seed": 42, "format": "default",
    "lora": None, "log_every": 25, "heldout": 0, "precision": "auto", "parallel": "ddp",
    "pack": 1,
}
# Settings that change how a run is carried out but not what it computes: a run may resume
# state saved under different values of these.
NOT_IN_FINGERPRINT = ("log_every", "parallel")
PRECISIONS = ("auto", "fp32", "bf16")
# JSON kinds of the hand-given --settings (amuro.io.check_json_types), checked before use.
SETTING_TYPES = {
    **dict.fromkeys(("epochs", "batch_size", "max_length", "max_examples", "seed", "log_every",
                     "heldout", "pack"), "int"),
    **dict.fromkeys(("lr", "warmup_ratio", "weight_decay"), "number"),
    **dict.fromkeys(("format", "precision", "parallel", "chat_template"), "str"),
    "lora": "null|object",
}
TASK_TYPES = {"name": "str", "type": "str", "template": "str", "labels": "list[str]|null",
              "metric": "str|null", "max_new_tokens": "int"}
# Instruction tuning (paper §3.2: TULU v2, 5 epochs, batch 8, lr 2e-6; reference.md §1).
CHAT_DEFAULTS = {**DEFAULTS, "epochs": 5, "chat_template": "tulu"}

def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m amuro.finetune", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="Hugging Face model folder")
    ap.add_argument("--train", required=True, help="training records (jsonl)")
    ap.add_argument("--task", required=True, help="JSON task spec (name, type, template, ...)")
    ap.add_argument("--settings", default="{}", help=f"JSON; defaults {DEFAULTS}")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads, shared by the processes")
    ap.add_argument("--gpus", type=int, default=1,
                    help="processes (one per GPU) for data-parallel training; above 1 the run "
                         "relaunches itself under torchrun (gloo on a machine without GPUs)")
    ap.add_argument("--state-dir", default=None,
                    help="folder for resumable state (outside --out); a rerun resumes from it")
    ap.add_argument("--save-every-steps", type=int, default=0,
                    help="save resumable state every N optimizer steps (0: never)")
    ap.add_argument("--save-every-minutes", type=float, default=0,
                    help="save resumable state every M minutes (0: never); SIGTERM always saves")
    return ap.parse_args(argv)


def check_settings(settings: dict, chat: bool = False) -> dict:
    """Settings over the defaults (CHAT_DEFAULTS for instruction tuning), validated.

    `chat_template` is accepted for every task, so one settings block can serve both kinds of
    run; supervised fine-tuning ignores it.
    """
    known = set(DEFAULTS) | {"chat_template"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise AmuroError(f"--settings: unknown keys {unknown}; expected some of {sorted(known)}")
    check_json_types("--settings", settings, SETTING_TYPES)
    s = {**(CHAT_DEFAULTS if chat else DEFAULTS), **settings}
    if "chat_template" in s and s["chat_template"] not in CHAT_TEMPLATES:
        raise AmuroError(f"--settings: 'chat_template' must be one of {CHAT_TEMPLATES}, "
                         f"got {s['chat_template']!r}")
    for key in ("epochs", "batch_size", "max_length", "max_examples", "pack"):
        if not isinstance(s[key], int) or s[key] < 1:
            raise AmuroError(f"--settings: {key!r} must be a positive integer, got {s[key]!r}")
    if not s["lr"] > 0:
        raise AmuroError(f"--settings: 'lr' must be > 0, got {s['lr']!r}")
    if not isinstance(s["heldout"], int) or s["heldout"] < 0:
        raise AmuroError(f"--settings: 'heldout' must be an integer >= 0, got {s['heldout']!r}")
    if s["precision"] not in PRECISIONS:
        raise AmuroError(f"--settings: 'precision' must be one of {PRECISIONS}, "
                         f"got {s['precision']!r}")
    if s["parallel"] not in distributed.STRATEGIES:
        raise AmuroError(f"--settings: 'parallel' must be one of {distributed.STRATEGIES}, "
                         f"got {s['parallel']!r}")
    if not 0 <= s["warmup_ratio"] < 1:
        raise AmuroError(f"--settings: 'warmup_ratio' must be in [0, 1), got {s['warmup_ratio']}")
    return s


def encode_examples(records, task: TaskSpec, tokenizer, fmt: str, max_length: int,
                    eos: bool = True):
    """Token ids and completion-only labels per record; long prompts lose their left part.
    Without `eos`, the blocks that pack_sequences joins into few-shot sequences."""
    examples, n_truncated = [], 0
    end = [tokenizer.eos_token_id] if eos else []
    for rec in records:
        prompt, answer = render_example(task.template, fmt, rec, task.labels)
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a_ids = (tokenizer(answer, add_special_tokens=False)["input_ids"] + end)[:max_length]
        room = max_length - len(a_ids)
        if len(p_ids) > room:
            p_ids = p_ids[len(p_ids) - room:] if room > 0 else []
            n_truncated += 1
        examples.append((p_ids + a_ids, [IGNORE] * len(p_ids) + a_ids))
    return examples, n_truncated


def pack_sequences(blocks, pack: int, separator: list[int], eos_id: int, max_length: int):
    """Training sequences of up to `pack` blocks (one record each: prompt + answer) laid out
    exactly as a few-shot prompt, the blocks joined by the demonstration separator, with the
    loss on every answer and on the eos that ends the sequence. Each record is thus learned
    0-, 1-, ... (pack-1)-shot, so a fine-tuned model answers k-shot prompts as it answers
    0-shot ones, for the compute of 0-shot training. The blocks come in the epoch's random
    order, so the packs differ every epoch. A block that would pass max_length starts the
    next sequence."""
    sequences, ids, labels, n = [], [], [], 0
    for b_ids, b_labels in blocks:
        sep = separator if ids else []
        if ids and (n == pack or len(ids) + len(sep) + len(b_ids) + 1 > max_length):
            sequences.append((ids + [eos_id], labels + [eos_id]))
            ids, labels, n, sep = [], [], 0, []
        ids = ids + sep + b_ids
        labels = labels + [IGNORE] * len(sep) + b_labels
        n += 1
    if ids:
        sequences.append((ids + [eos_id], labels + [eos_id]))
    return sequences


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up to the peak rate, then linear decay to 0: the formula of transformers'
    get_linear_schedule_with_warmup, written here because importing transformers.optimization
    pulls in the trainer and peft (≈ 3 s a process)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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
        with torch.autocast(device.split(":")[0], dtype=dtype or torch.float32,
                            enabled=dtype is not None):
            total += float(completion_loss_sum(model, input_ids, mask, labels))
        count += int((labels[:, 1:] != IGNORE).sum())
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
    if args.gpus > 1 and "WORLD_SIZE" not in os.environ:  # one process per GPU
        distributed.relaunch_under_torchrun(args.gpus, "amuro.finetune",
                                            sys.argv[1:] if argv is None else list(argv))
    ranks = distributed.launched_ranks()
    clock = Stopwatch()
    clock.phases["import"] = round(time.perf_counter() - _T_START, 3)
    task = parse_task(args.task)
    chat = task.type == "chat"
    s = check_settings(parse_json_object("--settings", args.settings), chat=chat)
    if s["lora"] and s["parallel"] == "fsdp" and ranks.world > 1:
        raise AmuroError("--settings: 'lora' with parallel 'fsdp' is not supported; use 'ddp'")
    stop = StopRequest.install()
    set_threads(max(1, args.threads // ranks.world))
    seed_everything(s["seed"])

    records = read_jsonl(args.train)
    if chat:
        check_chat_records(records, args.train)
    else:
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

    distributed.start(ranks)
    device = ranks.device
    dtype = autocast_dtype(s["precision"], device.split(":")[0])
    tokenizer = load_tokenizer(args.checkpoint)
    model = load_model(args.checkpoint).to(device)
    clock.lap("load_model")
    if s["lora"]:
        model = apply_lora(model, s["lora"])
    if chat:
        tokenizer = chat_tokenizer(tokenizer, s["chat_template"], args.checkpoint)
        examples, n_truncated = encode_chat(records, tokenizer, s["max_length"])
        heldout_examples, _ = encode_chat(heldout_records, tokenizer, s["max_length"])
    else:
        # packed runs keep one block per record (no eos) and join them per batch
        examples, n_truncated = encode_examples(records, task, tokenizer, s["format"],
                                                s["max_length"] - 1, eos=s["pack"] == 1)
        heldout_examples, _ = encode_examples(heldout_records, task, tokenizer, s["format"],
                                              s["max_length"])
    checkpoint_digest = weights_digest(Path(args.checkpoint))
    # What defines the run: state saved by a run that differs in any of these is never resumed.
    store = StateStore(args.state_dir, fingerprint(
        settings={k: v for k, v in s.items() if k not in NOT_IN_FINGERPRINT},
        task=parse_json_object("--task", args.task), checkpoint=checkpoint_digest,
        train=sha256_file(args.train)), writer=ranks.main)

    model = distributed.wrap(model, ranks, s["parallel"])
    params = [p for p in model.parameters() if p.requires_grad]
    per_step = s["batch_size"] * (1 if chat else s["pack"])  # records per optimizer step
    separator = tokenizer(DEMO_SEPARATOR, add_special_tokens=False)["input_ids"]
    steps_per_epoch = math.ceil(len(examples) / per_step)
    total = steps_per_epoch * s["epochs"]
    optimizer = torch.optim.AdamW(params, lr=s["lr"], weight_decay=s["weight_decay"])
    schedule = linear_schedule(optimizer, math.ceil(s["warmup_ratio"] * total), total)
    run = TrainingRun(model, optimizer, schedule, store, ranks, torch.Generator().manual_seed(
        s["seed"]))
    run.resume()
    kind = f" (chat, {s['chat_template']} template)" if chat else ""
    where = f"{device}" + (f" x{ranks.world} {s['parallel']}" if ranks.world > 1 else "")
    if ranks.main:
        packed = f", {s['pack']} per sequence" if per_step > s["batch_size"] else ""
        print(f"[finetune] {task.name}{kind} on {args.checkpoint}: {len(examples)} examples"
              f"{packed} ({n_truncated} truncated), {s['epochs']} epochs x {steps_per_epoch} "
              f"steps, lr {s['lr']}, {where}" + (f" {dtype}" if dtype else " fp32"),
              file=sys.stderr)

    hold_at = fault_hold_step(task.name) if run.resumed_from is None else None
    saver = SaveSchedule(args.save_every_steps, args.save_every_minutes)
    model.train()
    bar = (progress(total, f"finetune {task.name}", unit="step", initial=run.step)
           if ranks.main else LogProgress(total, "", "step", every=0))
    for epoch in range(run.epoch, s["epochs"] + 1):
        order = run.epoch_order(epoch, len(examples))
        for index, start in enumerate(range(0, len(order), per_step)):
            if index < run.next_batch:  # done before the run was stopped
                continue
            batch = [examples[i] for i in order[start: start + per_step]]
            if per_step > s["batch_size"]:
                batch = pack_sequences(batch, s["pack"], separator, tokenizer.eos_token_id,
                                       s["max_length"])
            value = train_step(model, batch, params, optimizer, schedule, tokenizer.pad_token_id,
                               ranks, dtype)
            if not math.isfinite(value):
                raise AmuroError(f"fine-tuning loss became {value} at step {run.step + 1}; "
                                 "lower 'lr'")
            run.finished_batch(epoch, index + 1, (run.step + 1, epoch, value,
                                                  schedule.get_last_lr()[0]))
            bar.update(1)
            if ranks.main and (run.step % s["log_every"] == 0 or run.step == total):
                bar.set_postfix(loss=f"{value:.3f}")
                print(f"[finetune] step {run.step}/{total} epoch {epoch} loss {value:.4f}",
                      file=sys.stderr)
            if run.step == hold_at:
                hold(run, stop, ranks)
            stopping, due = distributed.any_of([stop.requested, saver.due(run.step)], ranks)
            if due or stopping:
                run.save()
            if stopping:
                bar.close()
                if ranks.main:
                    saved = (f"state saved in {args.state_dir}; a rerun resumes from it"
                             if args.state_dir else "no --state-dir, so nothing was saved")
                    print(f"[finetune] stopped by {stop.signal_name} after step {run.step}; "
                          f"{saved}", file=sys.stderr)
                distributed.stop(ranks)
                raise SystemExit(143)
        run.next_batch = 0
    bar.close()
    clock.lap("train")
    held = None
    if heldout_examples:
        held = heldout_loss(model, heldout_examples, s["batch_size"], tokenizer.pad_token_id,
                            device, dtype)
        if ranks.main:
            print(f"[finetune] held-out loss {held:.4f} on {len(heldout_examples)} examples",
                  file=sys.stderr)
        clock.lap("heldout")

    weights = full_weights(model, ranks, s["parallel"])
    if ranks.main:
        plain = unwrap(model, s["lora"])
        log_rows = run.log
        with atomic_dir(args.out) as staging:
            plain.save_pretrained(staging, state_dict=weights, safe_serialization=True)
            tokenizer.save_pretrained(staging)
            with (staging / "train_log.csv").open("w") as fh:
                fh.write("step,epoch,loss,lr\n")
                fh.writelines(f"{st},{ep},{lo:.6f},{lr:.6e}\n" for st, ep, lo, lr in log_rows)
            clock.lap("save")
            clock.phases["total"] = round(time.perf_counter() - _T_START, 3)
            clock.phases["cpu_s"] = process_cpu_seconds()
            info = {
                "task": task.name, "template": task.template, "settings": s,
                "checkpoint": str(args.checkpoint), "train_file": str(args.train),
                "checkpoint_sha256": checkpoint_digest,
                "device": device.split(":")[0], "processes": ranks.world,
                "precision": str(dtype or "fp32"), "resumed_from_step": run.resumed_from,
                "heldout_loss": held, "heldout_n": len(heldout_examples),
                "n_examples": len(examples), "n_truncated": n_truncated, "steps": total,
                "first_loss": log_rows[0][2], "last_epoch_mean_loss": _epoch_mean(log_rows),
                "timing": clock.phases,
            }
            if chat:  # the template is also in the saved tokenizer (chat_template.jinja)
                info.update(type="chat", chat_template=s["chat_template"],
                            n_label_tokens=sum(sum(lab != IGNORE for lab in labs)
                                               for _, labs in examples))
            write_json(staging / "settings.json", info)
        store.clear()  # the model is saved: the resumable state has served its purpose
    distributed.barrier(ranks)
    distributed.stop(ranks)


def train_step(model, batch, params, optimizer, schedule, pad_id: int, ranks, dtype) -> float:
    """One optimizer step on a global batch; returns its mean loss per completion token.

    Each process takes its share of the batch; its summed token loss is divided by the token
    count of the whole batch (times the number of processes, which DDP/FSDP average over), so
    the gradient is that of the global batch's mean loss.
    """
    share = distributed.shard(batch, ranks)
    device = ranks.device
    # A process left without examples (a last batch smaller than the process count) still
    # takes part in the gradient exchange, with one masked token.
    input_ids, mask, labels = (t.to(device) for t in
                               collate(share or [([pad_id], [IGNORE])], pad_id))
    n_local = int((labels[:, 1:] != IGNORE).sum())
    n_global = distributed.total(n_local, ranks)
    with torch.autocast(device.split(":")[0], dtype=dtype or torch.float32,
                        enabled=dtype is not None):
        loss_sum = completion_loss_sum(model, input_ids, mask, labels)
    (loss_sum * ranks.world / max(n_global, 1)).backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return distributed.total(loss_sum.item(), ranks) / max(n_global, 1)


def completion_loss_sum(model, input_ids, mask, labels):
    """Summed completion-token loss, projecting onto the vocabulary only where loss is taken.

    A classification example carries loss on 2 of its ~35 tokens: the output layer and its
    softmax over every position were ~15% of a fine-tuning step of the tiny model for
    nothing. Positions are the union over the batch (`logits_to_keep`, which transformers'
    causal LMs accept); a model without it gets every position's logits.
    """
    target = labels[:, 1:]
    keep = (target != IGNORE).any(dim=0).nonzero().squeeze(1)
    if keep.numel() == 0 or not accepts_logits_to_keep(model):  # (an empty share: train_step)
        return token_loss_sum(model(input_ids=input_ids, attention_mask=mask).logits.float(),
                              labels)
    logits = model(input_ids=input_ids, attention_mask=mask, logits_to_keep=keep).logits
    return torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)), target[:, keep].reshape(-1),
        ignore_index=IGNORE, reduction="sum")


def accepts_logits_to_keep(model) -> bool:
    """Whether the causal LM under any DDP/FSDP/LoRA wrapper takes `logits_to_keep`."""
    inner = getattr(model, "module", model)
    if hasattr(inner, "get_base_model"):  # peft
        inner = inner.get_base_model()
    return _forward_takes_logits_to_keep(type(inner))


@functools.cache
def _forward_takes_logits_to_keep(cls) -> bool:  # once per class, not once per step
    return "logits_to_keep" in inspect.signature(cls.forward).parameters


def token_loss_sum(logits, labels):
    """Summed cross-entropy of each labelled token given the tokens before it."""
    shift, target = logits[:, :-1], labels[:, 1:]
    return torch.nn.functional.cross_entropy(shift.reshape(-1, shift.size(-1)),
                                             target.reshape(-1), ignore_index=IGNORE,
                                             reduction="sum")


def full_weights(model, ranks, strategy: str) -> dict | None:
    """The whole model's weights on the main process, gathered from FSDP shards (None when
    the main process holds the whole model: save_pretrained reads it directly)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if ranks.world == 1 or strategy != "fsdp":
        return None
    weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                   cpu_offload=True))
    # The gathered dict holds tied weights (lm_head = embeddings) twice; save them once, as
    # save_pretrained does for an unsharded model.
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    return {k: v for k, v in weights.items() if k not in tied}


def unwrap(model, lora):
    """The plain Hugging Face model to save: out of DDP, with LoRA adapters merged."""
    model = getattr(model, "module", model)
    if lora:
        model = model.merge_and_unload()  # downstream steps load a plain model
    return model.to("cpu")


def parse_task(text: str) -> TaskSpec | ChatTask:
    d = parse_json_object("--task", text)
    if "name" not in d:
        raise AmuroError("--task: field 'name' missing")
    check_json_types("--task", d, TASK_TYPES, required=("name", "type"))
    if d.get("type") == "chat":  # conversations: no prompt template or label words
        return ChatTask(name=d["name"], template=d.get("template", "chat"))
    check_json_types("--task", d, {}, required=("template",))
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
