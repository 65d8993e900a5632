"""Throughput of amuro's own fine-tuning step, greedy decoder and scorers on an OLMo-1B-shaped
model with random weights: the measured rates behind scripts/cost_estimate.py.

    PYTHONPATH=. python3 benchmarks/gpu_bench.py --out gpu.json             # one GPU, ≈ 5 min
    PYTHONPATH=. python3 benchmarks/gpu_bench.py --tiny --device cpu --budget-s 2 --out t.json

Needs torch, transformers and numpy only (no hub, no tokenizer download, no polars): the model
is built from its config, inputs are random token ids with realistic lengths (fixed seed).

What runs, each through the product's code (amuro.finetune / amuro.scoring):
- `sft_*`: `amuro.finetune.train_step` as `finetune.main` runs it: fp32 weights under bf16
  autocast (`autocast_dtype("auto")`), completion-only loss, gradient clipping, the linear
  schedule; batch 8. Variants: XSum-like and classification-like lengths, random batches (as
  finetune.main draws them) or length-grouped ones, fused or default (foreach) AdamW.
- `generate_*`: `amuro.scoring.generate_greedy`, batch 32, 60 new tokens, prompts ~450 tokens
  (0-shot XSum) and ~1,900 (4-shot XSum/CNN after truncation to the 2,048 context).
- `classify_*`: `amuro.scoring.classify` (one forward pass per prompt) at XSum-like and at
  MNLI-like lengths: the prefill cost as a line in prompt length.
- `mc_*`: `amuro.scoring.loglik_choices`, 4 choices, context ~100 tokens, choices ~10.
Scoring batches hold neighbours in length, as amuro.scoring sorts a set longest-first before
cutting it into batches. Scoring runs in fp32 (what `amuro.evaluate` does today: it loads
models in fp32 and uses no autocast) and in bf16 weights (what it would cost if it did).

Every timed loop runs warm-up units first (a few, and a quarter of its share of --budget-s;
excluded), synchronises the device around the timer and repeats units until its share is
used (at least a few units); each result keeps the spread of one unit's seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from amuro.chat import IGNORE
from amuro.distributed import Dist
from amuro.finetune import autocast_dtype, linear_schedule, train_step
from amuro.scoring import classify, generate_greedy, loglik_choices

# allenai/OLMo-1B-hf's architecture (reference.md §6): N ≈ 1.18B with tied embeddings.
OLMO_1B = {"vocab_size": 50304, "hidden_size": 2048, "num_hidden_layers": 16,
           "num_attention_heads": 16, "intermediate_size": 8192,
           "max_position_embeddings": 2048, "tie_word_embeddings": True,
           "pad_token_id": 1, "eos_token_id": 50279}
# For tests on a CPU: the same code paths in seconds.
TINY = {"vocab_size": 512, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 128, "max_position_embeddings": 256, "tie_word_embeddings": True,
        "pad_token_id": 1, "eos_token_id": 511}
# Dense peak FLOP/s by GPU name (vendor datasheets, SXM parts): (bf16 tensor core, plain fp32).
PEAK_FLOPS = {"H200": (989e12, 67e12), "H100": (989e12, 67e12), "A100": (312e12, 19.5e12)}


@dataclass(frozen=True)
class OneProcess(Dist):
    """amuro's single-process rank, on the device asked for (Dist picks cuda when present)."""

    where: str = "cpu"

    @property
    def device(self) -> str:
        return self.where


class WordTokenizer:
    """Stands in for the checkpoint's tokenizer in amuro's decoder: token i is the word "w{i}".
    No token is blank or holds a newline and there is no EOS, so no row ends early: every row
    decodes max_new_tokens (the cost estimate's worst case), and words count tokens."""

    eos_token_id = None

    def __init__(self, vocab_size: int, pad_id: int):
        self.vocab_size, self.pad_token_id = vocab_size, pad_id

    def get_vocab(self) -> dict[str, int]:
        return {f"w{i}": i for i in range(self.vocab_size)}

    def batch_decode(self, seqs, skip_special_tokens: bool = False) -> list[str]:
        return [" ".join(f"w{i}" for i in seq) for seq in seqs]


