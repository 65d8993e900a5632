"""Gather per-model metrics CSVs into one tidy perf table, and derive the mean ratio of change.

    python -m amuro.aggregate --metrics results/metrics/*.csv \\
        --manifest tiny=results/pretrain/tiny/manifest.json \\
        --perf results/perf.csv --mrc results/mrc.csv \\
        --mrc-format default --mrc-base-shots 4 --mrc-ft-shots 0 --log-summary \\
        --diff results/ft_vs_base.csv --bootstrap-resamples 1000 --bootstrap-seed 1

perf.csv has one row per (model, step, tuning, train_task, eval_set, role, format, shots, metric)
with eval_task, eval_type, tokens (from the checkpoint manifest; empty without one), value,
ci_low, ci_high, n, n_truncated and scoring. Every figure and summary table is a query over it.
mrc.csv: see amuro.mrc, plus mrc_ci_low_percent / mrc_ci_high_percent. ft_vs_base.csv (--diff):
every eval set of every fine-tuned model (ft shots) against its base checkpoint (base shots) on
the same items. Outputs are written atomically, so a failed run leaves no partial file.

Uncertainty (amuro.bootstrap): every metrics CSV must have its `predictions.jsonl` beside it
(one row per scored example, as the evaluation step writes it); the per-example scores must
reproduce the metrics row's n and value. perf.csv CIs are percentile-bootstrap CIs of each
cell's mean; FT-vs-base CIs pair items by `id` (an id on only one side is left out of the paired
statistic and counted in the summary); the MRC CI resamples items within each cross-task set,
jointly for the fine-tuned and the base model. Each cell is seeded with the --bootstrap-seed
plus a CRC32 of its key, so results do not depend on the order of the input files. With
--bootstrap-resamples 0 every CI equals its point estimate.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import zlib
from pathlib import Path

import numpy as np
import polars as pl

from amuro import bootstrap, mrc
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
    "role", "format", "shots", "metric", "value", "ci_low", "ci_high", "n", "n_truncated",
    "scoring",
]
DIFF_COLUMNS = [
    "model", "step", "tokens", "tuning", "train_task", "eval_task", "eval_type", "eval_set",
    "role", "format", "metric", "base_shots", "ft_shots", "base_value", "ft_value", "diff",
    "diff_ci_low", "diff_ci_high", "n_paired", "n_unpaired",
]
DIFF_SORT = ["model", "step", "tuning", "train_task", "eval_set", "role", "format", "metric"]
PREDICTIONS = "predictions.jsonl"  # written by the evaluation step beside its metrics.csv
# What identifies one scored cell (one row of perf.csv minus the metric) across all files.
CELL_KEY = ["model", "step", "tuning", "train_task", "eval_set", "format", "shots"]
MEAN_TOLERANCE = 1e-9
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
    """The tidy perf table without its CIs (see add_perf_ci): fixed columns, sorted."""
    cols = [c for c in PERF_COLUMNS if c not in ("ci_low", "ci_high")]
    return metrics.select(cols).sort(PERF_SORT, nulls_last=False)


# --- per-example scores -------------------------------------------------------------------------

# One cell's scored examples: item ids (as strings) and their scores, in file order.
Cell = tuple[list[str], np.ndarray]


def predictions_path(metrics_path: str | Path) -> Path:
    return Path(metrics_path).parent / PREDICTIONS


def read_predictions(path: str | Path) -> dict[tuple[str, str, int], Cell]:
    """A predictions.jsonl as {(eval_set, format, shots): (ids, scores)}, checked line by line."""
    path = Path(path)
    if not path.is_file():
        raise AmuroError(f"{path}: file not found (per-example scores are needed for the CIs)")
    cells: dict[tuple[str, str, int], tuple[list[str], list[float], set[str]]] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise AmuroError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(rec, dict):
                raise AmuroError(f"{path}:{lineno}: expected a JSON object")
            eval_set, fmt, shots = rec.get("eval_set"), rec.get("format"), rec.get("shots")
            item, score = rec.get("id"), rec.get("score")
            if not (isinstance(eval_set, str) and isinstance(fmt, str)):
                raise AmuroError(f"{path}:{lineno}: eval_set and format must be strings")
            if not isinstance(shots, int) or isinstance(shots, bool):
                raise AmuroError(f"{path}:{lineno}: shots must be an integer")
            if not isinstance(item, (str, int)) or isinstance(item, bool):
                raise AmuroError(f"{path}:{lineno}: id must be a string or an integer")
            if (not isinstance(score, (int, float)) or isinstance(score, bool)
                    or not math.isfinite(score)):
                raise AmuroError(f"{path}:{lineno}: score must be a finite number")
            ids, scores, seen = cells.setdefault((eval_set, fmt, shots), ([], [], set()))
            if str(item) in seen:
                raise AmuroError(f"{path}:{lineno}: id {item} repeated in eval_set={eval_set} "
                                 f"format={fmt} shots={shots}")
            seen.add(str(item))
            ids.append(str(item))
            scores.append(float(score))
    return {k: (ids, np.asarray(scores, dtype=float)) for k, (ids, scores, _) in cells.items()}


def _cell_name(eval_set, fmt, shots) -> str:
    return f"eval_set={eval_set} format={fmt} shots={shots}"


def read_scores(metrics: pl.DataFrame) -> dict[tuple, Cell]:
    """Per-example scores of every metrics row, keyed by CELL_KEY values.

    Each metrics file's sibling predictions.jsonl must hold exactly its cells, with as many
    scores as the row's n and their mean equal to its value (within MEAN_TOLERANCE).
    """
    out: dict[tuple, Cell] = {}
    for source in sorted(metrics[SOURCE].unique().to_list()):
        rows = metrics.filter(pl.col(SOURCE) == source)
        dup = rows.group_by("eval_set", "format", "shots").len().filter(pl.col("len") > 1)
        if dup.height:
            r = dup.sort("eval_set", "format", "shots").row(0, named=True)
            name = _cell_name(r["eval_set"], r["format"], r["shots"])
            raise AmuroError(f"{source}: several rows for {name}; cannot match them to "
                             f"{PREDICTIONS}")
        pred_path = predictions_path(source)
        cells = read_predictions(pred_path)
        wanted = set()
        for r in rows.iter_rows(named=True):
            cell = (r["eval_set"], r["format"], r["shots"])
            wanted.add(cell)
            ids, scores = cells.get(cell, ([], np.zeros(0)))
            name = _cell_name(*cell)
            if scores.size != r["n"]:
                raise AmuroError(f"{pred_path}: {name} has {scores.size} scored example(s), "
                                 f"{source} says n={r['n']}")
            if scores.size and abs(float(scores.mean()) - r["value"]) > MEAN_TOLERANCE:
                raise AmuroError(f"{pred_path}: {name} scores average {float(scores.mean())!r}, "
                                 f"{source} says value={r['value']!r}")
            out[tuple(r[k] for k in CELL_KEY)] = (ids, scores)
        extra = sorted(set(cells) - wanted)
        if extra:
            raise AmuroError(f"{pred_path}: {_cell_name(*extra[0])} has no row in {source} "
                             f"({len(extra)} such cell(s))")
    return out


def cell_seed(seed: int, *key) -> int:
    """A seed per cell, independent of the order rows or files come in."""
    text = "|".join("" if k is None else str(k) for k in key)
    return seed + zlib.crc32(text.encode("utf-8"))


def add_perf_ci(perf: pl.DataFrame, scores: dict[tuple, Cell], n_resamples: int,
                seed: int) -> pl.DataFrame:
    """ci_low / ci_high: percentile-bootstrap CI of each cell's mean score."""
    low, high = [], []
    for r in perf.iter_rows(named=True):
        if n_resamples == 0:
            lo = hi = r["value"]
        else:
            key = [r[k] for k in CELL_KEY]
            _, cell = scores[tuple(key)]
            lo, hi = bootstrap.mean_ci(cell, n_resamples, cell_seed(seed, "perf", *key,
                                                                    r["metric"]))
            if math.isnan(lo):  # no scored example
                lo = hi = None
            elif lo == hi:  # degenerate (one item, or all scores equal): exactly the value
                lo = hi = r["value"]
        low.append(lo)
        high.append(hi)
    return perf.with_columns(
        ci_low=pl.Series(low, dtype=pl.Float64), ci_high=pl.Series(high, dtype=pl.Float64)
    ).select(PERF_COLUMNS)


