"""Evaluate one model on every eval set of a plan, for every prompt format and shot count.

One process per model: the model is loaded once and reused for all sets, formats and shots.

    python -m amuro.evaluate --model DIR --plan JSON --meta JSON \
        --metrics OUT.csv --predictions OUT.jsonl --timing OUT.json [--threads N]
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # before torch/transformers, so the import cost is measured too

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import zlib  # noqa: E402

import torch  # noqa: E402

from amuro.errors import AmuroError, run_cli  # noqa: E402
from amuro.fewshot import draw_demonstrations  # noqa: E402
from amuro.io import atomic_path, parse_json_object, read_jsonl  # noqa: E402
from amuro.metrics import METRICS, score_examples  # noqa: E402
from amuro.modeling import (  # noqa: E402
    Stopwatch,
    load_model,
    load_tokenizer,
    seed_everything,
    set_threads,
)
from amuro.prompts import FORMATS, render_few_shot, render_prompt  # noqa: E402
from amuro.scoring import classify, first_subtoken_ids, generate_greedy  # noqa: E402
from amuro.tasks import EvalSet, parse_eval_plan  # noqa: E402
from amuro.truncation import fit_prompt  # noqa: E402

_IMPORT_S = round(time.perf_counter() - _T0, 3)

COLUMNS = (
    "model,step,tuning,train_task,eval_task,eval_type,eval_set,role,format,shots,"
    "metric,value,n,n_truncated,scoring"
).split(",")
META_KEYS = ("model", "step", "tuning", "train_task")
SCORING = {"classification": "first_subtoken", "generation": "greedy"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m amuro.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="Hugging Face checkpoint folder with tokenizer")
    p.add_argument("--plan", required=True, help="evaluation plan, inline JSON")
    p.add_argument("--meta", required=True, help="identity columns, inline JSON")
    p.add_argument("--metrics", required=True, help="output CSV, one row per set x format x shots")
    p.add_argument("--predictions", required=True, help="output JSONL, one row per example")
    p.add_argument("--timing", required=True, help="output JSON with phase durations (s)")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def parse_meta(text: str) -> dict:
    meta = parse_json_object("--meta", text)
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise AmuroError(f"--meta: lacks field(s) {missing}; expected {list(META_KEYS)}")
    meta["train_task"] = meta["train_task"] or ""
    return {k: meta[k] for k in META_KEYS}


def row_role(eval_set: EvalSet, train_task: str) -> str:
    """Base models and models tuned on this set's task keep its ID/OOD role; others: cross."""
    if not train_task or eval_set.task.name == train_task:
        return eval_set.role
    return "cross"


def _check_records(path: str, records: list[dict], eval_set: EvalSet) -> None:
    if not records:
        raise AmuroError(f"{path}: no records")
    labels = eval_set.label_words
    for n, rec in enumerate(records, 1):
        where = f"{path}: record {n}"
        if not isinstance(rec, dict):
            raise AmuroError(f"{where}: expected a JSON object")
        if "id" not in rec:
            raise AmuroError(f"{where}: lacks field 'id'")
        where += f" (id {rec['id']!r})"
        if not isinstance(rec.get("fields"), dict):
            raise AmuroError(f"{where}: field 'fields' must be an object of named texts")
        if not isinstance(rec.get("target"), str):
            raise AmuroError(f"{where}: field 'target' must be a string")
        if eval_set.task.type == "classification" and rec["target"].strip() not in labels:
            raise AmuroError(
                f"{where}: field 'target' is {rec['target']!r}, expected one of {list(labels)}"
            )
        try:
            render_prompt(eval_set.task.template, "default", rec["fields"], labels)
        except AmuroError as err:
            raise AmuroError(f"{where}: {err}") from None


def load_and_validate(plan: dict, tokenizer) -> dict[str, tuple[list[dict], list[dict]]]:
    """Read every set's files and check them (and the plan) before any model work starts."""
    for fmt in plan["formats"]:
        if fmt not in FORMATS:
            raise AmuroError(f"--plan: format {fmt!r} unknown; expected one of {FORMATS}")
    shots = [int(s) for s in plan["shots"]]
    if any(s < 0 for s in shots):
        raise AmuroError(f"--plan: shots must be >= 0, got {shots}")
    data: dict[str, tuple[list[dict], list[dict]]] = {}
    for s in plan["sets"]:
        if s.name in data:
            raise AmuroError(f"--plan: eval set {s.name!r} listed twice")
        if s.role not in ("ID", "OOD"):
            raise AmuroError(f"eval set {s.name!r}: field 'role' must be 'ID' or 'OOD'")
        if s.task.metric not in METRICS:
            raise AmuroError(f"task {s.task.name!r}: metric {s.task.metric!r} not in {METRICS}")
        test = read_jsonl(s.test_path)
        _check_records(s.test_path, test, s)
        demos: list[dict] = []
        if max(shots, default=0) > 0:
            demos = read_jsonl(s.demo_path)
            _check_records(s.demo_path, demos, s)
            if max(shots) > len(demos):
                raise AmuroError(
                    f"{s.demo_path}: {max(shots)}-shot needs {max(shots)} demonstrations, "
                    f"the pool has {len(demos)}"
                )
            # The demo pool must be a separate split: a query must never see its own answer.
            shared = {str(r["id"]) for r in test} & {str(r["id"]) for r in demos}
            if shared:
                raise AmuroError(
                    f"eval set {s.name!r}: {len(shared)} record id(s) in both {s.test_path} "
                    f"and the demo pool {s.demo_path}, e.g. {sorted(shared)[0]!r}"
                )
        if s.task.type == "classification":
            first_subtoken_ids(tokenizer, s.label_words, task=s.task.name)
        data[s.name] = (test, demos)
    return data