class Bench:
    def __init__(self, args, cfg: dict):
        self.args, self.cfg = args, cfg
        self.device = args.device
        self.scale = cfg["max_position_embeddings"] / 2048  # tiny: lengths shrink with context
        self.rng = np.random.default_rng(args.seed)
        self.cuda = self.device.startswith("cuda")

    # --- inputs -------------------------------------------------------------------------
    def lengths(self, n: int, median: float, sigma: float, lo: int, hi: int) -> list[int]:
        """Log-normal lengths (median, spread), scaled to the model's context and clipped."""
        raw = self.rng.lognormal(math.log(median * self.scale), sigma, n)
        return [int(v) for v in np.clip(np.round(raw), max(1, lo * self.scale),
                                         max(2, hi * self.scale))]

    def ids(self, n: int) -> list[int]:
        return self.rng.integers(2, self.cfg["vocab_size"] - 1, n).tolist()

    def scoring_batches(self, batch_size: int, dist: tuple, cap: int | None = None):
        """Endless batches of prompt lengths as amuro.scoring cuts a set: sorted longest
        first over a pool of 64 batches (so a batch holds neighbours in length and carries
        little padding), widest batch first (the allocator sees the largest shapes first)."""
        pool = sorted(self.lengths(64 * batch_size, *dist), reverse=True)
        pool = [min(n, cap) if cap else n for n in pool]
        while True:
            for i in range(0, len(pool), batch_size):
                yield pool[i:i + batch_size]

    def sft_examples(self, n: int, prompt: tuple, answer: tuple) -> list[tuple]:
        """(ids, labels) as finetune.encode_examples makes them: loss on answer + EOS only."""
        eos = self.cfg["eos_token_id"]
        out = []
        for p, a in zip(self.lengths(n, *prompt), self.lengths(n, *answer), strict=True):
            a_ids = self.ids(a) + [eos]
            out.append((self.ids(p) + a_ids, [IGNORE] * p + a_ids))
        return out

    # --- timing -------------------------------------------------------------------------
    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def timed(self, unit, warmup: int, share_s: float, min_units: int) -> tuple[int, float, dict]:
        """Run `unit` (returns counts) untimed `warmup` times and for a quarter of share_s
        (new shapes, allocator growth and kernel loading settle there), then timed until
        share_s has passed and at least min_units ran. Returns (units, seconds, summed
        counts, with the spread of one unit's seconds under "unit_s")."""
        start, n = time.perf_counter(), 0
        while n < warmup or time.perf_counter() - start < share_s / 4:
            unit()
            n += 1
        self.sync()
        start, n, totals, each = time.perf_counter(), 0, {}, []
        while n < min_units or time.perf_counter() - start < share_s:
            began = time.perf_counter()
            for key, value in unit().items():
                totals[key] = totals.get(key, 0) + value
            n += 1
            self.sync()
            each.append(time.perf_counter() - began)
        seconds = time.perf_counter() - start
        totals["unit_s"] = {"min": min(each), "median": float(np.median(each)), "max": max(each)}
        return n, seconds, totals


def peak_flops(name: str) -> tuple[float | None, float | None, str | None]:
    for key, (bf16, fp32) in PEAK_FLOPS.items():
        if key in name:
            return bf16, fp32, key
    return None, None, None


def build_model(cfg: dict, device: str, seed: int):
    from transformers import OlmoConfig, OlmoForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):  # initialised where it runs: no 4.7 GB copy from the CPU
        model = OlmoForCausalLM(OlmoConfig(**cfg))
    return model


