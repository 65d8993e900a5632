"""Evaluate one model on every eval set of a plan, for every prompt format and shot count.

One process per model: the model is loaded once and reused for all sets, formats and shots.

Outputs: metrics.csv has one row per (set, format, shots, metric) — one metric for
classification (`accuracy`, scoring `first_subtoken`) and generation (`rougeL`, `greedy`), two
for multiple choice (`acc` and `acc_norm`, scoring `loglik`). predictions.jsonl has one row per
scored item and metric: `{"eval_set", "format", "shots", "metric", "id", "prediction",
"target", "score", "truncation"}`; a multiple-choice item has an `acc` and an `acc_norm` row,
each with the choice that metric picked as its prediction and a 0/1 score.

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
from amuro.io import atomic_path, check_json_types, parse_json_object, read_jsonl  # noqa: E402
from amuro.metrics import METRICS, score_examples  # noqa: E402
from amuro.modeling import (  # noqa: E402
    Stopwatch,
    load_model,
    load_tokenizer,
    process_cpu_seconds,
    seed_everything,
    set_threads,
)
from amuro.prompts import (  # noqa: E402
    FORMATS,
    MULTIPLE_CHOICE_FAMILIES,
    choice_completions,
    join_few_shot,
    render_example,
    render_few_shot,
    render_prompt,
)
from amuro.scoring import (  # noqa: E402
    choose,
    classify,
    encode_choices,
    generate_greedy,
    label_tokens,
    loglik_choices,
)
from amuro.tasks import MC_METRICS, EvalSet, parse_eval_plan, plan_cells  # noqa: E402
from amuro.truncation import NONE as TRUNCATION_NONE  # noqa: E402
from amuro.truncation import TRUNCATED_INPUT, fit_prompt  # noqa: E402

_IMPORT_S = round(time.perf_counter() - _T0, 3)

COLUMNS = (
    "model,step,tuning,train_task,seed,eval_task,eval_type,eval_set,role,format,shots,"
    "metric,value,n,n_truncated,scoring"
).split(",")
META_KEYS = ("model", "step", "tuning", "train_task")
# The fine-tuning seed of the model: 0 for a base checkpoint (nothing was trained).
SEED_KEY = "seed"
SCORING = {"classification": "first_subtoken", "generation": "greedy",
           "multiple_choice": "loglik"}


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
    check_json_types("--meta", meta, {"model": "str", "step": "int", "tuning": "str",
                                      "train_task": "str|null"})
    meta["train_task"] = meta["train_task"] or ""
    seed = meta.get(SEED_KEY, 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise AmuroError(f"--meta: field 'seed' must be an integer >= 0, got {seed!r}")
    return {**{k: meta[k] for k in META_KEYS}, SEED_KEY: seed}


def row_role(eval_set: EvalSet, train_task: str) -> str:
    """Base models and models tuned on this set's task keep its ID/OOD role; others: cross."""
    if not train_task or eval_set.task.name == train_task:
        return eval_set.role
    return "cross"


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_mc_record(where: str, rec: dict) -> None:
    """choices: a non-empty list of non-empty texts; label: an index into it; target: its text."""
    choices = rec["fields"].get("choices")
    if (not isinstance(choices, list) or not choices
            or not all(isinstance(c, str) and c.strip() for c in choices)):
        raise AmuroError(f"{where}: field 'fields.choices' must be a non-empty list of non-empty "
                         f"strings, got {_short(choices)}")
    label = rec.get("label")
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(choices):
        raise AmuroError(f"{where}: field 'label' must be an integer index into the "
                         f"{len(choices)} choices (0-{len(choices) - 1}), got {_short(label)}")
    if rec["target"] != choices[label]:
        raise AmuroError(f"{where}: field 'target' is {_short(rec['target'])}, but choice "
                         f"{label} (field 'label') is {_short(choices[label])}")


def _check_records(path: str, records: list[dict], eval_set: EvalSet,
                   formats: tuple[str, ...] = ("default",)) -> None:
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
        if not isinstance(rec.get("target"), str) or not rec["target"].strip():
            raise AmuroError(f"{where}: field 'target' must be a non-empty string, got "
                             f"{_short(rec.get('target'))}")
        if eval_set.task.type == "classification" and rec["target"].strip() not in labels:
            raise AmuroError(
                f"{where}: field 'target' is {rec['target']!r}, expected one of {list(labels)}"
            )
        if eval_set.task.type == "multiple_choice":
            _check_mc_record(where, rec)
        for fmt in formats:
            try:
                render_prompt(eval_set.task.template, fmt, rec["fields"], labels)
            except AmuroError as err:
                raise AmuroError(f"{where}: {err}") from None


