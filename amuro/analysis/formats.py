"""Sensitivity to the prompt format (paper §6.1, Fig. 5 and 13).

For each fine-tuned task's in-domain sets, at every checkpoint: the spread (best − worst) of the
scores across the configured formats, for the base checkpoint (at base shots) and for the model
fine-tuned on that task (at ft shots). The paper's finding is that the fine-tuned models'
spread shrinks with more pre-training. `format_summary` averages the spread over sets per
checkpoint and kind (base / fine-tuned). Fine-tuned scores are means over the fine-tuning
seeds (n_seeds). Per-cell intervals are in perf.csv. `spread_change` is the paper's finding:
the mean spread at the last checkpoint minus the first, with an interval from the study's joint
bootstrap (every format's score recomputed from the same draw of items and seeds, then the
spreads).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from amuro.analysis.scores import BASE_TUNING, ScoreBook, collapse_seeds

BASE_KIND = "base"
FT_KIND = "fine-tuned"
FORMAT_COLUMNS = [
    "model", "step", "tokens", "kind", "train_task", "eval_set", "metric", "shots",
    "n_formats", "best_format", "best_value", "worst_format", "worst_value", "spread", "sd",
    "values", "n_seeds",
]
SUMMARY_COLUMNS = ["model", "step", "tokens", "kind", "n_sets", "mean_spread", "max_spread"]
CHANGE_COLUMNS = ["model", "kind", "first_step", "last_step", "n_sets", "first_mean_spread",
                  "last_mean_spread", "change", "ci_low", "ci_high"]


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


def spread_change(spread: pl.DataFrame, book: ScoreBook, n_resamples: int,
                  seed: int) -> pl.DataFrame:
    """CHANGE_COLUMNS: per model and kind, mean spread at the last checkpoint minus the first,
    over the (training task, set) pairs scored at both, with a joint-bootstrap interval."""
    joint = book.joint(n_resamples, seed)
    cells = _cells_by_format(book)
    rows = []
    for (model, kind), part in spread.group_by("model", "kind", maintain_order=True):
        steps = sorted(set(part["step"].to_list()))
        if len(steps) < 2:
            continue
        first, last = steps[0], steps[-1]
        keys = ["train_task", "eval_set", "metric", "shots"]
        at = {s: part.filter(pl.col("step") == s) for s in (first, last)}
        both = at[first].join(at[last], on=keys, suffix="_last").select(keys).rows()
        if not both:
            continue
        means, thetas = {}, {}
        for s in (first, last):
            rows_s = at[s].join(pl.DataFrame(both, schema=keys, orient="row"), on=keys)
            means[s] = float(rows_s["spread"].mean())
            reps = [_spread_replicates(joint, cells, model, s, kind, *k) for k in both]
            thetas[s] = np.nanmean(np.vstack(reps), axis=0) if n_resamples else None
        change = means[last] - means[first]
        low = high = change
        if n_resamples:
            low, high = joint.interval(thetas[last] - thetas[first])
        rows.append({"model": model, "kind": kind, "first_step": first, "last_step": last,
                     "n_sets": len(both), "first_mean_spread": means[first],
                     "last_mean_spread": means[last], "change": change, "ci_low": low,
                     "ci_high": high})
    return pl.DataFrame(rows, schema={c: _CHANGE_TYPES[c] for c in CHANGE_COLUMNS})


_CHANGE_TYPES = {"model": pl.String, "kind": pl.String, "first_step": pl.Int64,
                 "last_step": pl.Int64, "n_sets": pl.Int64, "first_mean_spread": pl.Float64,
                 "last_mean_spread": pl.Float64, "change": pl.Float64, "ci_low": pl.Float64,
                 "ci_high": pl.Float64}


def _cells_by_format(book: ScoreBook) -> dict[tuple, dict[str, dict[int, tuple]]]:
    """(model, step, kind, train task, set, shots, metric) -> {format: {seed: (ids, scores)}}."""
    out: dict[tuple, dict[str, dict[int, tuple]]] = {}
    for (model, step, tuning, train_task, seed, eval_set, fmt, shots, metric), cell in \
            book.cells.items():
        if tuning == BASE_TUNING:
            kind = BASE_KIND
        elif train_task:
            kind = FT_KIND
        else:
            continue
        key = (model, step, kind, train_task if kind == FT_KIND else None, eval_set, shots,
               metric)
        out.setdefault(key, {}).setdefault(fmt, {})[seed] = cell
    return out


def _spread_replicates(joint, cells, model, step, kind, train_task, eval_set, metric,
                       shots) -> np.ndarray:
    """(B,) spread (best − worst format) of one set, each format's score resampled."""
    per_format = cells.get((model, step, kind, train_task if kind == FT_KIND else None,
                            eval_set, shots, metric), {})
    sides = []
    for by_seed in per_format.values():
        seeds = sorted(by_seed)
        ids = sorted(set.intersection(*(set(by_seed[s][0]) for s in seeds)))
        if not ids:
            continue
        matrix = np.vstack([_on(by_seed[s], ids) for s in seeds])
        sides.append(joint.side_means(eval_set, ids, matrix,
                                      None if kind == BASE_KIND else tuple(seeds)))
    if len(sides) < 2:
        return np.full(joint.n_resamples, np.nan)
    stacked = np.vstack(sides)
    return np.max(stacked, axis=0) - np.min(stacked, axis=0)


def _on(cell: tuple, ids: list[str]) -> np.ndarray:
    pos = {i: k for k, i in enumerate(cell[0])}
    return np.asarray(cell[1], dtype=float)[[pos[i] for i in ids]]