def run_sft(b: Bench, model, share_s: float, *, prompt, answer, order: str, fused: bool):
    """finetune.main's optimizer step on batches of 8 (its batch)."""
    batch_size = 8
    params = [p for p in model.parameters() if p.requires_grad]
    fused = fused and b.cuda
    optimizer = torch.optim.AdamW(params, lr=2e-6, weight_decay=0.0,
                                  **({"fused": True} if fused else {}))
    schedule = linear_schedule(optimizer, 10, 10**6)
    dtype = autocast_dtype("auto", b.device.split(":")[0])
    pool = b.sft_examples(64 * batch_size, prompt, answer)
    if order == "length_grouped":  # neighbours in length share a batch; batches shuffled
        pool.sort(key=lambda ex: len(ex[0]))
        batches = [pool[i:i + batch_size] for i in range(0, len(pool), batch_size)]
        b.rng.shuffle(batches)
    else:  # finetune.main: a random permutation of the examples, cut into batches
        perm = b.rng.permutation(len(pool))
        batches = [[pool[j] for j in perm[i:i + batch_size]]
                   for i in range(0, len(perm), batch_size)]
    widest = max(range(len(batches)), key=lambda i: max(len(x) for x, _ in batches[i]))
    batches = batches[widest:] + batches[:widest]  # warm-up sees the largest shapes first
    ranks, state = OneProcess(where=b.device), {"i": 0, "loss": 0.0}
    model.train()

    def unit():
        batch = batches[state["i"] % len(batches)]
        state["i"] += 1
        state["loss"] = train_step(model, batch, params, optimizer, schedule,
                                   b.cfg["pad_token_id"], ranks, dtype)
        real = sum(len(ids) for ids, _ in batch)
        return {"tokens": real, "padded_tokens": len(batch) * max(len(i) for i, _ in batch)}

    steps, seconds, t = b.timed(unit, warmup=3, share_s=share_s, min_units=5)
    settings = {"batch_size": batch_size, "order": order, "precision": str(dtype or "fp32"),
                "weights": "fp32 (autocast)", "optimizer": "AdamW fused" if fused else
                "AdamW (torch default)", "prompt_tokens_lognormal": list(prompt),
                "answer_tokens_lognormal": list(answer), "warmup_steps": 3}
    return settings, {
        "steps": steps, "seconds": seconds, "s_per_step": seconds / steps,
        "tokens": t["tokens"], "tokens_per_step": t["tokens"] / steps,
        "tokens_per_s": t["tokens"] / seconds, "padded_tokens_per_s": t["padded_tokens"] / seconds,
        "padding_share": 1 - t["tokens"] / t["padded_tokens"], "last_loss": state["loss"],
        "step_s": t["unit_s"]}


def run_generate(b: Bench, model, tok, share_s: float, *, prompt, new_tokens: int):
    batch_size = 32
    lengths = b.scoring_batches(batch_size, prompt, b.cfg["max_position_embeddings"] - new_tokens)

    def unit():
        prompts = [b.ids(n) for n in next(lengths)]
        texts = generate_greedy(model, tok, prompts, new_tokens, batch_size)
        return {"items": len(prompts), "prompt_tokens": sum(map(len, prompts)),
                "new_tokens": sum(len(t.split()) for t in texts)}

    batches, seconds, t = b.timed(unit, warmup=1, share_s=share_s, min_units=2)
    settings = {"batch_size": batch_size, "max_new_tokens": new_tokens,
                "prompt_tokens_lognormal": list(prompt), "warmup_batches": 1,
                "rows_end_early": False}
    return settings, {
        "batches": batches, "items": t["items"], "seconds": seconds,
        "s_per_item": seconds / t["items"], "new_tokens": t["new_tokens"],
        "new_tokens_per_s": t["new_tokens"] / seconds,
        "new_tokens_per_row": t["new_tokens"] / t["items"],
        "mean_prompt_tokens": t["prompt_tokens"] / t["items"], "batch_s": t["unit_s"]}


def run_classify(b: Bench, model, tok, share_s: float, *, prompt):
    batch_size = 32

    lengths = b.scoring_batches(batch_size, prompt)

    def unit():
        prompts = [b.ids(n) for n in next(lengths)]
        classify(model, tok, prompts, [5, 6, 7], batch_size)
        return {"items": len(prompts), "prompt_tokens": sum(map(len, prompts))}

    batches, seconds, t = b.timed(unit, warmup=1, share_s=share_s, min_units=3)
    settings = {"batch_size": batch_size, "prompt_tokens_lognormal": list(prompt),
                "labels": 3, "warmup_batches": 1}
    return settings, {
        "batches": batches, "items": t["items"], "seconds": seconds,
        "s_per_item": seconds / t["items"], "prompt_tokens_per_s": t["prompt_tokens"] / seconds,
        "mean_prompt_tokens": t["prompt_tokens"] / t["items"], "batch_s": t["unit_s"]}


