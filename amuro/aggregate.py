"""Gather per-model metrics CSVs into one tidy perf table with intervals, and FT-vs-base diffs.

    python -m amuro.aggregate --metrics results/eval/*/*/*/metrics.csv \\
        --manifest tiny=results/checkpoints/tiny/manifest.json \\
        --perf results/perf.csv --diff results/ft_vs_base.csv --scores results/scores.parquet \\
        --base-shots 4 --ft-shots 4 --bootstrap-resamples 1000 --bootstrap-seed 1

perf.csv (columns: amuro.schema.PERF_COLUMNS) has one row per (model, step, tuning,
train_task, seed, eval_set, role, format, shots, metric) with eval_task, eval_type, tokens (from
the checkpoint manifest; empty without one), value, ci_low, ci_high, n, n_truncated, top_share
and empty_share (share of the most frequent and of empty predictions, from predictions.jsonl)
and scoring. `seed` is the fine-tuning seed (0 for base checkpoints; a metrics file without the
column is read as seed 0). Every figure and summary table is a query over it.
ft_vs_base.csv (--diff): every eval set of every fine-tuned model (ft shots, averaged over its
seeds) against its base checkpoint (base shots) on the same items, with n_seeds.
scores.parquet (--scores): every per-example score, for the intervals of the analysis tables
(python -m amuro.tables). Outputs are written atomically, so a failed run leaves no partial
file.

Uncertainty (amuro.bootstrap): every metrics CSV must have its `predictions.jsonl` beside it
(one row per scored example, as the evaluation step writes it); the per-example scores must
reproduce the metrics row's n and value. perf.csv CIs are percentile-bootstrap CIs of each
cell's mean (each seed its own cell), each seeded with the --bootstrap-seed plus a CRC32 of its
key, so results do not depend on the order of the input files. FT-vs-base CIs pair items by
`id` (an id not scored by every seed of both sides is left out of the paired statistic and
counted in the summary) and come from the study's joint bootstrap (amuro.bootstrap.
JointBootstrap: items of each eval set and fine-tuning seeds resampled together, the same draws
as the analysis tables). With --bootstrap-resamples 0 every CI equals its point estimate.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path

import polars as pl

from amuro import bootstrap
from amuro.analysis.scores import (
    BASE_TUNING,
    CELL_KEY,
    SOURCE,
    Cell,
    Pairing,
    ScoreBook,
    cell_seed,
    collapse_seeds,
    read_scores_and_shares,
    write_scores,
)
from amuro.errors import AmuroError, run_cli
from amuro.io import atomic_path
from amuro.schema import PERF_COLUMNS

# The evaluation step's output, column for column; read with these dtypes, never inferred.
METRICS_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String(),
    "step": pl.Int64(),
    "tuning": pl.String(),
    "train_task": pl.String(),
    "seed": pl.Int64(),
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
# May be absent from the header (files written before fine-tuning seeds): read as 0.
DEFAULTED_COLUMNS = {"seed": 0}
EVAL_TYPES = {"classification", "generation", "multiple_choice"}
FT_KEY = ["model", "step", "tuning", "train_task"]
ROLES = {"ID", "OOD", "cross"}

# A score is identified by this; role is a property of the set, so it is not part of it.
SCORE_KEY = ["model", "step", "tuning", "train_task", "seed", "eval_set", "format", "shots",
             "metric"]
PERF_SORT = ["model", "step", "tuning", "train_task", "seed", "eval_set", "role", "format",
             "shots", "metric"]
DIFF_COLUMNS = [
    "model", "step", "tokens", "tuning", "train_task", "eval_task", "eval_type", "eval_set",
    "role", "format", "metric", "base_shots", "ft_shots", "base_value", "ft_value", "diff",
    "diff_ci_low", "diff_ci_high", "n_paired", "n_unpaired", "n_seeds",
]
DIFF_SORT = ["model", "step", "tuning", "train_task", "eval_set", "role", "format", "metric"]

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
    missing = [c for c in METRICS_SCHEMA if c not in header and c not in DEFAULTED_COLUMNS]
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
    df = df.with_columns(pl.lit(v, dtype=METRICS_SCHEMA[c]).alias(c)
                         for c, v in DEFAULTED_COLUMNS.items() if c not in header)
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
    is_base = pl.col("tuning") == BASE_TUNING
    fail(is_base & pl.col("train_task").is_not_null(), "base model with a train_task")
    fail(pl.col("seed") < 0, "negative seed")
    fail(is_base & (pl.col("seed") != 0), "base model with a fine-tuning seed other than 0")
    fail(~is_base & pl.col("train_task").is_null(), "fine-tuned model without a train_task")
    # The MRC picks cross-task sets by role; a contradicting row would be silently excluded.
    fail((pl.col("role") == "cross") & (is_base | (pl.col("eval_task") == pl.col(
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
        # tokens may be null: a gguf file or a named revision need not say how many it saw
        if (not isinstance(step, int) or isinstance(step, bool)
                or not (tokens is None or isinstance(tokens, int))):
            raise AmuroError(f"{path}: checkpoints[{i}] needs an integer 'step' and an integer "
                             f"or null 'tokens'")
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
        metrics.filter(pl.col("model").is_in(with_manifest))
        .join(table, on=["model", "step"], how="anti")
        .select("model", "step").unique().sort("model", "step")
    )
    if unlisted.height:
        row = unlisted.row(0, named=True)
        raise AmuroError(
            f"model {row['model']} step {row['step']} is not in its checkpoint manifest "
            f"({unlisted.height} step(s) missing)"
        )
    return out


def build_perf(metrics: pl.DataFrame, shares: dict[tuple, tuple] | None = None) -> pl.DataFrame:
    """The tidy perf table without its CIs (see add_perf_ci): fixed columns, sorted.

    `shares` ({CELL_KEY tuple: (top_share, empty_share)}, from read_scores_and_shares) fills
    top_share and empty_share; cells missing from it get nulls."""
    shares = shares or {}
    keys = [tuple(r) for r in metrics.select(CELL_KEY).iter_rows()]
    top = [shares.get(k, (None, None))[0] for k in keys]
    empty = [shares.get(k, (None, None))[1] for k in keys]
    metrics = metrics.with_columns(top_share=pl.Series(top, dtype=pl.Float64),
                                   empty_share=pl.Series(empty, dtype=pl.Float64))
    cols = [c for c in PERF_COLUMNS if c not in ("ci_low", "ci_high")]
    return metrics.select(cols).sort(PERF_SORT, nulls_last=False)


def add_perf_ci(perf: pl.DataFrame, scores: dict[tuple, Cell], n_resamples: int,
                seed: int) -> pl.DataFrame:
    """ci_low / ci_high: percentile-bootstrap CI of each cell's mean score (one seed)."""
    low, high = [], []
    for r in perf.iter_rows(named=True):
        if n_resamples == 0:
            lo = hi = r["value"]
        else:
            key = [r[k] for k in CELL_KEY]
            _, cell = scores[tuple(key)]
            lo, hi = bootstrap.mean_ci(cell, n_resamples, cell_seed(seed, "perf", *key))
            if math.isnan(lo):  # no scored example
                lo = hi = None
            elif lo == hi:  # degenerate (one item, or all scores equal): exactly the value
                lo = hi = r["value"]
        low.append(lo)
        high.append(hi)
    return perf.with_columns(
        ci_low=pl.Series(low, dtype=pl.Float64), ci_high=pl.Series(high, dtype=pl.Float64)
    ).select(PERF_COLUMNS)


