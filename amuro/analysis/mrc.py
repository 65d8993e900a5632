"""Cross-task transfer: mean ratio of change (MRC, paper §6.2), split by direction.

For a pre-training checkpoint i (model, step) and a fine-tuning task t:

    MRC = 1/|D| · Σ_{d ∈ D} (Perf_t^i(d) − Perf_BASE^i(d)) / Perf_BASE^i(d)

where D holds the eval sets of the *other* tasks (role "cross", eval_task ≠ t) that the
fine-tuned model was evaluated on. The fine-tuned model is read at `ft_shots` shots, the base
checkpoint (same model and step) at `base_shots` shots, both in one prompt format and on the
same metric. An element of D is an (eval_set, metric) pair.

`mrc.csv` has one row per fine-tuned model and target type: D restricted to classification sets,
to generation sets, and all of D ("all"). The direction is `<train type>-><target type>`, so
the paper's two findings are the rows classification->generation and generation->classification.

Fine-tuned scores are averaged over the model's fine-tuning seeds (n_seeds) before the ratio.

`mrc_summary.csv` pools each direction across checkpoints (and training tasks): the mean of every
(checkpoint, training task, set) ratio, its interval from the study's joint bootstrap (each
replicate resamples every eval set's items once, for every checkpoint and task that scored it,
fine-tuned and base together, and the fine-tuning seeds once), the raw mean change, and the
least-squares slope of the
per-checkpoint MRC against the pre-training step, per `slope_unit` steps (the released code used
100k; `main` counted as step 750000 there — here every checkpoint has its real step).

Improvements over the released code, which silently produced inf/NaN or dropped sets:
- a set whose base score is 0 has no defined ratio: it is left out of the ratio mean but kept in
  the raw mean change, and counted (`n_zero_base`);
- a set with no base row at all is counted (`n_missing_base`), never silently ignored;
- fine-tuned models with no usable cross-task set still get an "all" row (n_sets = 0, MRC null).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import stats

from amuro.analysis import INSTRUCTION_TUNING, SECONDARY_METRICS
from amuro.analysis.scores import BASE_TUNING, ScoreBook, collapse_seeds

CROSS_ROLE = "cross"
ID_ROLE = "ID"
EVAL_TYPES = ("classification", "generation", "multiple_choice")
ALL = "all"

# One fine-tuned model: a pre-training checkpoint fine-tuned one way on one task.
FT_KEY = ["model", "step", "tuning", "train_task"]
# What pairs a fine-tuned score with its base score on the same checkpoint.
PAIR_KEY = ["model", "step", "eval_set", "metric"]

# Status of one (fine-tuned model, cross-task set) pair.
OK = "ok"
ZERO_BASE = "zero_base"
MISSING_BASE = "missing_base"

MRC_COLUMNS = [
    "model", "step", "tokens", "tuning", "train_task", "train_type", "target_type",
    "direction", "n_sets", "mean_change", "mrc_percent", "mrc_ci_low_percent",
    "mrc_ci_high_percent", "n_zero_base", "n_missing_base", "n_seeds",
]
SUMMARY_COLUMNS = [
    "model", "tuning", "train_type", "target_type", "direction", "train_task", "n_checkpoints",
    "n_ratios", "mean_change", "mrc_percent", "mrc_ci_low_percent", "mrc_ci_high_percent",
    "significant", "slope_unit_steps", "slope_percent_per_unit", "slope_stderr_percent",
    "first_step", "last_step", "n_seeds",
]


def direction(train_type: str | None, target_type: str) -> str | None:
    return None if train_type is None else f"{train_type}->{target_type}"


def base_scores(perf: pl.DataFrame, fmt: str, base_shots: int) -> pl.DataFrame:
    """Base-checkpoint scores in one format and shot count, one row per PAIR_KEY."""
    base = collapse_seeds(perf).filter(
        (pl.col("tuning") == BASE_TUNING)
        & (pl.col("format") == fmt)
        & (pl.col("shots") == base_shots)
    ).select(*PAIR_KEY, base_value=pl.col("value"))
    dup = base.group_by(PAIR_KEY).len().filter(pl.col("len") > 1)
    if dup.height:
        # Two base scores for one set would make the ratio ambiguous.
        first = dup.sort(PAIR_KEY).row(0, named=True)
        raise ValueError(f"several base rows for {first}")
    return base


def train_types(perf: pl.DataFrame) -> pl.DataFrame:
    """Type of each fine-tuned model's training task, read from its in-distribution rows.

    Null when the model has no ID rows on its own task, or they disagree on the type.
    """
    own = collapse_seeds(perf).filter(
        (pl.col("tuning") != BASE_TUNING)
        & (pl.col("role") == ID_ROLE)
        & (pl.col("eval_task") == pl.col("train_task"))
    )
    return own.group_by(FT_KEY).agg(
        train_type=pl.when(pl.col("eval_type").n_unique() == 1).then(pl.col("eval_type").first())
    ).with_columns(pl.col("train_type").cast(pl.String))


def cross_task_pairs(
    perf: pl.DataFrame, fmt: str, base_shots: int, ft_shots: int
) -> pl.DataFrame:
    """Every (fine-tuned model, cross-task set, metric) with its FT and base scores.

    Columns: FT_KEY, train_type, eval_set, eval_task, eval_type, metric, ft_value, base_value,
    change (ft − base, null without base), ratio ((ft − base) / base, null unless status is
    ok), status (ok | zero_base | missing_base). Sorted, so aggregates over it are
    deterministic. Fine-tuned values are means over seeds (n_seeds).
    """
    perf = collapse_seeds(perf)
    ft = perf.filter(
        (pl.col("tuning") != BASE_TUNING)
        & (pl.col("tuning") != INSTRUCTION_TUNING)  # the MRC is about task fine-tuning
        & (pl.col("role") == CROSS_ROLE)
        # Role and task should agree; the task test is what the formula says, so apply both.
        & (pl.col("eval_task") != pl.col("train_task"))
        & (pl.col("format") == fmt)
        & (pl.col("shots") == ft_shots)
        & ~pl.col("metric").is_in(sorted(SECONDARY_METRICS))  # each set counts once
    ).select(*FT_KEY, "eval_set", "eval_task", "eval_type", "metric", "n_seeds",
             ft_value=pl.col("value"))
    pairs = ft.join(base_scores(perf, fmt, base_shots), on=PAIR_KEY, how="left")
    pairs = pairs.join(train_types(perf), on=FT_KEY, how="left", nulls_equal=True)
    status = (
        pl.when(pl.col("base_value").is_null())
        .then(pl.lit(MISSING_BASE))
        .when(pl.col("base_value") == 0)
        .then(pl.lit(ZERO_BASE))
        .otherwise(pl.lit(OK))
    )
    return (
        pairs.with_columns(status=status)
        .with_columns(
            change=pl.col("ft_value") - pl.col("base_value"),
            ratio=pl.when(pl.col("status") == OK).then(
                (pl.col("ft_value") - pl.col("base_value")) / pl.col("base_value")
            ),
        )
        .sort([*FT_KEY, "eval_set", "metric"], nulls_last=False)
    )


def _summarise(pairs: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    return pairs.group_by(keys).agg(
        (pl.col("status") == OK).sum().cast(pl.Int64).alias("n_sets"),
        # Null-skipping mean: zero-base sets count here, missing-base sets cannot.
        pl.col("change").mean().alias("mean_change"),
        (pl.col("ratio").mean() * 100).alias("mrc_percent"),
        (pl.col("status") == ZERO_BASE).sum().cast(pl.Int64).alias("n_zero_base"),
        (pl.col("status") == MISSING_BASE).sum().cast(pl.Int64).alias("n_missing_base"),
        pl.col("n_seeds").max().cast(pl.Int64),
    )


def mean_ratio_of_change(
    perf: pl.DataFrame, fmt: str, base_shots: int, ft_shots: int
) -> pl.DataFrame:
    """MRC_COLUMNS without the CI: per fine-tuned model, one row per target type present among
    its cross-task sets plus an "all" row (always, even with no usable set)."""
    pairs = cross_task_pairs(perf, fmt, base_shots, ft_shots)
    perf = collapse_seeds(perf)
    ft_rows = perf.filter((pl.col("tuning") != BASE_TUNING)
                          & (pl.col("tuning") != INSTRUCTION_TUNING))
    tokens = (
        pl.col("tokens").drop_nulls().first()
        if "tokens" in perf.columns
        else pl.lit(None, dtype=pl.Int64)
    )
    models = ft_rows.group_by(FT_KEY).agg(tokens=tokens.cast(pl.Int64)).join(
        train_types(perf), on=FT_KEY, how="left", nulls_equal=True)
    by_type = _summarise(pairs, [*FT_KEY, "eval_type"]).rename({"eval_type": "target_type"})
    overall = models.select(FT_KEY).join(
        _summarise(pairs, FT_KEY), on=FT_KEY, how="left", nulls_equal=True
    ).with_columns(target_type=pl.lit(ALL))
    counts = ("n_sets", "n_zero_base", "n_missing_base", "n_seeds")
    out = (
        pl.concat([by_type, overall.select(by_type.columns)])
        .join(models, on=FT_KEY, how="left", nulls_equal=True)
        .with_columns(pl.col(c).fill_null(0).cast(pl.Int64) for c in counts)
        .with_columns(
            direction=pl.when(pl.col("train_type").is_not_null()).then(
                pl.col("train_type") + "->" + pl.col("target_type")),
            mrc_ci_low_percent=pl.lit(None, dtype=pl.Float64),
            mrc_ci_high_percent=pl.lit(None, dtype=pl.Float64),
        )
    )
    order = pl.col("target_type").replace_strict({**{t: i for i, t in enumerate(EVAL_TYPES)},
                                                  ALL: len(EVAL_TYPES)}, default=99)
    return (out.with_columns(_order=order).sort([*FT_KEY, "_order", "target_type"],
                                                nulls_last=False)
            .select(MRC_COLUMNS))


def _vectors(pairs: pl.DataFrame, book: ScoreBook, fmt: str, base_shots: int, ft_shots: int):
    """amuro.bootstrap.Unit (a: fine-tuned, seeds x items; b: base) per usable pair row."""
    out = []
    for r in pairs.filter(pl.col("status") == OK).iter_rows(named=True):
        vec = book.paired(
            (r["model"], r["step"], r["tuning"], r["train_task"], r["eval_set"], fmt, ft_shots,
             r["metric"]),
            (r["model"], r["step"], BASE_TUNING, None, r["eval_set"], fmt, base_shots,
             r["metric"]),
        )
        if vec is not None:
            out.append(vec)
    return out


def _match(df: pl.DataFrame, row: dict, keys: list[str]) -> pl.DataFrame:
    return df.filter(*[pl.col(k).is_null() if row[k] is None else pl.col(k) == row[k]
                       for k in keys])


def add_ci(result: pl.DataFrame, pairs: pl.DataFrame, book: ScoreBook, fmt: str,
           base_shots: int, ft_shots: int, n_resamples: int, seed: int) -> pl.DataFrame:
    """Fill mrc_ci_low/high_percent of mean_ratio_of_change() rows from per-example scores,
    through the study's joint bootstrap (book.joint)."""
    joint = book.joint(n_resamples, seed)
    low, high = [], []
    for r in result.iter_rows(named=True):
        if r["mrc_percent"] is None:
            lo = hi = None
        elif n_resamples == 0:  # no resampling: the CI is the point, as everywhere else
            lo = hi = r["mrc_percent"]
        else:
            sets = _match(pairs, r, FT_KEY)
            if r["target_type"] != ALL:
                sets = sets.filter(pl.col("eval_type") == r["target_type"])
            _, lo, hi = joint.ci(_vectors(sets, book, fmt, base_shots, ft_shots), "ratio")
            lo, hi = (None, None) if math.isnan(lo) else (lo * 100, hi * 100)
        low.append(lo)
        high.append(hi)
    return result.with_columns(
        mrc_ci_low_percent=pl.Series(low, dtype=pl.Float64),
        mrc_ci_high_percent=pl.Series(high, dtype=pl.Float64),
    ).select(MRC_COLUMNS)


