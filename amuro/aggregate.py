"""Gather per-model metrics CSVs into one tidy perf table, and derive the mean ratio of change.

    python -m amuro.aggregate --metrics results/metrics/*.csv \\
        --manifest tiny=results/pretrain/tiny/manifest.json \\
        --perf results/perf.csv --mrc results/mrc.csv \\
        --mrc-format default --mrc-base-shots 4 --mrc-ft-shots 0 --log-summary

perf.csv has one row per (model, step, tuning, train_task, eval_set, role, format, shots, metric)
with eval_task, eval_type, tokens (from the checkpoint manifest; empty without one), value, n,
n_truncated and scoring. Every figure and summary table is a query over it. mrc.csv: see
amuro.mrc. Outputs are written atomically, so a failed run leaves no partial file.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import polars as pl

from amuro import mrc
from amuro.errors import AmuroError, run_cli
from amuro.io import atomic_path

# The evaluation step's output, column for column; read with these dtypes, never inferred.
METRICS_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String(),
    "step": pl.Int64(),
    "tuning": pl.String(),
    "train_task": pl.String(),
    "eval_task": pl.String(),
    "eval_type": pl.String(),
    "eval_set": pl.String(),
    "role": pl.String(),
    "format": pl.String(),
    "shots": pl.Int64(),
    "metric": pl.String(),
    "value": pl.Float64(),
    "n": pl.Int64(),
    "n_truncated": pl.Int64(),
    "scoring": pl.String(),
}
# May be empty: train_task for base models; scoring is descriptive only.
OPTIONAL_COLUMNS = {"train_task", "scoring"}
EVAL_TYPES = set(mrc.EVAL_TYPES)
ROLES = {"ID", "OOD", "cross"}

# A score is identified by this; role is a property of the set, so it is not part of it.
SCORE_KEY = ["model", "step", "tuning", "train_task", "eval_set", "format", "shots", "metric"]
PERF_SORT = ["model", "step", "tuning", "train_task", "eval_set", "role", "format", "shots",
             "metric"]
PERF_COLUMNS = [
    "model", "step", "tokens", "tuning", "train_task", "eval_task", "eval_type", "eval_set",
    "role", "format", "shots", "metric", "value", "n", "n_truncated", "scoring",
]
SOURCE = "_source"  # which file a row came from, for error messages; never written out

SLUG_EQUALS = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)=(.+)$")


def _header(path: Path) -> list[str]:
    if not path.is_file():
        raise AmuroError(f"{path}: file not found")
    with path.open(newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh), [])


def read_metrics_file(path: str | Path) -> pl.DataFrame:
    """One metrics CSV, checked: exact columns, dtypes, no empty required fields, known values."""
    path = Path(path)
    header = _header(path)
    missing = [c for c in METRICS_SCHEMA if c not in header]
    extra = [c for c in header if c not in METRICS_SCHEMA]
    if missing:
        raise AmuroError(f"{path}: missing column(s) {', '.join(missing)}")
    if extra:
        raise AmuroError(f"{path}: unexpected column(s) {', '.join(extra)}")
    if len(set(header)) != len(header):
        raise AmuroError(f"{path}: repeated column name in header")
    try:
        df = pl.read_csv(path, schema_overrides=METRICS_SCHEMA, infer_schema=False)
    except pl.exceptions.PolarsError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AmuroError(f"{path}: cannot read ({first})") from None
    # "" and a quoted "" both mean "no value" (base models have no train_task).
    df = df.select(list(METRICS_SCHEMA)).with_columns(
        pl.when(pl.col(c).str.strip_chars() != "").then(pl.col(c)).alias(c)
        for c, t in METRICS_SCHEMA.items()
        if t == pl.String()
    )
    _check_values(df, path)
    return df.with_columns(pl.lit(str(path)).alias(SOURCE))


def _check_values(df: pl.DataFrame, path: Path) -> None:
    def fail(mask: pl.Expr, what: str) -> None:
        bad = df.with_row_index("line", offset=2).filter(mask)
        if bad.height:
            raise AmuroError(f"{path}:{bad['line'][0]}: {what} ({bad.height} row(s))")

    for col in METRICS_SCHEMA:
        if col not in OPTIONAL_COLUMNS:
            fail(pl.col(col).is_null(), f"empty {col}")
    fail(~pl.col("eval_type").is_in(sorted(EVAL_TYPES)),
         f"eval_type must be one of {', '.join(sorted(EVAL_TYPES))}")
    fail(~pl.col("role").is_in(sorted(ROLES)), f"role must be one of {', '.join(sorted(ROLES))}")
    is_base = pl.col("tuning") == mrc.BASE_TUNING
    fail(is_base & pl.col("train_task").is_not_null(), "base model with a train_task")
    fail(~is_base & pl.col("train_task").is_null(), "fine-tuned model without a train_task")
    # MRC picks cross-task sets by role; a contradicting row would be silently excluded.
    fail((pl.col("role") == mrc.CROSS_ROLE) & (is_base | (pl.col("eval_task") == pl.col(
        "train_task"))), "role cross needs a fine-tuned model and eval_task != train_task")
    fail(pl.col("value").is_nan(), "value is NaN")
    fail((pl.col("n") < 0) | (pl.col("n_truncated") < 0) | (pl.col("n_truncated") > pl.col("n")),
         "n and n_truncated must satisfy 0 <= n_truncated <= n")
    fail(pl.col("shots") < 0, "negative shots")


def read_metrics(paths: list[str | Path]) -> pl.DataFrame:
    """All metrics files, concatenated; refuses a score that appears twice."""
    frames = [read_metrics_file(p) for p in paths]
    if not frames:
        raise AmuroError("no metrics files given")
    df = pl.concat(frames, how="vertical")
    dup = (
        df.group_by(SCORE_KEY)
        .agg(pl.len().alias("count"), pl.col(SOURCE).unique().sort().alias("files"))
        .filter(pl.col("count") > 1)
        .sort(SCORE_KEY, nulls_last=False)
    )
    if dup.height:
        row = dup.row(0, named=True)
        key = ", ".join(f"{k}={row[k] if row[k] is not None else ''}" for k in SCORE_KEY)
        more = f" (and {dup.height - 1} more duplicated key(s))" if dup.height > 1 else ""
        raise AmuroError(
            f"duplicate score {key} appears {row['count']} times in "
            f"{', '.join(row['files'])}{more}"
        )
    return df


def read_manifest(spec: str, models: list[str]) -> pl.DataFrame:
    """A checkpoint manifest as (model, step, tokens).

    `spec` is MODEL=PATH, or PATH when the JSON names its series ("model") or only one model
    series is being aggregated.
    """
    match = SLUG_EQUALS.match(spec)
    model, path = (match.group(1), Path(match.group(2))) if match else (None, Path(spec))
    if not path.is_file():
        raise AmuroError(f"{path}: manifest not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AmuroError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("checkpoints"), list):
        raise AmuroError(f"{path}: expected an object with a 'checkpoints' list")
    if model is None:
        model = data.get("model")
    if model is None:
        if len(models) != 1:
            raise AmuroError(f"{path}: say which model series it belongs to: --manifest MODEL=PATH")
        model = models[0]
    rows = []
    for i, ck in enumerate(data["checkpoints"]):
        step, tokens = (ck.get("step"), ck.get("tokens")) if isinstance(ck, dict) else (None, None)
        if not (isinstance(step, int) and isinstance(tokens, int)) or isinstance(step, bool):
            raise AmuroError(f"{path}: checkpoints[{i}] needs integer 'step' and 'tokens'")
        rows.append((model, step, tokens))
    df = pl.DataFrame(rows, schema={"model": pl.String, "step": pl.Int64, "tokens": pl.Int64},
                      orient="row")
    clash = df.group_by("model", "step").agg(pl.col("tokens").n_unique()).filter(
        pl.col("tokens") > 1)
    if clash.height:
        raise AmuroError(f"{path}: step {clash['step'].min()} listed with different token counts")
    return df.unique(maintain_order=True)


def attach_tokens(metrics: pl.DataFrame, manifests: list[pl.DataFrame]) -> pl.DataFrame:
    """Add `tokens` per (model, step); every step of a model with a manifest must be listed."""
    if not manifests:
        return metrics.with_columns(tokens=pl.lit(None, dtype=pl.Int64))
    table = pl.concat(manifests).unique()
    clash = table.group_by("model", "step").len().filter(pl.col("len") > 1)
    if clash.height:
        row = clash.sort("model", "step").row(0, named=True)
        raise AmuroError(f"manifests disagree on tokens for {row['model']} step {row['step']}")
    out = metrics.join(table, on=["model", "step"], how="left")
    with_manifest = table["model"].unique().to_list()
    unlisted = (
        out.filter(pl.col("tokens").is_null() & pl.col("model").is_in(with_manifest))
        .select("model", "step").unique().sort("model", "step")
    )
    if unlisted.height:
        row = unlisted.row(0, named=True)
        raise AmuroError(
            f"model {row['model']} step {row['step']} is not in its checkpoint manifest "
            f"({unlisted.height} step(s) missing)"
        )
    return out


def build_perf(metrics: pl.DataFrame) -> pl.DataFrame:
    """The tidy perf table: fixed columns, deterministic row order."""
    return metrics.select(PERF_COLUMNS).sort(PERF_SORT, nulls_last=False)


def _write_csv(df: pl.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.write_csv(tmp)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m amuro.aggregate",
        description="Merge per-model metrics CSVs into perf.csv and compute the mean ratio of "
        "change (paper §6.2) into mrc.csv.",
    )
    p.add_argument("--metrics", nargs="+", required=True, metavar="CSV",
                   help="per-model metrics CSVs written by the evaluation step")
    p.add_argument("--manifest", nargs="*", default=[], metavar="[MODEL=]JSON",
                   help="checkpoint manifests ({'checkpoints': [{'step', 'tokens'}...]}) giving "
                   "the tokens column; MODEL= may be left out if the JSON has a 'model' key or "
                   "only one model series is aggregated")
    p.add_argument("--perf", required=True, metavar="CSV", help="output: the tidy perf table")
    p.add_argument("--mrc", metavar="CSV",
                   help="output: mean ratio of change per fine-tuned model (skipped if absent)")
    p.add_argument("--mrc-format", default="default",
                   help="prompt format both sides of the MRC are read in (default: %(default)s)")
    p.add_argument("--mrc-base-shots", type=int, default=4,
                   help="shots of the base checkpoint in the MRC (default: %(default)s)")
    p.add_argument("--mrc-ft-shots", type=int, default=0,
                   help="shots of the fine-tuned model in the MRC (default: %(default)s)")
    p.add_argument("--log-summary", action="store_true",
                   help="list every cross-task set left out of the MRC, with the reason")
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    metrics = read_metrics(args.metrics)
    models = sorted(metrics["model"].unique().to_list())
    manifests = [read_manifest(spec, models) for spec in args.manifest]
    perf = build_perf(attach_tokens(metrics, manifests))

    no_tokens = sorted(perf.filter(pl.col("tokens").is_null())["model"].unique().to_list())
    result = None
    if args.mrc:
        try:
            pairs = mrc.cross_task_pairs(perf, args.mrc_format, args.mrc_base_shots,
                                         args.mrc_ft_shots)
            result = mrc.mean_ratio_of_change(perf, args.mrc_format, args.mrc_base_shots,
                                              args.mrc_ft_shots)
        except ValueError as err:
            raise AmuroError(f"mrc: {err}") from None

    # Write only after every check passed, so inputs that fail leave no outputs behind.
    _write_csv(perf, args.perf)
    print(f"aggregate: {perf.height} row(s) from {len(args.metrics)} file(s) -> {args.perf}",
          file=sys.stderr)
    if no_tokens:
        print(f"aggregate: no manifest, tokens left empty for: {', '.join(no_tokens)}",
              file=sys.stderr)
    if result is not None:
        _write_csv(result, args.mrc)
        _print_mrc_summary(result, mrc.skipped_sets(pairs), args)


def _print_mrc_summary(result: pl.DataFrame, skipped: pl.DataFrame, args) -> None:
    print(f"mrc: {result.height} row(s) (format {args.mrc_format}, base {args.mrc_base_shots}-shot,"
          f" fine-tuned {args.mrc_ft_shots}-shot) -> {args.mrc}", file=sys.stderr)
    empty = result.filter(pl.col("n_sets") == 0).height
    if empty:
        print(f"mrc: {empty} fine-tuned model(s) with no usable cross-task set (MRC empty)",
              file=sys.stderr)
    for reason, label in ((mrc.ZERO_BASE, "base score 0, left out of the ratio"),
                          (mrc.MISSING_BASE, "no base row, left out")):
        rows = skipped.filter(pl.col("reason") == reason)
        if rows.height:
            print(f"mrc: {rows.height} set(s) skipped: {label}", file=sys.stderr)
        if args.log_summary:
            for r in rows.iter_rows(named=True):
                print(f"mrc:   {reason}: {r['model']} step {r['step']} {r['tuning']}/"
                      f"{r['train_task']} on {r['eval_set']} ({r['metric']})", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