def ft_vs_base(perf: pl.DataFrame, pairing: Pairing, n_resamples: int,
               seed: int) -> pl.DataFrame:
    """Every eval set of every fine-tuned model (ft shots) vs its base checkpoint (base shots).

    One row per fine-tuned cell pooled over its seeds (n_seeds). base_value / ft_value / diff
    are means over the items every seed of both sides scored (n_paired; the fine-tuned side
    averaged over its seeds); n_unpaired counts ids left out. The interval comes from the
    study's joint bootstrap (items and seeds). Rows without a base cell keep null values.
    """
    joint = pairing.book.joint(n_resamples, seed)
    ft = collapse_seeds(perf.filter((pl.col("tuning") != BASE_TUNING)
                                    & (pl.col("shots") == pairing.ft_shots)))
    rows = []
    for r in ft.iter_rows(named=True):
        key = [r[k] for k in FT_KEY]
        pair = pairing.pair(*key, r["eval_set"], r["format"], r["metric"])
        out = {k: r[k] for k in DIFF_COLUMNS if k in r}
        out.update(base_shots=pairing.base_shots, ft_shots=pairing.ft_shots, base_value=None,
                   ft_value=None, diff=None, diff_ci_low=None, diff_ci_high=None, n_paired=0,
                   n_seeds=r["n_seeds"])
        if pair is not None and pair.size:
            f, b = pair.means()
            point, lo, hi = joint.ci([pair], "diff")
            out.update(base_value=b, ft_value=f, diff=point, diff_ci_low=lo, diff_ci_high=hi,
                       n_paired=pair.size, n_seeds=pair.a.shape[0])
        out["n_unpaired"] = pairing.unpaired_counts(*key, r["eval_set"], r["format"],
                                                    r["metric"])
        rows.append(out)
    schema = {c: perf.schema[c] for c in DIFF_COLUMNS if c in perf.columns}
    schema.update(base_shots=pl.Int64, ft_shots=pl.Int64, base_value=pl.Float64,
                  ft_value=pl.Float64, diff=pl.Float64, diff_ci_low=pl.Float64,
                  diff_ci_high=pl.Float64, n_paired=pl.Int64, n_unpaired=pl.Int64,
                  n_seeds=pl.Int64)
    df = pl.DataFrame(rows, schema={c: schema[c] for c in DIFF_COLUMNS})
    return df.sort(DIFF_SORT, nulls_last=False)