def run_mc(b: Bench, model, tok, share_s: float, *, context, choice):
    batch_size, n_choices = 32, 4

    lengths = b.scoring_batches(batch_size, context)

    def unit():
        ctx = [b.ids(n) for n in next(lengths)]
        choices = [[b.ids(n) for n in b.lengths(n_choices, *choice)] for _ in ctx]
        loglik_choices(model, tok, ctx, choices, batch_size)
        return {"items": len(ctx), "context_tokens": sum(map(len, ctx)),
                "choice_tokens": sum(len(c) for cs in choices for c in cs)}

    batches, seconds, t = b.timed(unit, warmup=1, share_s=share_s, min_units=3)
    settings = {"batch_size": batch_size, "choices": n_choices,
                "context_tokens_lognormal": list(context),
                "choice_tokens_lognormal": list(choice), "warmup_batches": 1}
    return settings, {
        "batches": batches, "items": t["items"], "seconds": seconds,
        "s_per_item": seconds / t["items"], "items_per_s": t["items"] / seconds,
        "mean_context_tokens": t["context_tokens"] / t["items"],
        "mean_choice_tokens": t["choice_tokens"] / (t["items"] * n_choices),
        "batch_s": t["unit_s"]}


# Lengths as (median, log-normal sigma, min, max) in tokens at a 2,048 context.
XSUM_PROMPT, XSUM_SUMMARY = (400, 0.5, 64, 1900), (24, 0.35, 4, 60)
SHORT_PROMPT, LABEL = (70, 0.35, 16, 400), (1, 0.0, 1, 1)
LONG_PROMPT = (1900, 0.03, 1700, 1988)
MC_CONTEXT, MC_CHOICE = (95, 0.3, 20, 400), (9, 0.4, 1, 40)
# (name, what, keyword arguments of run_sft). They run first (fp32 weights), then scoring
# in fp32, then the model is cast to bf16 for the bf16 scoring.
SFT_CASES = [
    ("sft_xsum", "XSum-like SFT, random batches (finetune.main's order), fused AdamW",
     dict(prompt=XSUM_PROMPT, answer=XSUM_SUMMARY, order="random", fused=True)),
    ("sft_xsum_grouped", "XSum-like SFT, length-grouped batches, fused AdamW",
     dict(prompt=XSUM_PROMPT, answer=XSUM_SUMMARY, order="length_grouped", fused=True)),
    ("sft_xsum_foreach", "XSum-like SFT, random batches, torch's default AdamW (what "
     "finetune.main builds today)",
     dict(prompt=XSUM_PROMPT, answer=XSUM_SUMMARY, order="random", fused=False)),
    ("sft_short", "classification-like SFT (MNLI/PAWS lengths), random batches, fused AdamW",
     dict(prompt=SHORT_PROMPT, answer=LABEL, order="random", fused=True)),
]


def score_cases(dtype: str, new_tokens: int):
    """(name, what, runner, weight in the budget, keyword arguments) per scoring run."""
    return [
        (f"generate_{dtype}_short", "greedy generation, 0-shot XSum-like prompts",
         run_generate, 1.5, dict(prompt=XSUM_PROMPT, new_tokens=new_tokens)),
        (f"generate_{dtype}_long", "greedy generation, 4-shot-length prompts (context-capped)",
         run_generate, 1.5, dict(prompt=LONG_PROMPT, new_tokens=new_tokens)),
        (f"classify_{dtype}", "first-token classification (prefill only), XSum-like lengths",
         run_classify, 0.5, dict(prompt=XSUM_PROMPT)),
        (f"classify_{dtype}_short", "first-token classification, MNLI/PAWS-like lengths",
         run_classify, 0.5, dict(prompt=SHORT_PROMPT)),
        (f"mc_{dtype}", "multiple-choice log-likelihood, 4 choices",
         run_mc, 0.5, dict(context=MC_CONTEXT, choice=MC_CHOICE)),
    ]