def _check_task(task) -> None:
    """A multiple_choice task needs a multiple-choice template family, and only it does."""
    is_mc_family = task.template in MULTIPLE_CHOICE_FAMILIES
    if task.type == "multiple_choice" and not is_mc_family:
        raise AmuroError(f"task {task.name!r}: a multiple_choice task needs a multiple-choice "
                         f"template family ({', '.join(sorted(MULTIPLE_CHOICE_FAMILIES))}), "
                         f"got {task.template!r}")
    if task.type != "multiple_choice" and is_mc_family:
        raise AmuroError(f"task {task.name!r}: template {task.template!r} is a multiple-choice "
                         f"family; field 'type' must be multiple_choice, got {task.type!r}")


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
        _check_task(s.task)
        if s.task.type != "multiple_choice" and s.task.metric not in METRICS:
            raise AmuroError(f"task {s.task.name!r}: metric {s.task.metric!r} not in {METRICS}")
        formats = tuple(plan["formats"])
        test = read_jsonl(s.test_path)
        _check_records(s.test_path, test, s, formats)
        demos: list[dict] = []
        if max(shots, default=0) > 0:
            demos = read_jsonl(s.demo_path)
            _check_records(s.demo_path, demos, s, formats)
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
            label_tokens(tokenizer, s.label_words, task=s.task.name)
        data[s.name] = (test, demos)
    return data


def select_items(records: list[dict], max_items: int | None, seed: int, set_name: str):
    """All records in file order, or the first `max_items` after a seeded shuffle."""
    if max_items is None or max_items >= len(records):
        return records
    items = list(records)
    random.Random(zlib.crc32(f"{seed}:{set_name}".encode())).shuffle(items)
    return items[: int(max_items)]


def fit_choices(blocks: list[str], query: str, continuations: list[str], tokenizer,
                context: int) -> tuple[list[int], list[list[int]], str]:
    """(context ids, ids of each continuation, truncation action) of one multiple-choice item.

    The truncation policy of amuro.truncation (drop demonstrations, oldest first, then cut the
    query from the left), with room reserved for the longest continuation: context tokens +
    longest continuation <= the model's context. Continuation tokens are those of the final
    context text plus the continuation (scoring.encode_choices); the reserve is first taken
    from the query alone and raised if the final boundary tokenizes longer.
    """
    stripped = query.rstrip()  # trailing whitespace belongs to the continuations (lm-eval)
    conts = [query[len(stripped):] + c for c in continuations]
    reserve = max(len(c) for c in encode_choices(tokenizer, stripped, conts)[1])
    for _ in range(3):
        if context - reserve < 1:
            raise AmuroError(f"a choice takes {reserve} tokens: a context of {context} tokens "
                             "leaves no room for the prompt")
        fitted = fit_prompt(blocks, stripped, tokenizer, context - reserve)
        text = join_few_shot(blocks[len(blocks) - fitted.demos_kept :], stripped)
        ctx_ids, cont_ids = encode_choices(tokenizer, text, conts)
        longest = max(len(c) for c in cont_ids)
        if longest <= reserve:
            break
        reserve = longest
    action = fitted.action
    if len(ctx_ids) + longest > context:  # the query alone is too long: keep its end
        ctx_ids, action = ctx_ids[len(ctx_ids) + longest - context :], TRUNCATED_INPUT
    return ctx_ids, cont_ids, action


# Demonstration policies. per_item: each scored item gets its own seeded draw from the demo
# pool. fixed: one draw per eval set (the same demonstrations for every item, in every
# format), as the paper's code did but from the disjoint demo split; the prompt is then a
# shared prefix + the item, and the prefix's key/value cache is computed once per batch
# instead of once per item (plan "prefix_cache", default on).
DEMONSTRATIONS = ("per_item", "fixed")


