"""Which sets the base checkpoints learn during pre-training, and what fine-tuning adds to each
group (paper §4–5, Fig. 2 and 4, Table 5).

The rule (instead of the released code's hand-written list): read each eval set's base curve in
the comparison format at base shots. Its `rise` is the score at the last checkpoint minus the
score at the first, on the same items, with a paired bootstrap CI. A set is *learned in
pre-training* when rise ≥ `min_rise` (in metric units) and the CI's lower bound is above 0;
otherwise it is *learned in fine-tuning* (the paper's "never learned" group, flat across
pre-training). With one checkpoint there is no curve: the set gets no group and is counted.

Each in-domain set of a fine-tuned task also gets its fine-tuned curve's rise (`ft_rise`: the
model fine-tuned on the set's task, averaged over its seeds, last checkpoint minus first): the
paper's finding (i), that pre-training improves the model in ways only fine-tuning reveals.

Table 5 (`gain_by_group`): for every checkpoint and group, the mean over (set, fine-tuned model)
pairs of Perf(FT) − Perf(BASE) (fine-tuned scores averaged over seeds), and a third row per
checkpoint, DIFFERENCE: the gain of the fine-tuning group minus that of the pre-training group
(the paper's Table 5 ordering). Every interval here comes from the study's joint bootstrap
(amuro.bootstrap.JointBootstrap: a set's items are drawn once per replicate for every
checkpoint and model, the fine-tuning seeds once). An in-domain set is paired
with the models fine-tuned on its own task; OOD sets of fine-tuned tasks are left to Fig. 7, as
in the paper. A set whose task no model is fine-tuned on is paired with every fine-tuned model
that evaluated it — or, when the study instruction-tunes, with the instruction-tuned models, as
the paper read its pre-training-learned benchmarks after TULU; the `pairing` column says which.
"""

from __future__ import annotations

import math

import polars as pl

from amuro.analysis import INSTRUCTION_TUNING, SECONDARY_METRICS
from amuro.analysis.scores import BASE_TUNING, ScoreBook, collapse_seeds

PRETRAINING = "pre-training"
FINETUNING = "fine-tuning"
# Table 5's ordering, per checkpoint: gain(FINETUNING group) − gain(PRETRAINING group).
DIFFERENCE = "fine-tuning minus pre-training"
# Rises are differences of means (k/n − j/n): compare with a little slack so that a rise of
# exactly min_rise is not lost to rounding (0.3 − 0.2 < 0.1 in floating point).
RISE_TOLERANCE = 1e-9
IN_DOMAIN = "in-domain fine-tune"
ANY_FT = "any fine-tune"
INSTRUCTED = "instruction-tuned"

