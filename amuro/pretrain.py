"""Pre-train a tiny decoder on the world's corpus, saving checkpoints like a hub revision series.

    python -m amuro.pretrain --corpus results/world/corpus.txt --out-dir results/checkpoints/tiny \
        --save-steps 0 150 400 800 1800 --model-config '{"model_type": "olmo", ...}' \
        --train '{"batch_size": 16, "seq_len": 256, "lr": 2e-3, ...}' --whole-words yes no ...

Writes `<out-dir>/step<N>/` (config.json, model.safetensors, tokenizer) for each saved step and
`<out-dir>/manifest.json` (step, tokens seen, sha256 of the weights, settings).
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForCausalLM,
    get_cosine_schedule_with_warmup,  # noqa: E402
)

from amuro.errors import AmuroError, run_cli  # noqa: E402
from amuro.io import (  # noqa: E402
    atomic_dir,
    parse_json_object,
    read_text,
    sha256_file,
    write_json,
)
from amuro.make_world import DOC_SEPARATOR  # noqa: E402
from amuro.modeling import (  # noqa: E402
    Stopwatch,
    process_cpu_seconds,
    seed_everything,
    set_threads,
)
from amuro.progress import progress  # noqa: E402
from amuro.tokenizer import train_tokenizer  # noqa: E402

TRAIN_DEFAULTS = {
    "batch_size": 16, "seq_len": 256, "lr": 2e-3, "weight_decay": 0.1, "warmup_steps": 50,
    "vocab_size": 2048, "precision": "fp32", "log_every": 50,
}


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m amuro.pretrain", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--save-steps", type=int, nargs="+", required=True)
    ap.add_argument("--model-config", required=True, help="JSON: model_type and its settings")
    ap.add_argument("--train", default="{}", help=f"JSON, defaults: {TRAIN_DEFAULTS}")
    ap.add_argument("--whole-words", nargs="*", default=[],
                    help="words the tokenizer must keep whole (label words)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timing", help="output: JSON of time per phase")
    return ap.parse_args(argv)


def token_blocks(docs: list[str], tokenizer, seq_len: int) -> torch.Tensor:
    """Concatenate documents separated by EOS and cut into fixed-length blocks."""
    ids: list[int] = []
    for enc in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(tokenizer.eos_token_id)
    n = len(ids) // seq_len
    if n == 0:
        raise AmuroError(f"corpus has {len(ids)} tokens, fewer than one block of {seq_len}")
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


def build_model(model_config: dict, tokenizer):
    cfg = dict(model_config)
    model_type = cfg.pop("model_type", "olmo")
    try:
        config = AutoConfig.for_model(
            model_type, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=cfg.pop("tie_word_embeddings", True), **cfg,
        )
    except ValueError as err:
        raise AmuroError(f"--model-config: model_type {model_type!r}: {err}") from None
    return AutoModelForCausalLM.from_config(config)


def main(argv=None):
    args = parse_args(argv)
    clock = Stopwatch()
    clock.phases["import"] = round(time.perf_counter() - _T_START, 3)
    train = {**TRAIN_DEFAULTS, **parse_json_object("--train", args.train)}
    model_config = parse_json_object("--model-config", args.model_config)
    save_steps = sorted(set(args.save_steps))
    if save_steps[0] < 0:
        raise AmuroError("--save-steps: steps must be >= 0")
    set_threads(args.threads)
    seed_everything(args.seed)

    if not Path(args.corpus).is_file():
        raise AmuroError(f"{args.corpus}: file not found (the pre-training corpus)")
    docs = read_text(args.corpus).split(DOC_SEPARATOR)
    tokenizer = train_tokenizer(docs, train["vocab_size"], args.whole_words)
    blocks = token_blocks(docs, tokenizer, train["seq_len"])
    model = build_model(model_config, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[pretrain] {model.config.model_type}: {n_params / 1e6:.2f}M parameters, "
          f"vocab {len(tokenizer)}, {blocks.numel()} corpus tokens", file=sys.stderr)
    clock.lap("setup")

    total = save_steps[-1]
    optimizer = torch.optim.AdamW(model.parameters(), lr=train["lr"],
                                  weight_decay=train["weight_decay"], betas=(0.9, 0.95))
    schedule = get_cosine_schedule_with_warmup(optimizer, train["warmup_steps"], max(total, 1))
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(blocks), generator=generator)
    autocast = train["precision"] == "bf16"
    tokens_per_step = train["batch_size"] * train["seq_len"]
    out_dir = Path(args.out_dir)
    checkpoints = []

    with atomic_dir(out_dir) as staging:

        def save(step: int) -> None:
            folder = staging / f"step{step}"
            model.save_pretrained(folder, safe_serialization=True)
            tokenizer.save_pretrained(folder)
            weights = folder / "model.safetensors"
            checkpoints.append({"step": step, "tokens": step * tokens_per_step,
                                "sha256": sha256_file(weights), "path": f"step{step}"})

        model.train()
        cursor = 0
        if 0 in save_steps:
            save(0)
        bar = progress(total, "pretrain", unit="step")
        for step in range(1, total + 1):
            idx = order[cursor: cursor + train["batch_size"]]
            cursor += train["batch_size"]
            if cursor >= len(order):  # next epoch, reshuffled
                order = torch.randperm(len(blocks), generator=generator)
                cursor = 0
            batch = blocks[idx]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            if not math.isfinite(loss.item()):
                raise AmuroError(f"pre-training loss became {loss.item()} at step {step}; "
                                 "lower --train lr")
            if step % train["log_every"] == 0 or step == total:
                bar.set_postfix(loss=f"{loss.item():.3f}")
                print(f"[pretrain] step {step}/{total} loss {loss.item():.4f} "
                      f"lr {schedule.get_last_lr()[0]:.2e}", file=sys.stderr)
            bar.update(1)
            if step in save_steps:
                save(step)
        bar.close()
        clock.lap("train")
        write_json(staging / "manifest.json", {
            "checkpoints": checkpoints, "model_config": model_config, "train": train,
            "seed": args.seed, "parameters": n_params, "tokens_per_step": tokens_per_step,
            "tokenizer_vocab": len(tokenizer), "corpus": str(args.corpus),
        })
    if args.timing:
        clock.lap("save")
        clock.phases["total"] = round(time.perf_counter() - _T_START, 3)
        clock.phases["cpu_s"] = process_cpu_seconds()
        write_json(args.timing, clock.phases)


if __name__ == "__main__":
    run_cli(main)