class Prompts:
    """The prompts of one cell: per item its token ids, its truncation action and whether it
    follows the shared prefix (`shared`: the fixed demonstrations' ids, or None)."""

    def __init__(self, shared: list[int] | None):
        self.shared = shared
        self.ids: list = []
        self.actions: list[str] = []
        self.uses_shared: list[bool] = []

    def add(self, ids, action: str, uses_shared: bool = False) -> None:
        self.ids.append(ids)
        self.actions.append(action)
        self.uses_shared.append(uses_shared)

    def score(self, fn) -> list:
        """fn(items' ids, prefix ids or None) -> one result per item; run once for the items
        that follow the shared prefix and once for the others, merged in item order."""
        out: list = [None] * len(self.ids)
        for flag in (True, False):
            idx = [i for i, u in enumerate(self.uses_shared) if u == flag]
            if idx:
                results = fn([self.ids[i] for i in idx], self.shared if flag else None)
                for i, r in zip(idx, results, strict=True):
                    out[i] = r
        return out


def _shared_prefix(task, s: EvalSet, fmt, shots, demos, plan, tokenizer, labels=()):
    """(demonstration blocks, prefix ids) of the fixed policy, or (None, None)."""
    if plan["demonstrations"] != "fixed" or shots == 0:
        return None, None
    chosen = draw_demonstrations(demos, shots, plan["seed"], f"fixed:{s.name}")
    blocks = ["".join(render_example(task.template, fmt, d, labels)) for d in chosen]
    ids = tokenizer(join_few_shot(blocks, ""), add_special_tokens=False)["input_ids"]
    return blocks, ids


def _evaluate_mc(model, tokenizer, s: EvalSet, items, demos, fmt, shots, plan, context):
    task = s.task
    blocks, shared = _shared_prefix(task, s, fmt, shots, demos, plan, tokenizer)
    prompts = Prompts(shared if plan["prefix_cache"] else None)
    for rec in items:
        if blocks is None:
            chosen, query = render_few_shot(task.template, fmt, draw_demonstrations(
                demos, shots, plan["seed"], str(rec["id"])), rec)
        else:
            chosen, query = blocks, render_prompt(task.template, fmt, rec["fields"])
        try:
            if shared is not None:  # the fixed prefix, then the item's own context
                stripped = query.rstrip()
                conts = [query[len(stripped):] + c for c in choice_completions(rec)]
                ctx, cont_ids = encode_choices(tokenizer, stripped, conts)
                if len(shared) + len(ctx) + max(map(len, cont_ids)) <= context:
                    if plan["prefix_cache"]:
                        prompts.add((ctx, cont_ids), TRUNCATION_NONE, uses_shared=True)
                    else:
                        prompts.add((shared + ctx, cont_ids), TRUNCATION_NONE)
                    continue
            ctx, cont_ids, action = fit_choices(chosen, query, choice_completions(rec),
                                                tokenizer, context)
        except AmuroError as err:
            raise AmuroError(f"{s.test_path}: record id {rec['id']!r}: {err}") from None
        prompts.add((ctx, cont_ids), action)
    results = prompts.score(lambda pairs, prefix: loglik_choices(
        model, tokenizer, [c for c, _ in pairs], [k for _, k in pairs], plan["batch_size"],
        prefix_ids=prefix))
    preds: dict[str, list[str]] = {m: [] for m in MC_METRICS}
    scores: dict[str, list[float]] = {m: [] for m in MC_METRICS}
    for rec, res in zip(items, results, strict=True):
        choices = rec["fields"]["choices"]
        picked = choose([ll for ll, _ in res], choices)  # acc_norm: len(choice), as lm-eval
        for m in MC_METRICS:
            preds[m].append(choices[picked[m]])
            scores[m].append(1.0 if picked[m] == rec["label"] else 0.0)
    return [(m, preds[m], scores[m]) for m in MC_METRICS], prompts.actions


