"""The tidy perf table (results/perf.csv): its columns and dtypes, declared once.

amuro.aggregate writes it in this column order; amuro.tables, amuro.figures and amuro.report
read it with these dtypes (never inferred).

One row per (model, step, tuning, train_task, seed, eval_set, role, format, shots, metric):
`seed` is the fine-tuning (or instruction-tuning) seed, 0 for base checkpoints; several seeds of
one fine-tuned model are separate rows, and the analyses average over them
(amuro.analysis.scores.collapse_seeds). `top_share` is the share of the cell's most frequent
prediction and `empty_share` the share of empty (all-whitespace) predictions, both from the
cell's predictions.jsonl (null when its rows carry no prediction): a cell near 1 in either is a
degenerate output (one answer for every item, or nothing at all).
"""

from __future__ import annotations

import polars as pl

PERF_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String(), "step": pl.Int64(), "tokens": pl.Int64(), "tuning": pl.String(),
    "train_task": pl.String(), "seed": pl.Int64(), "eval_task": pl.String(),
    "eval_type": pl.String(), "eval_set": pl.String(), "role": pl.String(),
    "format": pl.String(), "shots": pl.Int64(), "metric": pl.String(), "value": pl.Float64(),
    "ci_low": pl.Float64(), "ci_high": pl.Float64(), "n": pl.Int64(),
    "n_truncated": pl.Int64(), "top_share": pl.Float64(), "empty_share": pl.Float64(),
    "scoring": pl.String(),
}
PERF_COLUMNS = list(PERF_SCHEMA)
# A cell whose top_share or empty_share reaches this is listed as degenerate in the report.
DEGENERATE_SHARE = 0.9
