"""Sensitivity to the prompt format (paper §6.1, Fig. 5 and 13).

For each fine-tuned task's in-domain sets, at every checkpoint: the spread (best − worst) of the
scores across the configured formats, for the base checkpoint (at base shots) and for the model
fine-tuned on that task (at ft shots). The paper's finding is that the fine-tuned models'
spread shrinks with more pre-training. `format_summary` averages the spread over sets per
checkpoint and kind (base / fine-tuned). Fine-tuned scores are means over the fine-tuning
seeds (n_seeds). Per-cell intervals are in perf.csv.
"""

from __future__ import annotations

import polars as pl

from amuro.analysis.scores import BASE_TUNING, collapse_seeds

BASE_KIND = "base"
FT_KIND = "fine-tuned"
FORMAT_COLUMNS = [
    "model", "step", "tokens", "kind", "train_task", "eval_set", "metric", "shots",
    "n_formats", "best_format", "best_value", "worst_format", "worst_value", "spread", "sd",
    "values", "n_seeds",
]
SUMMARY_COLUMNS = ["model", "step", "tokens", "kind", "n_sets", "mean_spread", "max_spread"]


def format_spread(perf: pl.DataFrame, base_shots: int, ft_shots: int) -> pl.DataFrame:
    """FORMAT_COLUMNS: one row per (checkpoint, kind, training task, in-domain set)."""
    perf = collapse_seeds(perf)
    ft = perf.filter((pl.col("tuning") != BASE_TUNING) & (pl.col("role") == "ID")
                     & (pl.col("eval_task") == pl.col("train_task"))
                     & (pl.col("shots") == ft_shots)).with_columns(kind=pl.lit(FT_KIND))
    trained = ft.select("model", "step", "train_task", "eval_set").unique()
    base = (perf.filter((pl.col("tuning") == BASE_TUNING) & (pl.col("shots") == base_shots))
            .drop("train_task")
            .join(trained, on=["model", "step", "eval_set"])
            .with_columns(kind=pl.lit(BASE_KIND)))
    rows = pl.concat([ft.select(base.columns), base])
    keys = ["model", "step", "tokens", "kind", "train_task", "eval_set", "metric", "shots"]
    ordered = rows.sort([*keys, "value", "format"], descending=[False] * len(keys) + [True, False],
                        nulls_last=False)
    out = ordered.group_by(keys, maintain_order=True).agg(
        n_formats=pl.len().cast(pl.Int64),
        best_format=pl.col("format").first(),
        best_value=pl.col("value").first(),
        worst_format=pl.col("format").last(),
        worst_value=pl.col("value").last(),
        sd=pl.col("value").std(ddof=0),
        values=(pl.col("format") + "=" + pl.col("value").round(4).cast(pl.String)).str.join(" "),
        n_seeds=pl.col("n_seeds").max().cast(pl.Int64),
    ).with_columns(spread=pl.col("best_value") - pl.col("worst_value"))
    kind_order = pl.col("kind").replace_strict({BASE_KIND: 0, FT_KIND: 1}, default=2)
    return (out.with_columns(_k=kind_order).sort("model", "step", "_k", "train_task", "eval_set")
            .select(FORMAT_COLUMNS))


def format_summary(spread: pl.DataFrame) -> pl.DataFrame:
    """SUMMARY_COLUMNS: mean and max spread over sets, per checkpoint and kind."""
    kind_order = pl.col("kind").replace_strict({BASE_KIND: 0, FT_KIND: 1}, default=2)
    return (spread.group_by("model", "step", "tokens", "kind")
            .agg(n_sets=pl.len().cast(pl.Int64), mean_spread=pl.col("spread").mean(),
                 max_spread=pl.col("spread").max())
            .with_columns(_k=kind_order).sort("model", "step", "_k").select(SUMMARY_COLUMNS))