def evaluate_cell(model, tokenizer, s: EvalSet, items, demos, fmt, shots, plan, context):
    """Score one set x format x shots.

    Returns ([(metric, predictions, scores), ...], truncation actions): one metric for
    classification and generation, `acc` and `acc_norm` for multiple choice.
    """
    task = s.task
    if task.type == "multiple_choice":
        return _evaluate_mc(model, tokenizer, s, items, demos, fmt, shots, plan, context)
    labels = s.label_words
    space, label_ids = ([], [])
    if task.type == "classification":
        space, label_ids = label_tokens(tokenizer, labels, task=task.name)
    reserved = 1 + len(space) if task.type == "classification" else task.max_new_tokens
    budget = context - reserved
    blocks, shared = _shared_prefix(task, s, fmt, shots, demos, plan, tokenizer, labels)
    prompts = Prompts(shared if plan["prefix_cache"] else None)
    for rec in items:
        if shared is not None:
            query = render_prompt(task.template, fmt, rec["fields"], labels)
            ids = tokenizer(query, add_special_tokens=False)["input_ids"]
            if len(shared) + len(ids) <= budget:  # else: the truncation policy, no cache
                if plan["prefix_cache"]:
                    prompts.add(ids, TRUNCATION_NONE, uses_shared=True)
                else:
                    prompts.add(shared + ids, TRUNCATION_NONE)
                continue
            fitted = fit_prompt(blocks, query, tokenizer, budget)
        else:
            chosen = draw_demonstrations(demos, shots, plan["seed"], str(rec["id"]))
            fitted = fit_prompt(*render_few_shot(task.template, fmt, chosen, rec, labels),
                                tokenizer, budget)
        prompts.add(fitted.ids, fitted.action)
    if task.type == "classification":
        # a tokenizer that splits the leading space: the space token ends the prompt
        out = prompts.score(lambda ids, prefix: classify(
            model, tokenizer, [i + space for i in ids], label_ids, plan["batch_size"],
            prefix_ids=prefix))
        preds = [labels[i] for i, _ in out]
    else:
        preds = prompts.score(lambda ids, prefix: generate_greedy(
            model, tokenizer, ids, task.max_new_tokens, plan["batch_size"], prefix_ids=prefix))
    scores = score_examples(task.metric, preds, [r["target"].strip() for r in items])
    return [(task.metric, preds, scores)], prompts.actions


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    watch = Stopwatch()
    plan = parse_eval_plan(args.plan)
    plan["seed"] = int(plan.get("seed", 1234))
    plan["batch_size"] = int(plan.get("batch_size", 32))
    plan["demonstrations"] = plan.get("demonstrations") or "per_item"
    plan["prefix_cache"] = plan.get("prefix_cache", True)
    if plan["demonstrations"] not in DEMONSTRATIONS:
        raise AmuroError(f"--plan: demonstrations must be one of {DEMONSTRATIONS}, got "
                         f"{plan['demonstrations']!r}")
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
        for fmt, shots in plan_cells(plan, s.name):
            t = time.perf_counter()
            outcomes, actions = evaluate_cell(
                model, tokenizer, s, items, demos, fmt, shots, plan, context
            )
            seconds = time.perf_counter() - t
            cell_times.append({"eval_set": s.name, "format": fmt, "shots": shots,
                               "seconds": round(seconds, 3)})
            n_trunc = sum(a != "none" for a in actions)
            values = []
            for metric, preds, scores in outcomes:
                value = sum(scores) / len(scores)
                values.append(f"{metric}={value:.3f}")
                metric_rows.append(
                    {
                        **meta,
                        "eval_task": s.task.name,
                        "eval_type": s.task.type,
                        "eval_set": s.name,
                        "role": row_role(s, meta["train_task"]),
                        "format": fmt,
                        "shots": shots,
                        "metric": metric,
                        "value": value,
                        "n": len(scores),
                        "n_truncated": n_trunc,
                        "scoring": SCORING[s.task.type],
                    }
                )
                for rec, pred, score, action in zip(
                    items, preds, scores, actions, strict=True
                ):
                    prediction_rows.append(
                        {
                            "eval_set": s.name,
                            "format": fmt,
                            "shots": shots,
                            "metric": metric,
                            "id": rec["id"],
                            "prediction": pred,
                            "target": rec["target"],
                            "score": score,
                            "truncation": action,
                        }
                    )
            print(
                f"[evaluate] {s.name} {fmt} {shots}-shot: {' '.join(values)} "
                f"n={len(items)} truncated={n_trunc} ({seconds:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
    watch.lap("evaluate")

    timing = {"import": _IMPORT_S, **watch.phases}
    timing["total"] = round(sum(timing.values()), 3)
    timing["cpu_s"] = process_cpu_seconds()
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