GROUP_COLUMNS = [
    "model", "eval_set", "eval_task", "eval_type", "metric", "n_checkpoints", "first_step",
    "last_step", "first_value", "last_value", "best_value", "rise", "rise_ci_low",
    "rise_ci_high", "min_rise", "learned_in", "ft_tuning", "ft_train_task", "ft_first_value",
    "ft_last_value", "ft_rise", "ft_rise_ci_low", "ft_rise_ci_high", "ft_n_seeds",
]
GROUP_SCHEMA = {
    "model": pl.String, "eval_set": pl.String, "eval_task": pl.String, "eval_type": pl.String,
    "metric": pl.String, "n_checkpoints": pl.Int64, "first_step": pl.Int64,
    "last_step": pl.Int64, "first_value": pl.Float64, "last_value": pl.Float64,
    "best_value": pl.Float64, "rise": pl.Float64, "rise_ci_low": pl.Float64,
    "rise_ci_high": pl.Float64, "min_rise": pl.Float64, "learned_in": pl.String,
    "ft_tuning": pl.String, "ft_train_task": pl.String, "ft_first_value": pl.Float64,
    "ft_last_value": pl.Float64, "ft_rise": pl.Float64, "ft_rise_ci_low": pl.Float64,
    "ft_rise_ci_high": pl.Float64, "ft_n_seeds": pl.Int64,
}
GAIN_COLUMNS = [
    "model", "step", "tokens", "learned_in", "n_sets", "n_pairs", "mean_change", "ci_low",
    "ci_high", "significant", "sets", "pairing", "n_seeds",
]
GAIN_SCHEMA = {
    "model": pl.String, "step": pl.Int64, "tokens": pl.Int64, "learned_in": pl.String,
    "n_sets": pl.Int64, "n_pairs": pl.Int64, "mean_change": pl.Float64, "ci_low": pl.Float64,
    "ci_high": pl.Float64, "significant": pl.Boolean, "sets": pl.String, "pairing": pl.String,
    "n_seeds": pl.Int64,
}


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def classify_sets(perf: pl.DataFrame, book: ScoreBook, fmt: str, base_shots: int,
                  min_rise: float, n_resamples: int, seed: int,
                  ft_shots: int | None = None) -> pl.DataFrame:
    """One row per (model series, eval set) with its base curve's rise and group, and (given
    ft_shots) the rise of its in-domain fine-tuned curve."""
    joint = book.joint(n_resamples, seed)
    perf = collapse_seeds(perf)
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
            unit = book.paired(
                (g["model"], steps[-1], BASE_TUNING, None, g["eval_set"], fmt, base_shots,
                 g["metric"]),
                (g["model"], steps[0], BASE_TUNING, None, g["eval_set"], fmt, base_shots,
                 g["metric"]),
            )
            if unit is not None and unit.size:
                rise, lo, hi = joint.ci([unit], "diff")
                learned = rise >= min_rise - RISE_TOLERANCE and lo > 0
                row.update(rise=rise, rise_ci_low=_none_if_nan(lo), rise_ci_high=_none_if_nan(hi),
                           learned_in=PRETRAINING if learned else FINETUNING)
        rows.append(row)
    out = pl.DataFrame(rows, schema={k: GROUP_SCHEMA[k] for k in GROUP_COLUMNS[:16]})
    ft = (ft_curve_rise(perf, book, fmt, ft_shots, joint) if ft_shots is not None
          else pl.DataFrame(schema={k: GROUP_SCHEMA[k] for k in ["model", "eval_set", "metric",
                                                                 *GROUP_COLUMNS[16:]]}))
    return (out.join(ft, on=["model", "eval_set", "metric"], how="left")
            .select(GROUP_COLUMNS).sort("model", "eval_set", "metric"))


