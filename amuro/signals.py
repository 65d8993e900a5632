"""Pre-fine-tuning signals of one base checkpoint on one task (issue 15): do they predict
what fine-tuning that checkpoint will give?

    python -m amuro.signals --checkpoint results/checkpoints/tiny/step800 \
        --train results/data/tw_nli/train.jsonl --task '{"name": "nli", ...}' \
        --out results/signals/tiny/step800/nli.json [--signals target_loss linear_probe] \
        [--heldout 200] [--seed 1] [--threads 1] [--bootstrap-resamples 1000]

Both signals read the same held-out slice of the training file: a seeded sample of --heldout
records (`random.Random(seed).sample`; the whole file when it has fewer). The slice depends
only on the file and the seed, never on the checkpoint, so every checkpoint of a series is
measured on the same items and a joint bootstrap can resample them once for all checkpoints.
Each record is encoded exactly as amuro.finetune encodes a training example
(`encode_examples`: the task's prompt in --format, default the fine-tuning default, then
`" " + target` and EOS; a long prompt loses its left part within --max-length).

- `target_loss` (any supervised task): per item, the base model's mean cross-entropy per
  completion token (target tokens and EOS) given the prompt: the quantity amuro.finetune
  reports as the held-out loss, per item. Lower is better.
- `linear_probe` (classification tasks): the final hidden state (after the last norm, what the
  output head reads) of the prompt's last token, standardised, into a multinomial logistic
  regression with an L2 penalty (numpy, fitted by scipy's L-BFGS; `fit_logistic`), k-fold
  cross-validated with folds stratified by label. Per item, 1 if the model fitted on the other
  folds predicts its label. Higher is better; `chance` is the share of the largest label.

The output JSON holds, per signal, the item ids and per-item values (aligned), their mean with
a percentile-bootstrap interval over the items (amuro.bootstrap.mean_ci; the probe's fold
models held fixed), n, the settings, and the run's wall and CPU seconds (`timing`), so the cost
table can count the signal against the fine-tuning it may save.
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()

import argparse  # noqa: E402
import random  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import optimize, special  # noqa: E402

from amuro.bootstrap import derive_seed, mean_ci  # noqa: E402
from amuro.chat import IGNORE  # noqa: E402
from amuro.errors import AmuroError, run_cli  # noqa: E402
from amuro.finetune import (  # noqa: E402
    DEFAULTS,
    accepts_logits_to_keep,
    check_records,
    collate,
    encode_examples,
    parse_task,
)
from amuro.io import read_jsonl, write_json  # noqa: E402
from amuro.modeling import (  # noqa: E402
    Stopwatch,
    load_model,
    load_tokenizer,
    process_cpu_seconds,
    set_threads,
)

TARGET_LOSS = "target_loss"
LINEAR_PROBE = "linear_probe"
SIGNALS = (TARGET_LOSS, LINEAR_PROBE)
CONFIDENCE = 0.95


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m amuro.signals", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="Hugging Face model folder (a base)")
    ap.add_argument("--train", required=True, help="the task's training records (jsonl)")
    ap.add_argument("--task", required=True, help="JSON task spec, as amuro.finetune takes it")
    ap.add_argument("--out", required=True, help="output JSON")
    ap.add_argument("--signals", nargs="+", choices=SIGNALS, default=None,
                    help="default: target_loss, and linear_probe for a classification task")
    ap.add_argument("--heldout", type=int, default=200, help="items in the held-out slice")
    ap.add_argument("--seed", type=int, default=1, help="slice, folds and bootstrap seed")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads")
    ap.add_argument("--bootstrap-resamples", type=int, default=1000)
    ap.add_argument("--format", default=DEFAULTS["format"], help="prompt format")
    ap.add_argument("--max-length", type=int, default=DEFAULTS["max_length"],
                    help="tokens per example, as the fine-tuning setting max_length")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--folds", type=int, default=5, help="cross-validation folds (probe)")
    ap.add_argument("--l2", type=float, default=1e-2,
                    help="probe penalty: mean cross-entropy + l2/2 * |weights|^2")
    args = ap.parse_args(argv)
    for key in ("heldout", "threads", "max_length", "batch_size"):
        if getattr(args, key) < 1:
            raise AmuroError(f"--{key.replace('_', '-')}: must be >= 1, got {getattr(args, key)}")
    for key, ok, wanted in (("folds", args.folds >= 2, ">= 2"), ("l2", args.l2 > 0, "> 0"),
                            ("bootstrap_resamples", args.bootstrap_resamples >= 0, ">= 0")):
        if not ok:
            raise AmuroError(f"--{key.replace('_', '-')}: must be {wanted}, got "
                             f"{getattr(args, key)}")
    return args


def load_task(text: str, wanted: list[str] | None):
    """The task spec and the signals to compute for it (one line for a task they cannot use)."""
    task = parse_task(text)
    if task.type == "chat":
        raise AmuroError(f"--task: task {task.name!r} is of type 'chat'; signals need a "
                         "supervised task (records with fields and a target)")
    signals = wanted or [TARGET_LOSS] + ([LINEAR_PROBE] if task.type == "classification"
                                         else [])
    if LINEAR_PROBE in signals and task.type != "classification":
        raise AmuroError(f"--signals: linear_probe needs a classification task; task "
                         f"{task.name!r} is of type {task.type!r}")
    return task, list(dict.fromkeys(signals))


def prepare(args):
    """(task, signals, held-out records, records in the file): every input checked before
    the model is loaded."""
    task, wanted = load_task(args.task, args.signals)
    records, n_records = heldout_slice(args.train, task, args.heldout, args.seed)
    if LINEAR_PROBE in wanted:
        if len(records) < args.folds:
            raise AmuroError(f"{args.train}: {len(records)} held-out item(s) cannot fill "
                             f"{args.folds} folds of the linear probe; raise --heldout or "
                             "lower --folds")
        if len({r["target"] for r in records}) < 2:
            raise AmuroError(f"{args.train}: the held-out slice holds one label only; the "
                             "linear probe needs two")
    return task, wanted, records, n_records


def heldout_slice(path: str, task, n: int, seed: int) -> tuple[list[dict], int]:
    """(the seeded sample of n records, the number of records in the file), records checked
    as amuro.finetune checks them, with unique ids (what the bootstrap resamples)."""
    records = read_jsonl(path)
    if not records:
        raise AmuroError(f"{path}: no training records")
    check_records(records, path, task)
    seen: set[str] = set()
    for i, rec in enumerate(records, 1):
        rid = rec.get("id")
        if not isinstance(rid, str) or not rid:
            raise AmuroError(f"{path}: record {i}: field 'id' missing or not a non-empty "
                             "string; expected a unique id per record")
        if rid in seen:
            raise AmuroError(f"{path}: record {i}: field 'id' {rid!r} repeats; expected a "
                             "unique id per record")
        seen.add(rid)
    picked = random.Random(seed).sample(range(len(records)), min(n, len(records)))
    return [records[i] for i in picked], len(records)


@torch.no_grad()
def forward_items(model, examples, batch_size: int, pad_id: int, features: bool = False):
    """Per example (ids, labels as encode_examples gives them): the summed completion-token
    loss, the number of completion tokens and, with `features`, the final hidden state at the
    prompt's last token (one row each). Right padding, so padding never precedes a token."""
    model.eval()
    device = next(model.parameters()).device
    sums, counts, rows = np.zeros(len(examples)), np.zeros(len(examples), dtype=int), []
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        input_ids, mask, labels = (t.to(device) for t in collate(batch, pad_id))
        target = labels[:, 1:]
        keep = (target != IGNORE).any(dim=0).nonzero().squeeze(1)
        if accepts_logits_to_keep(model):  # the output head only where a loss is taken
            out = model(input_ids=input_ids, attention_mask=mask, logits_to_keep=keep,
                        output_hidden_states=features)
            logits = out.logits.float()
        else:
            out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=features)
            logits = out.logits[:, keep].float()
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target[:, keep],
                                                 ignore_index=IGNORE, reduction="none")
        sums[start:start + len(batch)] = loss.sum(dim=1).double().cpu().numpy()
        counts[start:start + len(batch)] = (target != IGNORE).sum(dim=1).cpu().numpy()
        if features:
            last = torch.tensor([labs.count(IGNORE) - 1 for _, labs in batch], device=device)
            if int(last.min()) < 0:
                raise AmuroError("linear_probe: an example has no prompt token left (raise "
                                 "--max-length)")
            hidden = out.hidden_states[-1][torch.arange(len(batch), device=device), last]
            rows.append(hidden.double().cpu().numpy())
    return sums, counts, (np.concatenate(rows) if features else None)


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float,
                 max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(weights d x C, bias C) minimising mean cross-entropy of softmax(x W + b) over the rows
    plus l2/2 * |W|^2 (the bias is not penalised): scikit-learn's multinomial
    LogisticRegression with C = 1 / (l2 * n). Convex; L-BFGS with the exact gradient."""
    n, d = x.shape
    onehot = np.eye(n_classes)[y]

    def loss_grad(theta):
        w, b = theta[:d * n_classes].reshape(d, n_classes), theta[d * n_classes:]
        z = x @ w + b
        lse = special.logsumexp(z, axis=1)
        loss = float((lse - (z * onehot).sum(axis=1)).mean() + 0.5 * l2 * (w * w).sum())
        g = (np.exp(z - lse[:, None]) - onehot) / n
        return loss, np.concatenate([(x.T @ g + l2 * w).ravel(), g.sum(axis=0)])

    res = optimize.minimize(loss_grad, np.zeros(d * n_classes + n_classes), jac=True,
                            method="L-BFGS-B", options={"maxiter": max_iter, "gtol": 1e-10,
                                                        "ftol": 1e-14})
    return res.x[:d * n_classes].reshape(d, n_classes), res.x[d * n_classes:]


def stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A fold number per item: each label's items shuffled and dealt round-robin, the deal
    continuing from label to label, so folds differ in size by at most one."""
    rng = np.random.default_rng(seed)
    fold, offset = np.zeros(len(y), dtype=int), 0
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        fold[idx] = (offset + np.arange(idx.size)) % k
        offset += idx.size
    return fold


