"""Which sets the base checkpoints learn during pre-training, and what fine-tuning adds to each
group (paper §4–5, Fig. 2 and 4, Table 5).

The rule (instead of the released code's hand-written list): read each eval set's base curve in
the comparison format at base shots. Its `rise` is the score at the last checkpoint minus the
score at the first, on the same items, with a paired bootstrap CI. A set is *learned in
pre-training* when rise ≥ `min_rise` (in metric units) and the CI's lower bound is above 0;
otherwise it is *learned in fine-tuning* (the paper's "never learned" group, flat across
pre-training). With one checkpoint there is no curve: the set gets no group and is counted.

Table 5 (`gain_by_group`): for every checkpoint and group, the mean over (set, fine-tuned model)
pairs of Perf(FT) − Perf(BASE), with a stratified paired bootstrap CI. An in-domain set is paired
with the models fine-tuned on its own task; OOD sets of fine-tuned tasks are left to Fig. 7, as
in the paper. A set whose task no model is fine-tuned on is paired with every fine-tuned model
that evaluated it — or, when the study instruction-tunes, with the instruction-tuned models, as
the paper read its pre-training-learned benchmarks after TULU; the `pairing` column says which.
"""

from __future__ import annotations

import math

import polars as pl

from amuro import bootstrap
from amuro.analysis import INSTRUCTION_TUNING, SECONDARY_METRICS
from amuro.analysis.scores import BASE_TUNING, ScoreBook, cell_seed

PRETRAINING = "pre-training"
FINETUNING = "fine-tuning"
# Rises are differences of means (k/n − j/n): compare with a little slack so that a rise of
# exactly min_rise is not lost to rounding (0.3 − 0.2 < 0.1 in floating point).
RISE_TOLERANCE = 1e-9
IN_DOMAIN = "in-domain fine-tune"
ANY_FT = "any fine-tune"
INSTRUCTED = "instruction-tuned"

GROUP_COLUMNS = [
    "model", "eval_set", "eval_task", "eval_type", "metric", "n_checkpoints", "first_step",
    "last_step", "first_value", "last_value", "best_value", "rise", "rise_ci_low",
    "rise_ci_high", "min_rise", "learned_in",
]
GROUP_SCHEMA = {
    "model": pl.String, "eval_set": pl.String, "eval_task": pl.String, "eval_type": pl.String,
    "metric": pl.String, "n_checkpoints": pl.Int64, "first_step": pl.Int64,
    "last_step": pl.Int64, "first_value": pl.Float64, "last_value": pl.Float64,
    "best_value": pl.Float64, "rise": pl.Float64, "rise_ci_low": pl.Float64,
    "rise_ci_high": pl.Float64, "min_rise": pl.Float64, "learned_in": pl.String,
}
GAIN_COLUMNS = [
    "model", "step", "tokens", "learned_in", "n_sets", "n_pairs", "mean_change", "ci_low",
    "ci_high", "significant", "sets", "pairing",
]
GAIN_SCHEMA = {
    "model": pl.String, "step": pl.Int64, "tokens": pl.Int64, "learned_in": pl.String,
    "n_sets": pl.Int64, "n_pairs": pl.Int64, "mean_change": pl.Float64, "ci_low": pl.Float64,
    "ci_high": pl.Float64, "significant": pl.Boolean, "sets": pl.String, "pairing": pl.String,
}


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def classify_sets(perf: pl.DataFrame, book: ScoreBook, fmt: str, base_shots: int,
                  min_rise: float, n_resamples: int, seed: int) -> pl.DataFrame:
    """One row per (model series, eval set) with its base curve's rise and group."""
    base = perf.filter((pl.col("tuning") == BASE_TUNING) & (pl.col("format") == fmt)
                       & (pl.col("shots") == base_shots))
    keys = ["model", "eval_set", "eval_task", "eval_type", "metric"]
    rows = []
    for key, part in base.sort("step").group_by(keys, maintain_order=True):
        g = dict(zip(keys, key, strict=True))
        steps, values = part["step"].to_list(), part["value"].to_list()
        row = {**g, "n_checkpoints": len(steps), "first_step": steps[0], "last_step": steps[-1],
               "first_value": values[0], "last_value": values[-1], "best_value": max(values),
               "rise": None, "rise_ci_low": None, "rise_ci_high": None, "min_rise": min_rise,
               "learned_in": None}
        if len(steps) >= 2:
            vec = book.paired(
                (g["model"], steps[-1], BASE_TUNING, None, g["eval_set"], fmt, base_shots,
                 g["metric"]),
                (g["model"], steps[0], BASE_TUNING, None, g["eval_set"], fmt, base_shots,
                 g["metric"]),
            )
            if vec is not None and vec[0].size:
                last, first = vec
                rise = float(last.mean() - first.mean())
                lo, hi = bootstrap.paired_diff_ci(last, first, n_resamples,
                                                  cell_seed(seed, "rise", *key, fmt))
                learned = rise >= min_rise - RISE_TOLERANCE and lo > 0
                row.update(rise=rise, rise_ci_low=_none_if_nan(lo), rise_ci_high=_none_if_nan(hi),
                           learned_in=PRETRAINING if learned else FINETUNING)
        rows.append(row)
    return pl.DataFrame(rows, schema=GROUP_SCHEMA).sort("model", "eval_set")


