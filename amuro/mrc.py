"""Mean ratio of change (MRC): how fine-tuning on one task moves performance on the other tasks.

For a pre-training checkpoint i (model, step) and a fine-tuning task t (paper §6.2):

    MRC = 1/|D| · Σ_{d ∈ D} (Perf_t^i(d) − Perf_BASE^i(d)) / Perf_BASE^i(d)

where D holds the eval sets of the *other* tasks (role "cross", eval_task ≠ t) that the
fine-tuned model was evaluated on. The fine-tuned model is read at `ft_shots` shots, the base
checkpoint (tuning "base", same model and step) at `base_shots` shots, both in one prompt format
and on the same metric. An element of D is an (eval_set, metric) pair, so a set scored with two
metrics counts twice.

Improvements over the released code, which silently produced inf/NaN or dropped sets:
- a set whose base score is 0 has no defined ratio: it is left out of the ratio mean but kept in
  the raw mean change, and counted (`n_zero_base`);
- a set with no base row at all is counted (`n_missing_base`), never silently ignored;
- fine-tuned checkpoints with no usable cross-task set still get a row (n_sets = 0, MRC null).

All functions are pure: DataFrame in, DataFrame out.
"""

from __future__ import annotations

import polars as pl

BASE_TUNING = "base"
CROSS_ROLE = "cross"
ID_ROLE = "ID"
EVAL_TYPES = ("classification", "generation")

# One fine-tuned model: a pre-training checkpoint fine-tuned one way on one task.
FT_KEY = ["model", "step", "tuning", "train_task"]
# What pairs a fine-tuned score with its base score on the same checkpoint.
PAIR_KEY = ["model", "step", "eval_set", "metric"]

# Status of one (fine-tuned model, cross-task set) pair.
OK = "ok"
ZERO_BASE = "zero_base"
MISSING_BASE = "missing_base"

MRC_COLUMNS = [
    "model",
    "step",
    "tokens",
    "tuning",
    "train_task",
    "train_type",
    "n_sets",
    "mean_change",
    "mrc_percent",
    *[f"mrc_to_{t}_percent" for t in EVAL_TYPES],
    "n_zero_base",
    "n_missing_base",
]
# mrc.csv as amuro.aggregate writes it: MRC_COLUMNS plus a bootstrap CI of mrc_percent.
MRC_CI_COLUMNS = ["mrc_ci_low_percent", "mrc_ci_high_percent"]
_AT = MRC_COLUMNS.index("mrc_percent") + 1
MRC_CSV_COLUMNS = [*MRC_COLUMNS[:_AT], *MRC_CI_COLUMNS, *MRC_COLUMNS[_AT:]]


def base_scores(perf: pl.DataFrame, fmt: str, base_shots: int) -> pl.DataFrame:
    """Base-checkpoint scores in one format and shot count, one row per PAIR_KEY."""
    base = perf.filter(
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


def cross_task_pairs(
    perf: pl.DataFrame, fmt: str, base_shots: int, ft_shots: int
) -> pl.DataFrame:
    """Every (fine-tuned model, cross-task set, metric) with its FT and base scores.

    Columns: FT_KEY, eval_set, eval_task, eval_type, metric, ft_value, base_value, change
    (ft − base, null without base), ratio ((ft − base) / base, null unless status is ok), status
    (ok | zero_base | missing_base). Sorted, so aggregates over it are deterministic.
    """
    ft = perf.filter(
        (pl.col("tuning") != BASE_TUNING)
        & (pl.col("role") == CROSS_ROLE)
        # Role and task should agree; the task test is what the formula says, so apply both.
        & (pl.col("eval_task") != pl.col("train_task"))
        & (pl.col("format") == fmt)
        & (pl.col("shots") == ft_shots)
    ).select(*FT_KEY, "eval_set", "eval_task", "eval_type", "metric", ft_value=pl.col("value"))
    pairs = ft.join(base_scores(perf, fmt, base_shots), on=PAIR_KEY, how="left")
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


def train_types(perf: pl.DataFrame) -> pl.DataFrame:
    """Type of each fine-tuned model's training task, read from its in-distribution rows.

    Null when the model has no ID rows on its own task, or they disagree on the type.
    """
    own = perf.filter(
        (pl.col("tuning") != BASE_TUNING)
        & (pl.col("role") == ID_ROLE)
        & (pl.col("eval_task") == pl.col("train_task"))
    )
    return own.group_by(FT_KEY).agg(
        train_type=pl.when(pl.col("eval_type").n_unique() == 1).then(pl.col("eval_type").first())
    )


def summarise_pairs(pairs: pl.DataFrame) -> pl.DataFrame:
    """Aggregate cross_task_pairs() into one MRC row per fine-tuned model (without tokens/type)."""
    by_type = [
        (pl.col("ratio").filter(pl.col("eval_type") == t).mean() * 100).alias(
            f"mrc_to_{t}_percent"
        )
        for t in EVAL_TYPES
    ]
    return pairs.group_by(FT_KEY).agg(
        (pl.col("status") == OK).sum().cast(pl.Int64).alias("n_sets"),
        # Null-skipping mean: zero-base sets count here, missing-base sets cannot.
        pl.col("change").mean().alias("mean_change"),
        (pl.col("ratio").mean() * 100).alias("mrc_percent"),
        *by_type,
        (pl.col("status") == ZERO_BASE).sum().cast(pl.Int64).alias("n_zero_base"),
        (pl.col("status") == MISSING_BASE).sum().cast(pl.Int64).alias("n_missing_base"),
    )


def mean_ratio_of_change(
    perf: pl.DataFrame, fmt: str, base_shots: int, ft_shots: int
) -> pl.DataFrame:
    """One row per fine-tuned model in `perf`, with the columns of MRC_COLUMNS.

    `perf` is the tidy table of amuro.aggregate (a `tokens` column is optional). Every
    fine-tuned model gets a row, even if none of its cross-task sets could be used.
    """
    ft_rows = perf.filter(pl.col("tuning") != BASE_TUNING)
    tokens = (
        pl.col("tokens").drop_nulls().first()
        if "tokens" in perf.columns
        else pl.lit(None, dtype=pl.Int64)
    )
    models = ft_rows.group_by(FT_KEY).agg(tokens=tokens)
    summary = summarise_pairs(cross_task_pairs(perf, fmt, base_shots, ft_shots))
    out = (
        # nulls_equal: a null train_task must still match itself (validated upstream anyway).
        models.join(train_types(perf), on=FT_KEY, how="left", nulls_equal=True)
        .join(summary, on=FT_KEY, how="left", nulls_equal=True)
        .with_columns(
            pl.col(c).fill_null(0).cast(pl.Int64)
            for c in ("n_sets", "n_zero_base", "n_missing_base")
        )
        .with_columns(pl.col("tokens").cast(pl.Int64), pl.col("train_type").cast(pl.String))
    )
    return out.select(MRC_COLUMNS).sort(FT_KEY, nulls_last=False)


def skipped_sets(pairs: pl.DataFrame) -> pl.DataFrame:
    """The pairs left out of the ratio mean, with the reason, for the run summary."""
    return pairs.filter(pl.col("status") != OK).select(
        *FT_KEY, "eval_set", "metric", reason="status"
    )