class Pairing:
    """Matches a fine-tuned cell with its base cell by item id; remembers one-sided ids."""

    def __init__(self, scores: dict[tuple, Cell], base_shots: int, ft_shots: int):
        self.scores, self.base_shots, self.ft_shots = scores, base_shots, ft_shots
        self.unpaired: dict[tuple, tuple[int, int]] = {}  # (ft key..., eval_set, fmt) -> counts

    def pair(self, model, step, tuning, train_task, eval_set, fmt):
        """(ft scores, base scores) over the ids both sides scored, sorted by id; None if a
        side has no cell."""
        ft = self.scores.get((model, step, tuning, train_task, eval_set, fmt, self.ft_shots))
        base = self.scores.get((model, step, mrc.BASE_TUNING, None, eval_set, fmt,
                                self.base_shots))
        if ft is None or base is None:
            return None
        ft_pos = {i: k for k, i in enumerate(ft[0])}
        base_pos = {i: k for k, i in enumerate(base[0])}
        both = sorted(ft_pos.keys() & base_pos.keys())
        only_ft, only_base = len(ft_pos) - len(both), len(base_pos) - len(both)
        if only_ft or only_base:
            self.unpaired[(model, step, tuning, train_task, eval_set, fmt)] = (only_ft, only_base)
        f = ft[1][[ft_pos[i] for i in both]] if both else np.zeros(0)
        b = base[1][[base_pos[i] for i in both]] if both else np.zeros(0)
        return f, b