def slope(steps: list[int], values: list[float], unit: int) -> tuple[float | None, float | None]:
    """Least-squares slope of values against steps / unit, and its standard error."""
    x = np.asarray(steps, dtype=float) / unit
    y = np.asarray(values, dtype=float)
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    if np.unique(x).size < 2:
        return None, None
    fit = stats.linregress(x, y)
    stderr = float(fit.stderr) if x.size > 2 else None
    return float(fit.slope), stderr


def summary(result: pl.DataFrame, pairs: pl.DataFrame, book: ScoreBook, fmt: str,
            base_shots: int, ft_shots: int, n_resamples: int, seed: int,
            slope_unit: int) -> pl.DataFrame:
    """SUMMARY_COLUMNS: each direction pooled over checkpoints, for every training task of that
    type together (train_task "all") and for each one alone; intervals from the joint
    bootstrap (book.joint), n_seeds the most fine-tuning seeds of any model pooled."""
    joint = book.joint(n_resamples, seed)
    typed = pairs.filter(pl.col("train_type").is_not_null()).with_columns(
        direction=pl.col("train_type") + "->" + pl.col("eval_type"))
    per_model = result.filter(pl.col("target_type") != ALL, pl.col("direction").is_not_null())
    rows = []
    groups = typed.select("model", "tuning", "train_type", "eval_type", "direction",
                          "train_task").unique()
    keys = [(g, None) for g in groups.select("model", "tuning", "train_type", "eval_type",
                                            "direction").unique().iter_rows(named=True)]
    keys += [(g, g["train_task"]) for g in groups.iter_rows(named=True)]
    for g, task in keys:
        sel = typed.filter(pl.col("model") == g["model"], pl.col("tuning") == g["tuning"],
                           pl.col("direction") == g["direction"])
        rows_mrc = per_model.filter(pl.col("model") == g["model"],
                                    pl.col("tuning") == g["tuning"],
                                    pl.col("direction") == g["direction"])
        if task is not None:
            sel = sel.filter(pl.col("train_task") == task)
            rows_mrc = rows_mrc.filter(pl.col("train_task") == task)
        ratios = sel["ratio"].drop_nulls()
        point = float(ratios.mean()) * 100 if ratios.len() else None
        lo = hi = None
        if point is not None and n_resamples == 0:
            lo = hi = point
        elif point is not None:
            _, lo, hi = joint.ci(_vectors(sel, book, fmt, base_shots, ft_shots), "ratio")
            lo, hi = (None, None) if math.isnan(lo) else (lo * 100, hi * 100)
        per_step = (rows_mrc.group_by("step").agg(pl.col("mrc_percent").mean())
                    .drop_nulls().sort("step"))
        sl, se = slope(per_step["step"].to_list(), per_step["mrc_percent"].to_list(), slope_unit)
        steps = sel["step"].unique().sort()
        rows.append({
            "model": g["model"], "tuning": g["tuning"], "train_type": g["train_type"],
            "target_type": g["eval_type"], "direction": g["direction"],
            "train_task": task or ALL, "n_checkpoints": steps.len(), "n_ratios": ratios.len(),
            "mean_change": sel["change"].drop_nulls().mean(), "mrc_percent": point,
            "mrc_ci_low_percent": lo, "mrc_ci_high_percent": hi,
            "significant": None if lo is None else bool(lo > 0 or hi < 0),
            "slope_unit_steps": slope_unit, "slope_percent_per_unit": sl,
            "slope_stderr_percent": se, "first_step": steps.min(), "last_step": steps.max(),
            "n_seeds": sel["n_seeds"].max(),
        })
    schema = {
        "model": pl.String, "tuning": pl.String, "train_type": pl.String,
        "target_type": pl.String, "direction": pl.String, "train_task": pl.String,
        "n_checkpoints": pl.Int64, "n_ratios": pl.Int64, "mean_change": pl.Float64,
        "mrc_percent": pl.Float64, "mrc_ci_low_percent": pl.Float64,
        "mrc_ci_high_percent": pl.Float64, "significant": pl.Boolean,
        "slope_unit_steps": pl.Int64, "slope_percent_per_unit": pl.Float64,
        "slope_stderr_percent": pl.Float64, "first_step": pl.Int64, "last_step": pl.Int64,
        "n_seeds": pl.Int64,
    }
    df = pl.DataFrame(rows, schema=schema)
    # The pooled row first within each direction, then the tasks alphabetically.
    return (df.with_columns(_all=pl.col("train_task") != ALL)
            .sort("model", "tuning", "direction", "_all", "train_task")
            .select(SUMMARY_COLUMNS))


def skipped_sets(pairs: pl.DataFrame) -> pl.DataFrame:
    """The pairs left out of the ratio mean, with the reason, for the run summary."""
    return pairs.filter(pl.col("status") != OK).select(
        *FT_KEY, "eval_set", "metric", reason="status"
    )
