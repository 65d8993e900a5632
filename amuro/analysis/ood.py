"""Out-of-domain change per training task, averaged across checkpoints (paper §6.3, Fig. 7).

For every fine-tuned task t and each of its OOD sets d, at every checkpoint i:
ratio_i = (Perf_t^i(d) − Perf_BASE^i(d)) / Perf_BASE^i(d), in the comparison format, the
fine-tuned model at ft shots and the base checkpoint at base shots, on the items both scored.
Fine-tuned scores are averaged over the fine-tuning seeds (n_seeds).
`ratio_percent` is the mean of ratio_i over checkpoints (checkpoints whose base score is 0 are
left out of it and counted in `n_zero_base`), with an interval from the study's joint bootstrap
(each replicate resamples the set's items once for every checkpoint, and the seeds once).
`mean_change` is the plain mean of the differences.
"""

from __future__ import annotations

import math

import polars as pl

from amuro.analysis.scores import BASE_TUNING, ScoreBook, collapse_seeds

OOD_ROLE = "OOD"
OOD_COLUMNS = [
    "model", "tuning", "train_task", "eval_set", "eval_task", "eval_type", "metric",
    "n_checkpoints", "mean_base", "mean_ft", "mean_change", "ratio_percent", "ci_low_percent",
    "ci_high_percent", "significant", "n_zero_base", "n_missing", "n_seeds",
]
SCHEMA = {
    "model": pl.String, "tuning": pl.String, "train_task": pl.String, "eval_set": pl.String,
    "eval_task": pl.String, "eval_type": pl.String, "metric": pl.String,
    "n_checkpoints": pl.Int64, "mean_base": pl.Float64, "mean_ft": pl.Float64,
    "mean_change": pl.Float64, "ratio_percent": pl.Float64, "ci_low_percent": pl.Float64,
    "ci_high_percent": pl.Float64, "significant": pl.Boolean, "n_zero_base": pl.Int64,
    "n_missing": pl.Int64, "n_seeds": pl.Int64,
}


def ood_change(perf: pl.DataFrame, book: ScoreBook, fmt: str, base_shots: int, ft_shots: int,
               n_resamples: int, seed: int) -> pl.DataFrame:
    """One row per (fine-tuned series, OOD set): OOD_COLUMNS."""
    joint = book.joint(n_resamples, seed)
    ft = collapse_seeds(perf).filter(
        (pl.col("tuning") != BASE_TUNING) & (pl.col("role") == OOD_ROLE)
        & (pl.col("format") == fmt) & (pl.col("shots") == ft_shots)
    )
    keys = ["model", "tuning", "train_task", "eval_set", "eval_task", "eval_type", "metric"]
    rows = []
    for key, part in ft.sort("step").group_by(keys, maintain_order=True):
        g = dict(zip(keys, key, strict=True))
        vectors, base_means, ft_means, n_zero, n_missing, n_seeds = [], [], [], 0, 0, 0
        for step in part["step"].to_list():
            vec = book.paired(
                (g["model"], step, g["tuning"], g["train_task"], g["eval_set"], fmt, ft_shots,
                 g["metric"]),
                (g["model"], step, BASE_TUNING, None, g["eval_set"], fmt, base_shots,
                 g["metric"]),
            )
            if vec is None or not vec.size:
                n_missing += 1
                continue
            f, b = vec.means()
            ft_means.append(f)
            base_means.append(b)
            vectors.append(vec)
            n_zero += int(b == 0)
            n_seeds = max(n_seeds, vec.a.shape[0])
        point, lo, hi = joint.ci(vectors, "ratio") if vectors else (math.nan,) * 3
        n = len(vectors)
        rows.append({
            **g, "n_checkpoints": n,
            "mean_base": sum(base_means) / n if n else None,
            "mean_ft": sum(ft_means) / n if n else None,
            "mean_change": (sum(ft_means) - sum(base_means)) / n if n else None,
            "ratio_percent": None if math.isnan(point) else point * 100,
            "ci_low_percent": None if math.isnan(lo) else lo * 100,
            "ci_high_percent": None if math.isnan(hi) else hi * 100,
            "significant": None if math.isnan(lo) else bool(lo > 0 or hi < 0),
            "n_zero_base": n_zero, "n_missing": n_missing, "n_seeds": n_seeds,
        })
    return pl.DataFrame(rows, schema=SCHEMA).sort("model", "tuning", "train_task", "eval_set")
