"""Keep the fine-tuning run whose learning rate gave the lowest held-out loss.

    python -m amuro.select_lr --candidates DIR_lr2e-05 DIR_lr2e-06 DIR_lr2e-07 --out DIR

Each candidate folder is a finetune output whose settings.json has `heldout_loss` (the mean
completion-token loss on a slice of the training data the run did not train on). The chosen
folder's files are hard-linked (copied across file systems) into --out, with `selection.json`
listing every candidate's rate and loss. Ties keep the first candidate given.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from pathlib import Path

from amuro.errors import AmuroError, run_cli
from amuro.io import atomic_dir, read_json_object, write_json


def read_candidate(folder: Path) -> dict:
    path = folder / "settings.json"
    data = read_json_object(path, hint="not a finetune output")
    loss = data.get("heldout_loss")
    if not isinstance(loss, (int, float)) or not math.isfinite(loss):
        raise AmuroError(f"{path}: field heldout_loss: expected a finite number (train with "
                         f"heldout > 0), got {loss!r}")
    return {"path": str(folder), "lr": data.get("settings", {}).get("lr"),
            "heldout_loss": float(loss), "heldout_n": data.get("heldout_n")}


def link_tree(src: Path, dst: Path) -> None:
    for item in src.rglob("*"):
        target = dst / item.relative_to(src)
        if item.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(item, target)
        except OSError:
            shutil.copy2(item, target)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m amuro.select_lr",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--candidates", nargs="+", required=True, metavar="DIR")
    ap.add_argument("--out", required=True, metavar="DIR")
    args = ap.parse_args(argv)
    candidates = [read_candidate(Path(c)) for c in args.candidates]
    best = min(candidates, key=lambda c: c["heldout_loss"])  # min keeps the first of ties
    with atomic_dir(args.out) as staging:
        link_tree(Path(best["path"]), staging)
        write_json(staging / "selection.json", {"chosen": best, "candidates": candidates,
                                                "rule": "lowest held-out loss"})
    for c in candidates:
        mark = "*" if c is best else " "
        print(f"[select_lr] {mark} lr {c['lr']}: held-out loss {c['heldout_loss']:.4f}",
              file=sys.stderr)
    print(f"[select_lr] chose lr {best['lr']} -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