def environment(args, cfg: dict, model) -> dict:
    import transformers

    gpu = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else None
    bf16, fp32, matched = peak_flops(gpu or "")
    return {
        "schema": 1, "tiny": args.tiny, "device": args.device.split(":")[0], "gpu_name": gpu,
        "gpu_count": torch.cuda.device_count() if gpu else 0,
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "transformers": transformers.__version__, "python": platform.python_version(),
        "seed": args.seed, "budget_s": args.budget_s, "cpu_threads": torch.get_num_threads(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,  # amuro leaves it off: true fp32
        "warmup": "each loop's warm-up units, then until a quarter of its share has passed",
        "model": {"class": type(model).__name__, "config": cfg,
                  "attn_implementation": model.config._attn_implementation,
                  "n_params": sum(p.numel() for p in model.parameters())},
        "peak_flops": {"bf16": bf16, "fp32": fp32, "table_entry": matched,
                       "note": "dense, vendor datasheet (SXM); null: GPU not in the table"},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "measurements": {}, "errors": {},
        "skipped": [],
    }


def write(path: Path, report: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="a tiny OLMo config (tests, CPU)")
    ap.add_argument("--budget-s", type=float, default=240.0,
                    help="seconds of timed loops, shared by the measurements")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (CPU runs only)")
    ap.add_argument("--only", nargs="*", help="run only these measurements (names)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if not args.device.startswith("cuda"):
        torch.set_num_threads(args.threads)
    elif not torch.cuda.is_available():
        ap.error("--device cuda but torch sees no GPU")
    cfg = TINY if args.tiny else OLMO_1B
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    b = Bench(args, cfg)
    model = build_model(cfg, args.device, args.seed)
    report = environment(args, cfg, model)
    report["model"]["build_s"] = round(time.perf_counter() - t0, 2)
    n_params = report["model"]["n_params"]
    bf16_peak, fp32_peak = report["peak_flops"]["bf16"], report["peak_flops"]["fp32"]
    tok = WordTokenizer(cfg["vocab_size"], cfg["pad_token_id"])
    new_tokens = 60 if not args.tiny else 8
    score = {"fp32": score_cases("fp32", new_tokens), "bf16": score_cases("bf16", new_tokens)}
    cases = [(n, w, run_sft, 1.0, kw) for n, w, kw in SFT_CASES]
    cases += score["fp32"] + [("cast_bf16", "", None, 0, {})] + score["bf16"]
    wanted = [c for c in cases if not args.only or c[0] in args.only or c[2] is None]
    total_weight = sum(c[3] for c in wanted)
    deadline = t0 + 1.25 * args.budget_s + 60  # none starts later (gpu.sh stops at 470 s)
    write(out, report)
    for name, what, runner, weight, kwargs in wanted:
        if runner is None:  # scoring in bf16 weights from here on
            model.to(torch.bfloat16)
            continue
        if time.perf_counter() > deadline:
            report["skipped"].append(name)
            continue
        share = args.budget_s * weight / total_weight
        started = time.perf_counter()
        if b.cuda:
            torch.cuda.reset_peak_memory_stats()
        try:
            if runner is run_sft:
                settings, res = runner(b, model, share, **kwargs)
                # model FLOPs of the real (non-padding) tokens against the bf16 peak
                res["mfu"] = 6 * n_params * res["tokens_per_s"] / bf16_peak if bf16_peak else None
            else:
                model.eval()
                settings, res = runner(b, model, tok, share, **kwargs)
                settings["weights"] = str(next(model.parameters()).dtype).replace("torch.", "")
                if runner is run_classify:
                    peak = bf16_peak if settings["weights"] == "bfloat16" else fp32_peak
                    res["flop_utilisation"] = (2 * n_params * res["prompt_tokens_per_s"] / peak
                                               if peak else None)
        except Exception as err:  # keep the others: a partial report beats none
            report["errors"][name] = f"{type(err).__name__}: {err}"
            print(f"[gpu_bench] {name}: {report['errors'][name]}", file=sys.stderr)
            continue
        if b.cuda:
            res["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        res["wall_s"] = time.perf_counter() - started
        report["measurements"][name] = {"what": what, "settings": settings, "results": res}
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in res.items()}
        print(f"[gpu_bench] {name}: {shown}", file=sys.stderr, flush=True)
        write(out, report)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    write(out, report)
    print(f"[gpu_bench] wrote {out} in {report['wall_s']} s", file=sys.stderr)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