def cross_validated_correct(x: np.ndarray, y: np.ndarray, k: int, l2: float,
                            seed: int) -> np.ndarray:
    """1.0 where the probe fitted on the other folds predicts the item's label, else 0.0.
    Features are standardised with the training folds' mean and spread; a fold is fitted on
    the labels its training folds hold."""
    if len(y) < k or np.unique(y).size < 2:
        raise ValueError(f"{len(y)} items with {np.unique(y).size} label(s) for {k} folds")
    fold, correct = stratified_folds(y, k, seed), np.zeros(len(y))
    for f in range(k):
        train, test = fold != f, fold == f
        mu, sd = x[train].mean(axis=0), x[train].std(axis=0)
        sd = np.where(sd > 1e-12, sd, 1.0)
        classes, yy = np.unique(y[train], return_inverse=True)
        w, b = fit_logistic((x[train] - mu) / sd, yy, classes.size, l2)
        pred = classes[np.argmax(((x[test] - mu) / sd) @ w + b, axis=1)]
        correct[test] = (pred == y[test]).astype(float)
    return correct


def summary(ids: list[str], values: np.ndarray, resamples: int, seed: int, name: str) -> dict:
    """Per-item values and their mean with a percentile-bootstrap interval over the items."""
    low, high = mean_ci(values, resamples, derive_seed(seed, name), CONFIDENCE)
    return {"ids": ids, "values": values.tolist(), "n": len(ids), "value": float(values.mean()),
            "ci_low": low, "ci_high": high, "confidence": CONFIDENCE}


