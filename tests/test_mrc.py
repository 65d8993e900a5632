"""Mean ratio of change on hand-made tables with known answers."""

from __future__ import annotations

import polars as pl
import pytest

from amuro.bootstrap import mrc_ci, mrc_point
from amuro.mrc import (
    MRC_COLUMNS,
    MRC_CSV_COLUMNS,
    cross_task_pairs,
    mean_ratio_of_change,
    skipped_sets,
)

SCHEMA = {
    "model": pl.String, "step": pl.Int64, "tokens": pl.Int64, "tuning": pl.String,
    "train_task": pl.String, "eval_task": pl.String, "eval_type": pl.String,
    "eval_set": pl.String, "role": pl.String, "format": pl.String, "shots": pl.Int64,
    "metric": pl.String, "value": pl.Float64,
}
TYPE = {"mnli": "classification", "paws": "classification", "xsum": "generation",
        "socialiqa": "classification"}
METRIC = {"classification": "accuracy", "generation": "rougeL"}


def base(eval_set, value, task=None, shots=4, fmt="default", step=1000):
    task = task or eval_set
    return ("tiny", step, 4096 * step, "base", None, task, TYPE[task], eval_set, "ID", fmt,
            shots, METRIC[TYPE[task]], value)


def ft(train_task, eval_set, value, task=None, role="cross", shots=0, fmt="default", step=1000):
    task = task or eval_set
    return ("tiny", step, 4096 * step, "sft", train_task, task, TYPE[task], eval_set, role, fmt,
            shots, METRIC[TYPE[task]], value)


def table(rows):
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def one(df: pl.DataFrame, **key) -> dict:
    rows = df.filter(*[pl.col(k) == v for k, v in key.items()])
    assert rows.height == 1, rows
    return rows.row(0, named=True)


def test_mrc_known_answer():
    perf = table([
        base("paws", 0.5), base("xsum", 0.25), base("mnli", 0.4),
        ft("mnli", "mnli", 0.9, role="ID"),
        ft("mnli", "paws", 0.25), ft("mnli", "xsum", 0.5),
    ])
    out = mean_ratio_of_change(perf, "default", base_shots=4, ft_shots=0)
    assert out.columns == MRC_COLUMNS
    row = one(out, train_task="mnli")
    # ratios (0.25-0.5)/0.5 = -0.5 and (0.5-0.25)/0.25 = +1.0 -> mean 0.25 -> 25 %
    assert row["mrc_percent"] == pytest.approx(25.0)
    assert row["mean_change"] == pytest.approx(0.0)
    assert row["n_sets"] == 2
    assert row["n_zero_base"] == 0 and row["n_missing_base"] == 0
    assert row["train_type"] == "classification"
    assert row["tokens"] == 4096 * 1000
    assert row["mrc_to_classification_percent"] == pytest.approx(-50.0)
    assert row["mrc_to_generation_percent"] == pytest.approx(100.0)


def test_zero_base_is_guarded_and_counted():
    perf = table([
        base("paws", 0.5), base("xsum", 0.25), base("socialiqa", 0.0),
        ft("mnli", "paws", 0.25), ft("mnli", "xsum", 0.5), ft("mnli", "socialiqa", 0.75),
    ])
    row = one(mean_ratio_of_change(perf, "default", 4, 0), train_task="mnli")
    assert row["mrc_percent"] == pytest.approx(25.0)  # zero-base set not in the ratio mean
    assert row["n_sets"] == 2
    assert row["n_zero_base"] == 1
    # ...but in the raw mean change: (-0.25 + 0.25 + 0.75) / 3
    assert row["mean_change"] == pytest.approx(0.25)
    assert row["train_type"] is None  # no ID rows for mnli
    skipped = skipped_sets(cross_task_pairs(perf, "default", 4, 0))
    assert skipped.select("eval_set", "reason").rows() == [("socialiqa", "zero_base")]


def test_missing_base_counted_not_dropped():
    perf = table([
        base("paws", 0.5),
        ft("mnli", "paws", 0.25), ft("mnli", "xsum", 0.5),
    ])
    row = one(mean_ratio_of_change(perf, "default", 4, 0), train_task="mnli")
    assert row["n_sets"] == 1
    assert row["n_missing_base"] == 1
    assert row["mrc_percent"] == pytest.approx(-50.0)
    assert row["mean_change"] == pytest.approx(-0.25)
    assert row["mrc_to_generation_percent"] is None  # no usable generation set
    skipped = skipped_sets(cross_task_pairs(perf, "default", 4, 0))
    assert skipped.select("eval_set", "reason").rows() == [("xsum", "missing_base")]