def select_items(records: list[dict], max_items: int | None, seed: int, set_name: str):
    """All records in file order, or the first `max_items` after a seeded shuffle."""
    if max_items is None or max_items >= len(records):
        return records
    items = list(records)
    random.Random(zlib.crc32(f"{seed}:{set_name}".encode())).shuffle(items)
    return items[: int(max_items)]


def evaluate_cell(model, tokenizer, s: EvalSet, items, demos, fmt, shots, plan, context):
    """Score one set x format x shots; returns (predictions, scores, truncation actions)."""
    task = s.task
    labels = s.label_words
    reserved = 1 if task.type == "classification" else task.max_new_tokens
    fitted = []
    for rec in items:
        chosen = draw_demonstrations(demos, shots, plan["seed"], str(rec["id"]))
        blocks, query = render_few_shot(task.template, fmt, chosen, rec, labels)
        fitted.append(fit_prompt(blocks, query, tokenizer, context - reserved))
    ids = [f.ids for f in fitted]
    if task.type == "classification":
        label_ids = first_subtoken_ids(tokenizer, labels, task=task.name)
        out = classify(model, tokenizer, ids, label_ids, plan["batch_size"])
        preds = [labels[i] for i, _ in out]
    else:
        preds = generate_greedy(model, tokenizer, ids, task.max_new_tokens, plan["batch_size"])
    scores = score_examples(task.metric, preds, [r["target"].strip() for r in items])
    return preds, scores, [f.action for f in fitted]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    watch = Stopwatch()
    plan = parse_eval_plan(args.plan)
    plan["seed"] = int(plan.get("seed", 1234))
    plan["batch_size"] = int(plan.get("batch_size", 32))
    max_items = plan.get("max_items")
    if plan["batch_size"] < 1:
        raise AmuroError(f"--plan: batch_size must be >= 1, got {plan['batch_size']}")
    if max_items is not None and (not isinstance(max_items, int) or max_items < 1):
        raise AmuroError(f"--plan: max_items must be null or an integer >= 1, got {max_items!r}")
    meta = parse_meta(args.meta)
    set_threads(args.threads)
    seed_everything(plan["seed"])

    tokenizer = load_tokenizer(args.model)
    data = load_and_validate(plan, tokenizer)
    watch.lap("validate")

    model = load_model(args.model)
    if torch.cuda.is_available():
        model.to("cuda")
    context = int(model.config.max_position_embeddings)
    watch.lap("load_model")

    metric_rows, prediction_rows, cell_times = [], [], []
    for s in plan["sets"]:
        test, demos = data[s.name]
        items = select_items(test, max_items, plan["seed"], s.name)
        for fmt in plan["formats"]:
            for shots in (int(k) for k in plan["shots"]):
                t = time.perf_counter()
                preds, scores, actions = evaluate_cell(
                    model, tokenizer, s, items, demos, fmt, shots, plan, context
                )
                seconds = time.perf_counter() - t
                cell_times.append({"eval_set": s.name, "format": fmt, "shots": shots,
                                   "seconds": round(seconds, 3)})
                value = sum(scores) / len(scores)
                n_trunc = sum(a != "none" for a in actions)
                metric_rows.append(
                    {
                        **meta,
                        "eval_task": s.task.name,
                        "eval_type": s.task.type,
                        "eval_set": s.name,
                        "role": row_role(s, meta["train_task"]),
                        "format": fmt,
                        "shots": shots,
                        "metric": s.task.metric,
                        "value": value,
                        "n": len(scores),
                        "n_truncated": n_trunc,
                        "scoring": SCORING[s.task.type],
                    }
                )
                for rec, pred, score, action in zip(items, preds, scores, actions, strict=True):
                    prediction_rows.append(
                        {
                            "eval_set": s.name,
                            "format": fmt,
                            "shots": shots,
                            "id": rec["id"],
                            "prediction": pred,
                            "target": rec["target"],
                            "score": score,
                            "truncation": action,
                        }
                    )
                print(
                    f"[evaluate] {s.name} {fmt} {shots}-shot: {s.task.metric}={value:.3f} "
                    f"n={len(scores)} truncated={n_trunc} ({seconds:.1f}s)",
                    file=sys.stderr,
                    flush=True,
                )
    watch.lap("evaluate")

    timing = {"import": _IMPORT_S, **watch.phases}
    timing["total"] = round(sum(timing.values()), 3)
    # Per-cell seconds let the cost table split this job by experiment type (ID/OOD/...).
    timing.update(device=str(next(model.parameters()).device.type), threads=args.threads,
                  cells=cell_times)
    # All three outputs appear together or not at all.
    with (
        atomic_path(args.metrics) as m_tmp,
        atomic_path(args.predictions) as p_tmp,
        atomic_path(args.timing) as t_tmp,
    ):
        with m_tmp.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(metric_rows)
        with p_tmp.open("w", encoding="utf-8") as fh:
            for row in prediction_rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        t_tmp.write_text(json.dumps(timing, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    run_cli(main)
