"""Multiple choice by log-likelihood: amuro's scorer vs lm-evaluation-harness's HF backend.

    python benchmarks/bench_mc.py [--items 100] [--rounds 3] [--threads 1] [--batch-size 8]

Both sides score the same items of ARC-Challenge, BoolQ, SciQ and OpenBookQA (the real samples
in shared/data) with SmolLM2-135M-Instruct in float32, 0-shot, batch 8, on CPU:

- amuro: `amuro.evaluate.evaluate_cell` (the path `python -m amuro.evaluate` runs) on the
  records of amuro's adapters, each set in its family's `default` format;
- lm-eval 0.4.13 (`pip install -e ".[bench]"`): `lm_eval.simple_evaluate` with an `HFLM` and
  lm-eval's own task definitions (arc_challenge, boolq, sciq, openbookqa YAMLs), only their
  dataset pointed at the same rows, written in the hub's schema (for BoolQ SuperGLUE's,
  whose passage is "<title> -- <passage>").

Each side runs in a child process of its own (its peak RSS is its own), `--rounds` times in
turns; times are medians of the scoring calls (model loading and data reading excluded; one
warm-up forward pass on each side first). Every item's `acc` and `acc_norm` choice must be the
same on both sides (lm-eval's boolq task reports acc only: its acc_norm is computed from its
log-likelihoods by lm-eval's definition); any difference fails the benchmark (exit 1). Prints
the table and writes it to benchmarks/results/mc.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (  # noqa: E402
    CACHE,
    ForwardTimer,
    alternate,
    markdown_table,
    median,
    report,
    run_side,
    set_threads,
    smollm2_checkpoint,
    write_section,
)

DATA = Path(os.environ.get("AMURO_SHARED_DATA")
            or Path(__file__).resolve().parents[2] / "shared" / "data")
# name: (amuro adapter, amuro family, shared/data file, lm-eval task)
SETS = {
    "arc_challenge": ("arc", "arc", "arc_challenge/test.jsonl", "arc_challenge"),
    "boolq": ("boolq", "boolq", "boolq/dev.jsonl", "boolq"),
    "sciq": ("sciq_mc", "sciq", "sciq/test.json", "sciq"),
    "openbookqa": ("openbookqa", "openbookqa", "openbookqa/test.jsonl", "openbookqa"),
}


# --- the same rows for both sides -----------------------------------------------------------------
def amuro_records(name: str, n: int) -> list[dict]:
    from amuro.data.adapters import Drop, get_adapter
    from amuro.data.readers import read_rows

    adapter, _, path, _ = SETS[name]
    rows = read_rows(DATA / path)[:n]
    records = [get_adapter(adapter).apply(row, index=i) for i, row in enumerate(rows)]
    if any(isinstance(r, Drop) for r in records):
        raise SystemExit(f"{path}: a row of the first {n} was dropped; the sides would differ")
    return records


def _choices(q: dict) -> dict:
    return {"text": [c["text"] for c in q["choices"]], "label": [c["label"] for c in q["choices"]]}


def hub_rows(name: str, n: int) -> list[dict]:
    """The same first n rows in the schema of the hub dataset lm-eval's task reads."""
    from amuro.data.readers import read_rows

    rows = read_rows(DATA / SETS[name][2])[:n]
    if name == "arc_challenge":  # official jsonl -> allenai/ai2_arc
        return [{"id": r["id"], "question": r["question"]["stem"],
                 "choices": _choices(r["question"]), "answerKey": r["answerKey"]} for r in rows]
    if name == "openbookqa":  # official jsonl -> allenai/openbookqa main
        return [{"id": r["id"], "question_stem": r["question"]["stem"],
                 "choices": _choices(r["question"]), "answerKey": r["answerKey"]} for r in rows]
    if name == "boolq":  # google's dev.jsonl -> SuperGLUE (aps/super_glue boolq)
        return [{"question": r["question"], "passage": f"{r['title']} -- {r['passage']}",
                 "idx": i, "label": int(r["answer"])} for i, r in enumerate(rows)]
    return rows  # sciq: the official file already has allenai/sciq's fields