def add_mrc_ci(result: pl.DataFrame, pairs: pl.DataFrame, pairing: Pairing, fmt: str,
               n_resamples: int, seed: int) -> pl.DataFrame:
    """mrc_ci_low_percent / mrc_ci_high_percent for each row of mrc.mean_ratio_of_change()."""
    ok = pairs.filter(pl.col("status") == mrc.OK)
    low, high = [], []
    for r in result.iter_rows(named=True):
        key = [r[k] for k in mrc.FT_KEY]
        if r["mrc_percent"] is None:
            lo = hi = None
        elif n_resamples == 0:
            lo = hi = r["mrc_percent"]
        else:
            sets = ok.filter(*[pl.col(k) == v if v is not None else pl.col(k).is_null()
                               for k, v in zip(mrc.FT_KEY, key, strict=True)])
            vectors = []
            for eval_set in sets["eval_set"].to_list():
                pair = pairing.pair(*key, eval_set, fmt)
                if pair is not None:
                    vectors.append(pair)
            lo, hi = bootstrap.mrc_ci(vectors, n_resamples, cell_seed(seed, "mrc", *key, fmt))
            lo, hi = (None, None) if math.isnan(lo) else (lo * 100, hi * 100)
        low.append(lo)
        high.append(hi)
    return result.with_columns(
        mrc_ci_low_percent=pl.Series(low, dtype=pl.Float64),
        mrc_ci_high_percent=pl.Series(high, dtype=pl.Float64),
    ).select(mrc.MRC_CSV_COLUMNS)