def adapted_pairs(perf: pl.DataFrame, groups: pl.DataFrame, fmt: str,
                  ft_shots: int) -> pl.DataFrame:
    """(model, step, tuning, train_task, eval_set, learned_in, pairing) for Table 5.

    A set of a task some model is fine-tuned on is paired with that model on its ID sets (the
    paper's Table 5 leaves OOD sets to Fig. 7); a set of a task no model is fine-tuned on is
    paired with every fine-tuned model that evaluated it.
    """
    ft = perf.filter((pl.col("tuning") != BASE_TUNING) & (pl.col("format") == fmt)
                     & (pl.col("shots") == ft_shots)
                     & ~pl.col("metric").is_in(sorted(SECONDARY_METRICS))).select(
        "model", "step", "tokens", "tuning", "train_task", "eval_task", "eval_set", "role",
        "metric")
    ft = ft.join(groups.filter(pl.col("learned_in").is_not_null())
                 .select("model", "eval_set", "metric", "learned_in"),
                 on=["model", "eval_set", "metric"])
    sft = ft.filter(pl.col("tuning") != INSTRUCTION_TUNING)
    trained = sft.select("model", eval_task=pl.col("train_task")).unique()
    own = sft.filter((pl.col("role") == "ID") & (pl.col("eval_task") == pl.col("train_task")))
    untrained = ft.join(trained, on=["model", "eval_task"], how="anti")
    # Sets no task fine-tunes: the instruction-tuned models where they exist (the paper's
    # TULU models), otherwise every fine-tuned model that evaluated them.
    instructed = untrained.filter(pl.col("tuning") == INSTRUCTION_TUNING)
    covered = instructed.select("model", "eval_set").unique()
    rest = untrained.filter(pl.col("tuning") != INSTRUCTION_TUNING).join(
        covered, on=["model", "eval_set"], how="anti")
    return pl.concat([own.with_columns(pairing=pl.lit(IN_DOMAIN)),
                      instructed.with_columns(pairing=pl.lit(INSTRUCTED)),
                      rest.with_columns(pairing=pl.lit(ANY_FT))]).drop(
        "eval_task").sort("model", "step", "eval_set", "tuning", "train_task", nulls_last=False)


def gain_by_group(perf: pl.DataFrame, groups: pl.DataFrame, book: ScoreBook, fmt: str,
                  base_shots: int, ft_shots: int, n_resamples: int, seed: int) -> pl.DataFrame:
    """Table 5: GAIN_COLUMNS, one row per (model, step, group)."""
    pairs = adapted_pairs(perf, groups, fmt, ft_shots)
    rows = []
    for (model, step, learned_in), part in pairs.group_by(
            ["model", "step", "learned_in"], maintain_order=True):
        vectors = []
        for r in part.iter_rows(named=True):
            vec = book.paired(
                (model, step, r["tuning"], r["train_task"], r["eval_set"], fmt, ft_shots,
                 r["metric"]),
                (model, step, BASE_TUNING, None, r["eval_set"], fmt, base_shots, r["metric"]),
            )
            if vec is not None and vec[0].size:
                vectors.append(vec)
        point = bootstrap.set_mean_point(vectors, "diff")
        lo, hi = bootstrap.set_mean_ci(vectors, n_resamples,
                                       cell_seed(seed, "gain", model, step, learned_in, fmt),
                                       statistic="diff")
        described = (part.group_by("pairing").agg(pl.col("eval_set").unique().sort())
                     .sort("pairing"))
        rows.append({
            "model": model, "step": step, "tokens": part["tokens"][0],
            "learned_in": learned_in, "n_sets": part["eval_set"].n_unique(),
            "n_pairs": len(vectors), "mean_change": _none_if_nan(point),
            "ci_low": _none_if_nan(lo), "ci_high": _none_if_nan(hi),
            "significant": None if math.isnan(lo) else bool(lo > 0 or hi < 0),
            "sets": " ".join(sorted(part["eval_set"].unique().to_list())),
            "pairing": "; ".join(f"{p}: {' '.join(s)}" for p, s in described.iter_rows()),
        })
    return pl.DataFrame(rows, schema=GAIN_SCHEMA).sort("model", "step", "learned_in")