def main(argv=None):
    args = parse_args(argv)
    clock = Stopwatch()
    clock.phases["import"] = round(time.perf_counter() - _T_START, 3)
    task, wanted, records, n_records = prepare(args)
    set_threads(args.threads)
    tokenizer = load_tokenizer(args.checkpoint)
    examples, n_truncated = encode_examples(records, task, tokenizer, args.format,
                                            args.max_length)  # as fine-tuning encodes them
    model = load_model(args.checkpoint)
    if torch.cuda.is_available():
        model.to("cuda")
    clock.lap("load_model")
    sums, counts, feats = forward_items(model, examples, args.batch_size,
                                        tokenizer.pad_token_id, LINEAR_PROBE in wanted)
    clock.lap("forward")
    ids, out = [str(r["id"]) for r in records], {}
    if TARGET_LOSS in wanted:
        out[TARGET_LOSS] = {**summary(ids, sums / np.maximum(counts, 1),
                                      args.bootstrap_resamples, args.seed, TARGET_LOSS),
                            "n_tokens": counts.tolist(), "higher_is_better": False,
                            "token_mean": float(sums.sum() / max(counts.sum(), 1)),
                            "n_truncated": n_truncated}
    if LINEAR_PROBE in wanted:
        y = np.array([task.labels.index(r["target"]) for r in records])
        correct = cross_validated_correct(feats, y, args.folds, args.l2, args.seed)
        counts_by_label = {lab: int((y == i).sum()) for i, lab in enumerate(task.labels)}
        out[LINEAR_PROBE] = {**summary(ids, correct, args.bootstrap_resamples, args.seed,
                                       LINEAR_PROBE),
                             "higher_is_better": True, "label_counts": counts_by_label,
                             "chance": max(counts_by_label.values()) / len(y),
                             "hidden_size": int(feats.shape[1])}
        clock.lap("probe")
    clock.phases["total"] = round(time.perf_counter() - _T_START, 3)
    clock.phases["cpu_s"] = process_cpu_seconds()
    settings = {k: getattr(args, k) for k in ("heldout", "seed", "threads", "format",
                                              "max_length", "batch_size", "folds", "l2",
                                              "bootstrap_resamples")}
    write_json(args.out, {
        "checkpoint": str(args.checkpoint), "train_file": str(args.train), "task": task.name,
        "task_type": task.type, "template": task.template, "n_records": n_records,
        "settings": {**settings, "signals": wanted}, "signals": out,
        "device": next(model.parameters()).device.type, "timing": clock.phases,
        "wall_s": clock.phases["total"], "cpu_s": clock.phases["cpu_s"]})


if __name__ == "__main__":
    run_cli(main)