def write_hub_files(names: list[str], n: int) -> Path:
    folder = CACHE / "mc-data"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        with (folder / f"{name}.jsonl").open("w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in hub_rows(name, n))
    return folder


# --- the two sides (each in a child process) ------------------------------------------------------
def side_amuro(args) -> dict:
    import torch

    from amuro.evaluate import evaluate_cell
    from amuro.modeling import load_model, load_tokenizer
    from amuro.tasks import EvalSet, TaskSpec

    model, tok = load_model(args.checkpoint), load_tokenizer(args.checkpoint)
    with torch.inference_mode():
        model(input_ids=torch.tensor([[1, 2, 3, 4]]))  # warm-up
    context = int(model.config.max_position_embeddings)
    timer = ForwardTimer(model)
    plan = {"demonstrations": "fixed", "prefix_cache": True, "batch_size": args.batch_size,
            "seed": 1}
    out = {}
    for name in args.sets:
        records = amuro_records(name, args.items)
        family = SETS[name][1]
        s = EvalSet(name, TaskSpec(name, "multiple_choice", family), "ID", "-", "-")
        start = time.perf_counter()
        metrics, _ = evaluate_cell(model, tok, s, records, [], "default", 0, plan, context)
        took = time.perf_counter() - start
        picks = {m: preds for m, preds, _ in metrics}
        out[name] = {"seconds": took, "acc": picks["acc"], "acc_norm": picks["acc_norm"],
                     "gold": [r["target"] for r in records], **timer.take()}
    return out


def lm_eval_task(tm, name: str, data: Path):
    """lm-eval's own task, its dataset pointed at the local rows (0-shot: no training split)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    task_name = SETS[name][3]
    cfg = load_yaml(tm.task_index[task_name].yaml_path, resolve_func=True)
    for key in ("tag", "group"):
        cfg.pop(key, None)
    cfg.update(dataset_path="json", dataset_name=None,
               dataset_kwargs={"data_files": {"validation": str(data / f"{name}.jsonl")}},
               training_split=None, test_split=None, validation_split="validation")
    return tm.load([cfg])["tasks"][task_name]


def side_lm_eval(args) -> dict:
    import logging

    import numpy as np
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    lm = HFLM(pretrained=str(args.checkpoint), dtype="float32", batch_size=args.batch_size,
              device="cpu")
    with torch.inference_mode():
        lm.model(input_ids=torch.tensor([[1, 2, 3, 4]]))  # warm-up
    tm = TaskManager()
    timer = ForwardTimer(lm.model)
    out = {}
    for name in args.sets:
        task = lm_eval_task(tm, name, Path(args.data))
        timer.take()
        start = time.perf_counter()
        res = simple_evaluate(model=lm, tasks=[task], num_fewshot=0, limit=args.items,
                              log_samples=True, bootstrap_iters=0, cache_requests=False,
                              task_manager=tm)  # the index is built once, not per call
        took = time.perf_counter() - start
        samples = sorted(res["samples"][SETS[name][3]], key=lambda x: x["doc_id"])
        acc, acc_norm, gold = [], [], []
        for smp in samples:
            choices = task.doc_to_choice(smp["doc"])
            lls = np.array([float(r[0]) for r in smp["filtered_resps"]])
            lens = np.array([float(len(c)) for c in choices])  # lm-eval's acc_norm
            a, an = int(np.argmax(lls)), int(np.argmax(lls / lens))
            assert float(smp["acc"]) == float(a == smp["target"]), "acc is not argmax(lls)"
            if "acc_norm" in smp:
                assert float(smp["acc_norm"]) == float(an == smp["target"])
            acc.append(choices[a])
            acc_norm.append(choices[an])
            gold.append(choices[smp["target"]])
        out[name] = {"seconds": took, "acc": acc, "acc_norm": acc_norm, "gold": gold,
                     **timer.take()}
    return out


# --- the comparison -------------------------------------------------------------------------------
def _score(side: dict, metric: str) -> float:
    return sum(p == g for p, g in zip(side[metric], side["gold"], strict=True)) / len(side["gold"])


def compare(runs: dict[str, list[dict]], names: list[str]) -> tuple[list[list], list[str]]:
    rows, problems = [], []
    a_last, b_last = runs["amuro"][-1], runs["lm-eval"][-1]
    totals = {side: [sum(r[n]["seconds"] for n in names) for r in runs[side]] for side in runs}
    for name in names:
        a, b = a_last[name], b_last[name]
        items = len(a["gold"])
        if a["gold"] != b["gold"] or len(b["gold"]) != items:
            problems.append(f"{name}: the two sides scored different items")
            continue
        diff = [i for i in range(items) if a["acc"][i] != b["acc"][i]
                or a["acc_norm"][i] != b["acc_norm"][i]]
        if diff:
            problems.append(f"{name}: {len(diff)} item(s) with another choice, e.g. item "
                            f"{diff[0]}: amuro {a['acc'][diff[0]]!r}/{a['acc_norm'][diff[0]]!r}, "
                            f"lm-eval {b['acc'][diff[0]]!r}/{b['acc_norm'][diff[0]]!r}")

        ta = median([r[name]["seconds"] for r in runs["amuro"]])
        tb = median([r[name]["seconds"] for r in runs["lm-eval"]])
        rows.append([name, items, _score(a, "acc"), _score(b, "acc"), _score(a, "acc_norm"),
                     _score(b, "acc_norm"), len(diff), f"{ta:.1f}", f"{tb:.1f}", f"{tb / ta:.2f}x",
                     "", ""])
    ta, tb = median(totals["amuro"]), median(totals["lm-eval"])
    rss = {side: max(r["peak_rss_mb"] for r in runs[side]) for side in runs}
    rows.append(["**all**", sum(r[1] for r in rows), "", "", "", "", sum(r[6] for r in rows),
                 f"{ta:.1f}", f"{tb:.1f}", f"**{tb / ta:.2f}x**", f"{rss['amuro']:.0f}",
                 f"{rss['lm-eval']:.0f}"])
    return rows, problems


def time_table(runs: dict[str, list[dict]], names: list[str]) -> str:
    """Per side, summed over the sets (medians over the rounds): scoring seconds, seconds in
    the model's forward calls, the calls and the tokens fed (padding included)."""
    rows = []
    for side, results in runs.items():
        def total(key, results=results):
            return median([sum(r[n][key] for n in names) for r in results])

        took, fwd = total("seconds"), total("forward_seconds")
        rows.append([side, f"{took:.1f}", f"{fwd:.1f}", f"{fwd / took:.0%}",
                     int(total("forward_calls")), int(total("tokens_fed")),
                     f"{1000 * fwd / total('tokens_fed'):.2f}"])
    return markdown_table(["side", "scoring s", "in forward() s", "share", "forward calls",
                           "tokens fed", "ms per token fed"], rows)


HEADERS = ["set", "items", "acc amuro", "acc lm-eval", "acc_norm amuro", "acc_norm lm-eval",
           "items differing", "amuro s", "lm-eval s", "lm-eval / amuro", "max RSS amuro MiB",
           "max RSS lm-eval MiB"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100, help="first N rows of each set")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each side, in turns")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--side", choices=["amuro", "lm-eval"], help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true", help="print only (no results/mc.md)")
    args = ap.parse_args()

    if args.side:  # a child: one side, result to --result
        set_threads(args.threads)
        result = side_amuro(args) if args.side == "amuro" else side_lm_eval(args)
        report(args.result, result)
        return

    if not DATA.is_dir():
        raise SystemExit(f"shared data not found at {DATA} (set AMURO_SHARED_DATA)")
    checkpoint = smollm2_checkpoint()
    data = write_hub_files(args.sets, args.items)
    common = [__file__, "--items", args.items, "--threads", args.threads, "--batch-size",
              args.batch_size, "--checkpoint", checkpoint, "--data", data, "--sets", *args.sets]
    runs = alternate({side: (lambda side=side: run_side([*common, "--side", side], args.threads))
                      for side in ("amuro", "lm-eval")}, args.rounds)
    rows, problems = compare(runs, args.sets)
    table = markdown_table(HEADERS, rows)
    body = (f"SmolLM2-135M-Instruct (float32), 0-shot, batch {args.batch_size}, the first "
            f"{args.items} rows of each shared/data sample, each family's `default` format vs "
            "lm-eval 0.4.13's task (HF backend, `simple_evaluate`). Seconds: median of "
            f"{args.rounds} alternating runs per side of the scoring call (no model loading); "
            "max RSS: the peak resident memory of each side's process (model included). "
            "`items differing`: items whose acc or acc_norm choice differs between the sides "
            f"(must be 0).\n\n{table}\n\nWhere the time goes (all sets; tokens fed: "
            "input_ids elements of every forward call, padding included):\n\n"
            f"{time_table(runs, args.sets)}\n")
    if problems:
        body += "\n**Parity failures:**\n\n" + "\n".join(f"- {p}" for p in problems) + "\n"
    print(body)
    if not args.no_write:
        title = "Multiple choice: amuro vs lm-eval (HF backend)"
        print(f"wrote {write_section('mc', title, body, args.threads)}")
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