def test_type_split_per_training_task():
    # classification -> generation and generation -> classification, as the paper reports.
    perf = table([
        base("mnli", 0.5), base("paws", 0.5), base("xsum", 0.2),
        ft("mnli", "mnli", 0.8, role="ID"), ft("mnli", "xsum", 0.1), ft("mnli", "paws", 0.5),
        ft("xsum", "xsum", 0.3, role="ID"), ft("xsum", "mnli", 0.5), ft("xsum", "paws", 0.25),
    ])
    out = mean_ratio_of_change(perf, "default", 4, 0)
    assert out["train_task"].to_list() == ["mnli", "xsum"]  # sorted
    cls = one(out, train_task="mnli")
    assert cls["train_type"] == "classification"
    assert cls["mrc_to_generation_percent"] == pytest.approx(-50.0)
    assert cls["mrc_to_classification_percent"] == pytest.approx(0.0)
    assert cls["mrc_percent"] == pytest.approx(-25.0)
    gen = one(out, train_task="xsum")
    assert gen["train_type"] == "generation"
    assert gen["mrc_to_classification_percent"] == pytest.approx(-25.0)
    assert gen["mrc_to_generation_percent"] is None


def test_only_requested_format_and_shots_are_used():
    perf = table([
        base("paws", 0.5), base("paws", 0.1, shots=0), base("paws", 0.1, fmt="io"),
        ft("mnli", "paws", 0.25), ft("mnli", "paws", 0.9, shots=4),
        ft("mnli", "paws", 0.9, fmt="io"),
    ])
    row = one(mean_ratio_of_change(perf, "default", 4, 0), train_task="mnli")
    assert row["n_sets"] == 1
    assert row["mrc_percent"] == pytest.approx(-50.0)
    io = one(mean_ratio_of_change(perf, "io", 0, 0), train_task="mnli")
    assert io["n_sets"] == 0 and io["n_missing_base"] == 1  # io base was read at 4 shots only


def test_steps_are_separate_checkpoints_and_ft_without_cross_sets_kept():
    perf = table([
        base("paws", 0.5, step=1000), base("paws", 0.25, step=2000),
        ft("mnli", "paws", 0.25, step=1000), ft("mnli", "paws", 0.5, step=2000),
        ft("xsum", "xsum", 0.3, role="ID", step=1000),
    ])
    out = mean_ratio_of_change(perf, "default", 4, 0)
    assert out.select("step", "train_task").rows() == [
        (1000, "mnli"), (1000, "xsum"), (2000, "mnli")]
    # exact: -0.25/0.5 and 0.25/0.25 are exact in binary floating point
    assert out["mrc_percent"].to_list() == [-50.0, None, 100.0]
    xsum = one(out, train_task="xsum")
    assert xsum["n_sets"] == 0 and xsum["mean_change"] is None


def test_empty_table_gives_empty_result():
    out = mean_ratio_of_change(table([]), "default", 4, 0)
    assert out.height == 0
    assert out.columns == MRC_COLUMNS


def test_bootstrap_mrc_agrees_with_table_mrc():
    # Per-item 0/1 scores whose means are the table's values; the zero-base set drops out of both.
    def items(value, n=20):
        k = round(value * n)
        return [1.0] * k + [0.0] * (n - k)

    values = {"paws": (0.25, 0.5), "xsum": (0.5, 0.25), "socialiqa": (0.75, 0.0)}
    perf = table([r for s, (f, b) in values.items() for r in (base(s, b), ft("mnli", s, f))])
    row = one(mean_ratio_of_change(perf, "default", 4, 0), train_task="mnli")
    pairs = [(items(f), items(b)) for f, b in values.values()]
    assert mrc_point(pairs) * 100 == pytest.approx(row["mrc_percent"])
    low, high = mrc_ci(pairs, 500, seed=1)
    assert low * 100 < row["mrc_percent"] < high * 100


def test_csv_columns_put_the_ci_next_to_the_mrc():
    at = MRC_CSV_COLUMNS.index("mrc_percent")
    assert MRC_CSV_COLUMNS[at:at + 3] == ["mrc_percent", "mrc_ci_low_percent",
                                          "mrc_ci_high_percent"]
    assert [c for c in MRC_CSV_COLUMNS if "_ci_" not in c] == MRC_COLUMNS