def ft_curve_rise(perf: pl.DataFrame, book: ScoreBook, fmt: str, ft_shots: int,
                  joint) -> pl.DataFrame:
    """Per in-domain set of a fine-tuned task (task fine-tuning, not instruction tuning): the
    fine-tuned curve's rise from the first checkpoint to the last, seeds averaged, with its
    joint-bootstrap interval. One model per set: the first (tuning, train_task) in sort order."""
    own = collapse_seeds(perf).filter(
        (pl.col("tuning") != BASE_TUNING) & (pl.col("tuning") != INSTRUCTION_TUNING)
        & (pl.col("role") == "ID") & (pl.col("eval_task") == pl.col("train_task"))
        & (pl.col("format") == fmt) & (pl.col("shots") == ft_shots))
    rows = []
    keys = ["model", "eval_set", "metric", "tuning", "train_task"]
    seen = set()
    for key, part in own.sort(*keys, "step").group_by(keys, maintain_order=True):
        g = dict(zip(keys, key, strict=True))
        if (g["model"], g["eval_set"], g["metric"]) in seen:
            continue
        seen.add((g["model"], g["eval_set"], g["metric"]))
        steps, values = part["step"].to_list(), part["value"].to_list()
        row = {"model": g["model"], "eval_set": g["eval_set"], "metric": g["metric"],
               "ft_tuning": g["tuning"], "ft_train_task": g["train_task"],
               "ft_first_value": values[0], "ft_last_value": values[-1], "ft_rise": None,
               "ft_rise_ci_low": None, "ft_rise_ci_high": None,
               "ft_n_seeds": int(part["n_seeds"].max())}
        if len(steps) >= 2:
            unit = book.paired(
                (g["model"], steps[-1], g["tuning"], g["train_task"], g["eval_set"], fmt,
                 ft_shots, g["metric"]),
                (g["model"], steps[0], g["tuning"], g["train_task"], g["eval_set"], fmt,
                 ft_shots, g["metric"]),
            )
            if unit is not None and unit.size:
                rise, lo, hi = joint.ci([unit], "diff")
                row.update(ft_rise=rise, ft_rise_ci_low=_none_if_nan(lo),
                           ft_rise_ci_high=_none_if_nan(hi))
        rows.append(row)
    cols = ["model", "eval_set", "metric", *GROUP_COLUMNS[16:]]
    return pl.DataFrame(rows, schema={k: GROUP_SCHEMA[k] for k in cols})


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
    """Table 5: GAIN_COLUMNS, one row per (model, step, group), and a DIFFERENCE row per
    (model, step) with both groups: gain(fine-tuning group) − gain(pre-training group)."""
    joint = book.joint(n_resamples, seed)
    perf = collapse_seeds(perf)
    pairs = adapted_pairs(perf, groups, fmt, ft_shots)
    rows = []
    units_by: dict[tuple, list] = {}
    for (model, step, learned_in), part in pairs.group_by(
            ["model", "step", "learned_in"], maintain_order=True):
        units = []
        for r in part.iter_rows(named=True):
            unit = book.paired(
                (model, step, r["tuning"], r["train_task"], r["eval_set"], fmt, ft_shots,
                 r["metric"]),
                (model, step, BASE_TUNING, None, r["eval_set"], fmt, base_shots, r["metric"]),
            )
            if unit is not None and unit.size:
                units.append(unit)
        units_by[(model, step, learned_in)] = units
        point, lo, hi = joint.ci(units, "diff")
        described = (part.group_by("pairing").agg(pl.col("eval_set").unique().sort())
                     .sort("pairing"))
        rows.append({
            "model": model, "step": step, "tokens": part["tokens"][0],
            "learned_in": learned_in, "n_sets": part["eval_set"].n_unique(),
            "n_pairs": len(units), "mean_change": _none_if_nan(point),
            "ci_low": _none_if_nan(lo), "ci_high": _none_if_nan(hi),
            "significant": None if math.isnan(lo) else bool(lo > 0 or hi < 0),
            "sets": " ".join(sorted(part["eval_set"].unique().to_list())),
            "pairing": "; ".join(f"{p}: {' '.join(s)}" for p, s in described.iter_rows()),
            "n_seeds": max((u.a.shape[0] for u in units), default=0),
        })
    for r in list(rows):
        if r["learned_in"] != FINETUNING:
            continue
        other = next((o for o in rows if o["learned_in"] == PRETRAINING
                      and o["model"] == r["model"] and o["step"] == r["step"]), None)
        if other is None:
            continue
        ft_units = units_by[(r["model"], r["step"], FINETUNING)]
        pt_units = units_by[(r["model"], r["step"], PRETRAINING)]
        point, lo, hi = joint.difference_ci(ft_units, pt_units, "diff")
        rows.append({
            "model": r["model"], "step": r["step"], "tokens": r["tokens"],
            "learned_in": DIFFERENCE, "n_sets": r["n_sets"] + other["n_sets"],
            "n_pairs": r["n_pairs"] + other["n_pairs"], "mean_change": _none_if_nan(point),
            "ci_low": _none_if_nan(lo), "ci_high": _none_if_nan(hi),
            "significant": None if math.isnan(lo) else bool(lo > 0 or hi < 0),
            "sets": f"{r['sets']} | {other['sets']}",
            "pairing": f"gain({FINETUNING}) − gain({PRETRAINING})",
            "n_seeds": max(r["n_seeds"], other["n_seeds"]),
        })
    order = pl.col("learned_in").replace_strict({FINETUNING: 0, PRETRAINING: 1, DIFFERENCE: 2},
                                                default=3)
    return (pl.DataFrame(rows, schema=GAIN_SCHEMA).with_columns(_o=order)
            .sort("model", "step", "_o").select(GAIN_COLUMNS))
