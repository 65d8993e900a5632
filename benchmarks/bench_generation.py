"""Greedy generation: batched with left padding vs one prompt at a time, and the newline stop.

    python benchmarks/bench_generation.py [--checkpoint DIR] [--prompts 64] [--batch-size 32]

Prints wall times and speed ratios measured in this process against the batch-1 baseline, and
checks that every variant produced identical answers. Without --checkpoint it uses a random
OLMo model of the default study's shape (speed, not quality, is measured).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from amuro import scoring
from amuro.modeling import load_model, load_tokenizer, set_threads


def random_checkpoint(folder: Path) -> Path:
    from transformers import OlmoConfig, OlmoForCausalLM

    from amuro.tokenizer import train_tokenizer

    text = ["Alice travelled from Paris to Rome on Monday.", "Bob gave Carol a book."] * 200
    tok = train_tokenizer(text, 600, ["yes", "no"])
    cfg = OlmoConfig(vocab_size=len(tok), hidden_size=128, num_hidden_layers=4,
                     num_attention_heads=2, intermediate_size=256, max_position_embeddings=512,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    OlmoForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    set_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.checkpoint) if args.checkpoint else random_checkpoint(Path(tmp))
        model, tok = load_model(path), load_tokenizer(path)
        prompts = [tok(f"News from Rome: Alice met Bob {i} times.\nSummary:").input_ids
                   for i in range(args.prompts)]
        n = args.max_new_tokens
        t1, one = timed(lambda: [scoring.generate_greedy(model, tok, [p], n, 1)[0]
                                 for p in prompts])
        tb, batched = timed(lambda: scoring.generate_greedy(model, tok, prompts, n,
                                                            args.batch_size))
        stop = scoring._line_done
        # never stops at a newline: every row decodes until eos or max_new_tokens
        scoring._line_done = lambda tokens, new, started: torch.zeros(len(new), dtype=torch.bool)
        try:
            tn, no_stop = timed(lambda: scoring.generate_greedy(model, tok, prompts, n,
                                                                args.batch_size))
        finally:
            scoring._line_done = stop
    same = one == batched == no_stop
    print(f"{args.prompts} prompts x {n} new tokens, {args.threads} thread(s)")
    print(f"batch 1:                         {t1:7.2f} s  (baseline)")
    print(f"batch {args.batch_size}, no newline stop:     {tn:7.2f} s  {t1 / tn:5.1f}x")
    print(f"batch {args.batch_size}, newline stop:        {tb:7.2f} s  {t1 / tb:5.1f}x")
    print(f"identical outputs: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