def _write_csv(df: pl.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.write_csv(tmp)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m amuro.aggregate",
        description="Merge per-model metrics CSVs into perf.csv (with bootstrap CIs), pair every "
        "fine-tuned cell with its base checkpoint (ft_vs_base.csv) and store every "
        "per-example score (scores.parquet) for the analysis tables.",
    )
    p.add_argument("--metrics", nargs="+", required=True, metavar="CSV",
                   help="per-model metrics CSVs written by the evaluation step")
    p.add_argument("--manifest", nargs="*", default=[], metavar="[MODEL=]JSON",
                   help="checkpoint manifests ({'checkpoints': [{'step', 'tokens'}...]}) giving "
                   "the tokens column; MODEL= may be left out if the JSON has a 'model' key or "
                   "only one model series is aggregated")
    p.add_argument("--perf", required=True, metavar="CSV", help="output: the tidy perf table")
    p.add_argument("--diff", metavar="CSV",
                   help="output: every eval set of every fine-tuned model (ft shots) against its "
                   "base checkpoint (base shots) on the same items, with a paired CI")
    p.add_argument("--scores", metavar="PARQUET",
                   help="output: every per-example score (model, step, tuning, train_task, "
                   "eval_set, format, shots, id, score)")
    p.add_argument("--base-shots", type=int, default=4,
                   help="shots of the base checkpoint in ft_vs_base (default: %(default)s)")
    p.add_argument("--ft-shots", type=int, default=4,
                   help="shots of the fine-tuned model in ft_vs_base (default: %(default)s)")
    p.add_argument("--bootstrap-resamples", type=int, default=1000, metavar="N",
                   help="bootstrap resamples per CI (default: %(default)s; 0: no resampling, "
                   "every CI equals its point estimate)")
    p.add_argument("--bootstrap-seed", type=int, default=1, metavar="S",
                   help="base seed of the bootstrap (default: %(default)s)")
    p.add_argument("--log-summary", action="store_true",
                   help="list every FT/base pair whose item ids do not match")
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.bootstrap_resamples < 0:
        raise AmuroError(f"--bootstrap-resamples must be >= 0, got {args.bootstrap_resamples}")
    metrics = read_metrics(args.metrics)
    models = sorted(metrics["model"].unique().to_list())
    manifests = [read_manifest(spec, models) for spec in args.manifest]
    cells, shares = read_scores_and_shares(metrics)
    perf = build_perf(attach_tokens(metrics, manifests), shares)
    n_boot, seed = args.bootstrap_resamples, args.bootstrap_seed
    perf = add_perf_ci(perf, cells, n_boot, seed)
    pairing = Pairing(ScoreBook(cells), args.base_shots, args.ft_shots)
    no_tokens = sorted(perf.filter(pl.col("tokens").is_null())["model"].unique().to_list())
    diff = ft_vs_base(perf, pairing, n_boot, seed) if args.diff else None

    # Write only after every check passed, so inputs that fail leave no outputs behind.
    _write_csv(perf, args.perf)
    print(f"aggregate: {perf.height} row(s) from {len(args.metrics)} file(s) -> {args.perf}",
          file=sys.stderr)
    if no_tokens:
        print("aggregate: tokens seen unknown (no manifest, or null there) for: "
              f"{', '.join(no_tokens)}", file=sys.stderr)
    if diff is not None:
        _write_csv(diff, args.diff)
    if args.scores:
        write_scores(cells, args.scores)
        print(f"aggregate: {sum(len(c[0]) for c in cells.values())} per-example score(s) in "
              f"{len(cells)} cell(s) -> {args.scores}", file=sys.stderr)
    print(f"bootstrap: {n_boot} resample(s), seed {seed}, 95% percentile CIs"
          + ("" if n_boot else " (disabled: CIs equal the point estimates)"), file=sys.stderr)
    if diff is not None:
        print(f"diff: {diff.height} row(s) (fine-tuned {args.ft_shots}-shot vs base "
              f"{args.base_shots}-shot) -> {args.diff}", file=sys.stderr)
    _print_unpaired(pairing.book, args.log_summary)


def _print_unpaired(book: ScoreBook, verbose: bool) -> None:
    if not book.unpaired:
        return
    only_ft = sum(a for a, _ in book.unpaired.values())
    only_base = sum(b for _, b in book.unpaired.values())
    print(f"bootstrap: {len(book.unpaired)} FT/base pair(s) with unmatched item ids: "
          f"{only_ft} id(s) only in the fine-tuned predictions, {only_base} only in the base "
          f"predictions (left out of the paired CIs and ft_vs_base means)", file=sys.stderr)
    if verbose:
        for key in sorted(book.unpaired, key=str):
            (model, step, tuning, train_task, eval_set, fmt, _, _), _base = key
            a, b = book.unpaired[key]
            print(f"bootstrap:   unpaired: {model} step {step} {tuning}/{train_task} on "
                  f"{eval_set} ({fmt}): {a} FT-only, {b} base-only", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
