"""Cost of resumable fine-tuning state: a fine-tune without saves vs one saving every N steps.

    python benchmarks/bench_resume.py [--examples 256] [--every 1 8] [--rounds 3]

Runs the same fine-tune (a random OLMo of the default study's shape, synthetic NLI records)
in this process without state saving (the baseline) and with a save every N optimizer steps,
prints wall times, the ratio to the baseline, and the size of one save on disk. Every variant
must end with the same weights as the baseline.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from bench_generation import random_checkpoint

from amuro.finetune import main as finetune_main
from amuro.io import sha256_file

NLI = {"name": "nli", "type": "classification", "template": "nli",
       "labels": ["entailment", "neutral", "contradiction"]}
WORDS = "Alice Bob Carol travelled from Paris to Rome on Monday gave a book".split()


def records(n: int) -> list[dict]:
    rng = random.Random(0)
    return [{"id": str(i), "fields": {"premise": " ".join(rng.choices(WORDS, k=12)),
                                      "hypothesis": " ".join(rng.choices(WORDS, k=6))},
             "target": rng.choice(NLI["labels"])} for i in range(n)]


def finetune(root: Path, name: str, threads: int, *extra: str) -> tuple[float, str]:
    out = root / name
    start = time.perf_counter()
    finetune_main(["--checkpoint", str(root / "ckpt"), "--train", str(root / "train.jsonl"),
                   "--task", json.dumps(NLI), "--out", str(out), "--threads", str(threads),
                   "--settings", json.dumps({"epochs": 1, "batch_size": 8, "lr": 1e-3,
                                             "max_length": 128, "max_examples": 100000}),
                   *extra])
    return time.perf_counter() - start, sha256_file(out / "model.safetensors")


def save_size(root: Path) -> int:
    """Bytes of one save of the benchmark model with its AdamW state after one step."""
    import torch

    from amuro.modeling import load_model
    from amuro.train_state import StateStore

    model = load_model(root / "ckpt")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(input_ids=torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss.backward()
    optimizer.step()
    store = StateStore(root / "state", "benchmark")
    saved = store.save(1, model.state_dict(), optimizer.state_dict(), {"step": 1})
    return sum(f.stat().st_size for f in saved.iterdir())


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--every", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        random_checkpoint(root / "ckpt")
        with (root / "train.jsonl").open("w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records(args.examples))
        finetune(root, "warmup", args.threads)  # first-call costs out of the comparison
        steps = -(-args.examples // 8)
        variants = {"baseline": []} | {
            every: ["--save-every-steps", str(every)] for every in args.every}
        best, digests = {}, {}
        for round_ in range(args.rounds):  # interleaved, best of the rounds: less noise
            for key, extra in variants.items():
                state = ["--state-dir", str(root / f"state-{key}")] if extra else []
                took, digests[key] = finetune(root, f"{key}-{round_}", args.threads,
                                              *state, *extra)
                best[key] = min(best.get(key, took), took)
        assert len(set(digests.values())) == 1, "saving state changed the trained weights"
        print(f"baseline (no saves): {best['baseline']:.2f} s for {steps} steps")
        for every in args.every:
            print(f"save every {every} step(s): {best[every]:.2f} s, "
                  f"{best[every] / best['baseline']:.2f}x the baseline ({steps // every} saves)")
        print(f"one save: {save_size(root) / 1e6:.1f} MB (weights + AdamW moments)")


if __name__ == "__main__":
    main()
