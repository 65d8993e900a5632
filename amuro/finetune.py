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
the role markers are masked. The template is saved with the tokenizer (`chat_template.jinja`).
AdamW with a linear schedule and warm-up ratio. Writes the model in Hugging Face format
(safetensors), the per-step loss log (`train_log.csv`) and the exact settings (`settings.json`)
into DIR.
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
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

# Instruction tuning (paper §3.2: TULU v2, 5 epochs, batch 8, lr 2e-6; reference.md §1).
CHAT_DEFAULTS = {**DEFAULTS, "epochs": 5, "chat_template": "tulu"}
CHAT_TEMPLATES = ("tulu", "tokenizer")
CHAT_ROLES = ("system", "user", "assistant")
# open-instruct's Tulu format (allenai/open-instruct, `tulu` chat template): every assistant turn
# ends with EOS; the last one has no newline after it.
TULU_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% if not loop.last %}{{ '<|assistant|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% else %}{{ '<|assistant|>\\n' + message['content'] + eos_token }}{% endif %}"
    "{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
    "{% endfor %}"
)


@dataclass(frozen=True)
class ChatTask:
    """An instruction-tuning task: records are conversations, not prompt/target pairs."""

    name: str
    template: str = "chat"
    type: str = "chat"


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


def check_settings(settings: dict, chat: bool = False) -> dict:
    """Settings over the defaults (CHAT_DEFAULTS for instruction tuning), validated.

    `chat_template` is accepted for every task, so one settings block can serve both kinds of
    run; supervised fine-tuning ignores it.
    """
    known = set(DEFAULTS) | {"chat_template"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise AmuroError(f"--settings: unknown keys {unknown}; expected some of {sorted(known)}")
    s = {**(CHAT_DEFAULTS if chat else DEFAULTS), **settings}
    if "chat_template" in s and s["chat_template"] not in CHAT_TEMPLATES:
        raise AmuroError(f"--settings: 'chat_template' must be one of {CHAT_TEMPLATES}, "
                         f"got {s['chat_template']!r}")
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


def check_chat_records(records: list[dict], path: str) -> None:
    """Every record a conversation with known roles, text in every turn and an assistant turn."""
    for i, rec in enumerate(records, 1):
        where = f"{path}: record {i}" + (f" (id {rec['id']!r})" if "id" in rec else "")
        messages = rec.get("messages")
        if not isinstance(messages, list) or not messages:
            raise AmuroError(f"{where}: field 'messages' must be a non-empty list of "
                             "{role, content} objects")
        for j, m in enumerate(messages):
            field = f"messages[{j}]"
            if not isinstance(m, dict):
                raise AmuroError(f"{where}: field '{field}' is not a {{role, content}} object")
            if m.get("role") not in CHAT_ROLES:
                raise AmuroError(f"{where}: field '{field}.role' is {m.get('role')!r}, "
                                 f"expected one of {list(CHAT_ROLES)}")
            content = m.get("content")
            if not isinstance(content, str) or not content.strip():
                raise AmuroError(f"{where}: field '{field}.content' is empty or not text")
        if not any(m["role"] == "assistant" for m in messages):
            raise AmuroError(f"{where}: field 'messages' has no assistant turn (nothing to learn)")


def chat_tokenizer(tokenizer, chat_template: str, checkpoint: str):
    """Install the chat template on the tokenizer (it is saved with the fine-tuned model)."""
    if chat_template == "tulu":
        if tokenizer.eos_token is None:
            raise AmuroError(f"{checkpoint}: the tokenizer has no EOS token, which the Tulu "
                             "template puts after every assistant turn")
        tokenizer.chat_template = TULU_CHAT_TEMPLATE
    elif not getattr(tokenizer, "chat_template", None):
        raise AmuroError(f"--settings: chat_template 'tokenizer' but the tokenizer of "
                         f"{checkpoint} has no chat template; use 'tulu'")
    if not tokenizer.is_fast:
        raise AmuroError(f"{checkpoint}: instruction tuning needs a fast tokenizer "
                         "(tokenizer.json), for token offsets")
    return tokenizer


def _render(tokenizer, messages, generation_prompt: bool = False) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=generation_prompt)
    except Exception as err:  # jinja errors: the template refuses this conversation
        raise AmuroError(f"the chat template failed: {' '.join(str(err).split())}") from None


def assistant_spans(tokenizer, messages) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn in it.

    A turn's span is what the template adds after the generation prompt up to the end of that
    turn (with the Tulu template: the content and EOS, not the newline that follows), found by
    rendering each prefix of the conversation (as open-instruct locates the turns of Tulu data).
    """
    text = _render(tokenizer, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start_text = _render(tokenizer, messages[:i], True) if i else ""
        end_text = _render(tokenizer, messages[: i + 1])
        if not (end_text.startswith(start_text) and text.startswith(end_text)):
            raise AmuroError("the chat template renders a conversation differently from its "
                             "prefixes (assistant turns cannot be located); use 'tulu'")
        spans.append((len(start_text), len(end_text)))
    return text, spans


def encode_chat(records, tokenizer, max_length: int):
    """Token ids and labels per conversation: labels only on assistant turns.

    Tokens after the last assistant turn are dropped (they carry no loss). A conversation that
    is too long loses tokens from the left, never from its last assistant turn; a last turn
    longer than max_length keeps its first max_length tokens.
    """
    rendered = []
    for rec in records:
        try:
            rendered.append(assistant_spans(tokenizer, rec["messages"]))
        except AmuroError as err:
            raise AmuroError(f"record id {rec.get('id', '?')!r}: {err}") from None
    examples, n_truncated = [], 0
    for first in range(0, len(records), 512):  # batches: the Rust tokenizer runs in parallel
        chunk = rendered[first: first + 512]
        enc = tokenizer([text for text, _ in chunk], add_special_tokens=False,
                        return_offsets_mapping=True)
        for rec, (_, spans), ids, offsets in zip(records[first: first + 512], chunk,
                                                 enc["input_ids"], enc["offset_mapping"],
                                                 strict=True):
            ids, labels, truncated = _label_turns(rec, ids, offsets, spans, max_length)
            examples.append((ids, labels))
            n_truncated += truncated
    return examples, n_truncated


def _label_turns(rec, ids, offsets, spans, max_length: int):
    labels, last_start, last_end, k = [IGNORE] * len(ids), None, 0, 0
    for t, (start, end) in enumerate(offsets):  # offsets ascend
        while k < len(spans) and spans[k][1] <= start:
            k += 1
        if k == len(spans):
            break
        # A token that overlaps a turn is learned: a merge across the turn's start (" yes"
        # after a prompt ending in a space) still carries the answer.
        if end > spans[k][0]:
            labels[t], last_end = ids[t], t + 1
            if k == len(spans) - 1 and last_start is None:
                last_start = t
    if last_start is None:
        raise AmuroError(f"record id {rec.get('id', '?')!r}: no token of its assistant turns "
                         "survives tokenization")
    ids, labels = list(ids[:last_end]), labels[:last_end]
    if len(ids) <= max_length:
        return ids, labels, False
    begin = min(len(ids) - max_length, last_start)
    return ids[begin: begin + max_length], labels[begin: begin + max_length], True


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
    chat = task.type == "chat"
    s = check_settings(parse_json_object("--settings", args.settings), chat=chat)
    set_threads(args.threads)
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

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = autocast_dtype(s["precision"], device)
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
        examples, n_truncated = encode_examples(records, task, tokenizer, s["format"],
                                                s["max_length"])
        heldout_examples, _ = encode_examples(heldout_records, task, tokenizer, s["format"],
                                              s["max_length"])

    steps_per_epoch = math.ceil(len(examples) / s["batch_size"])
    total = steps_per_epoch * s["epochs"]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=s["lr"], weight_decay=s["weight_decay"])
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(s["warmup_ratio"] * total),
                                               total)
    generator = torch.Generator().manual_seed(s["seed"])
    kind = f" (chat, {s['chat_template']} template)" if chat else ""
    print(f"[finetune] {task.name}{kind} on {args.checkpoint}: {len(examples)} examples "
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
        info = {
            "task": task.name, "template": task.template, "settings": s,
            "checkpoint": str(args.checkpoint), "train_file": str(args.train),
            "checkpoint_sha256": weights_digest(Path(args.checkpoint)),
            "device": device, "precision": str(dtype or "fp32"),
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


def parse_task(text: str) -> TaskSpec | ChatTask:
    d = parse_json_object("--task", text)
    if "name" not in d:
        raise AmuroError("--task: field 'name' missing")
    if d.get("type") == "chat":  # conversations: no prompt template or label words
        return ChatTask(name=d["name"], template=d.get("template", "chat"))
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