def ft_vs_base(perf: pl.DataFrame, pairing: Pairing, n_resamples: int,
               seed: int) -> pl.DataFrame:
    """Every eval set of every fine-tuned model (ft shots) vs its base checkpoint (base shots).

    base_value / ft_value / diff are means over the items both sides scored (n_paired);
    n_unpaired counts ids scored on one side only. Rows without a base cell keep null values.
    """
    ft = perf.filter((pl.col("tuning") != mrc.BASE_TUNING)
                     & (pl.col("shots") == pairing.ft_shots))
    rows = []
    for r in ft.iter_rows(named=True):
        key = [r[k] for k in mrc.FT_KEY]
        pair = pairing.pair(*key, r["eval_set"], r["format"])
        out = {k: r[k] for k in DIFF_COLUMNS if k in r}
        out.update(base_shots=pairing.base_shots, ft_shots=pairing.ft_shots, base_value=None,
                   ft_value=None, diff=None, diff_ci_low=None, diff_ci_high=None, n_paired=0,
                   n_unpaired=sum(pairing.unpaired.get((*key, r["eval_set"], r["format"]),
                                                       (0, 0))))
        if pair is not None and pair[0].size:
            f, b = pair
            out.update(base_value=float(b.mean()), ft_value=float(f.mean()), n_paired=f.size)
            out["diff"] = out["ft_value"] - out["base_value"]
            if n_resamples == 0:
                out["diff_ci_low"] = out["diff_ci_high"] = out["diff"]
            else:
                out["diff_ci_low"], out["diff_ci_high"] = bootstrap.paired_diff_ci(
                    f, b, n_resamples,
                    cell_seed(seed, "diff", *key, r["eval_set"], r["format"], r["metric"]))
        rows.append(out)
    schema = {c: perf.schema[c] for c in DIFF_COLUMNS if c in perf.columns}
    schema.update(base_shots=pl.Int64, ft_shots=pl.Int64, base_value=pl.Float64,
                  ft_value=pl.Float64, diff=pl.Float64, diff_ci_low=pl.Float64,
                  diff_ci_high=pl.Float64, n_paired=pl.Int64, n_unpaired=pl.Int64)
    df = pl.DataFrame(rows, schema={c: schema[c] for c in DIFF_COLUMNS})
    return df.sort(DIFF_SORT, nulls_last=False)


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
    p.add_argument("--diff", metavar="CSV",
                   help="output: every eval set of every fine-tuned model (ft shots) against its "
                   "base checkpoint (base shots) on the same items, with a paired CI")
    p.add_argument("--bootstrap-resamples", type=int, default=1000, metavar="N",
                   help="bootstrap resamples per CI (default: %(default)s; 0: no resampling, "
                   "every CI equals its point estimate)")
    p.add_argument("--bootstrap-seed", type=int, default=1, metavar="S",
                   help="base seed of the bootstrap (default: %(default)s)")
    p.add_argument("--log-summary", action="store_true",
                   help="list every cross-task set left out of the MRC, with the reason, and "
                   "every FT/base pair whose item ids do not match")
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.bootstrap_resamples < 0:
        raise AmuroError(f"--bootstrap-resamples must be >= 0, got {args.bootstrap_resamples}")
    metrics = read_metrics(args.metrics)
    models = sorted(metrics["model"].unique().to_list())
    manifests = [read_manifest(spec, models) for spec in args.manifest]
    perf = build_perf(attach_tokens(metrics, manifests))
    scores = read_scores(metrics)
    n_boot, seed = args.bootstrap_resamples, args.bootstrap_seed
    perf = add_perf_ci(perf, scores, n_boot, seed)
    pairing = Pairing(scores, args.mrc_base_shots, args.mrc_ft_shots)

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
        result = add_mrc_ci(result, pairs, pairing, args.mrc_format, n_boot, seed)
    diff = ft_vs_base(perf, pairing, n_boot, seed) if args.diff else None

    # Write only after every check passed, so inputs that fail leave no outputs behind.
    _write_csv(perf, args.perf)
    print(f"aggregate: {perf.height} row(s) from {len(args.metrics)} file(s) -> {args.perf}",
          file=sys.stderr)
    if no_tokens:
        print(f"aggregate: no manifest, tokens left empty for: {', '.join(no_tokens)}",
              file=sys.stderr)
    if result is not None:
        _write_csv(result, args.mrc)
    if diff is not None:
        _write_csv(diff, args.diff)
    print(f"bootstrap: {n_boot} resample(s), seed {seed}, 95% percentile CIs"
          + ("" if n_boot else " (disabled: CIs equal the point estimates)"), file=sys.stderr)
    if result is not None:
        _print_mrc_summary(result, mrc.skipped_sets(pairs), args)
    if diff is not None:
        print(f"diff: {diff.height} row(s) (fine-tuned {args.mrc_ft_shots}-shot vs base "
              f"{args.mrc_base_shots}-shot) -> {args.diff}", file=sys.stderr)
    _print_unpaired(pairing, args.log_summary)


def _print_unpaired(pairing: Pairing, verbose: bool) -> None:
    if not pairing.unpaired:
        return
    only_ft = sum(a for a, _ in pairing.unpaired.values())
    only_base = sum(b for _, b in pairing.unpaired.values())
    print(f"bootstrap: {len(pairing.unpaired)} FT/base pair(s) with unmatched item ids: "
          f"{only_ft} id(s) only in the fine-tuned predictions, {only_base} only in the base "
          f"predictions (left out of the paired CIs and ft_vs_base means)", file=sys.stderr)
    if verbose:
        for key in sorted(pairing.unpaired, key=lambda k: tuple("" if v is None else str(v)
                                                                 for v in k)):
            model, step, tuning, train_task, eval_set, fmt = key
            a, b = pairing.unpaired[key]
            print(f"bootstrap:   unpaired: {model} step {step} {tuning}/{train_task} on "
                  f"{eval_set} ({fmt}): {a} FT-only, {b} base-only", file=sys.stderr)


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
