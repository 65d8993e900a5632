"""Mean ratio of change on hand-made tables with known answers (amuro.analysis.mrc)."""

from __future__ import annotations

import polars as pl
import pytest

from amuro.analysis.mrc import (
    MRC_COLUMNS,
    SUMMARY_COLUMNS,
    cross_task_pairs,
    mean_ratio_of_change,
    skipped_sets,
)
from amuro.bootstrap import mrc_ci, mrc_point

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
    # One row per target type present, then "all".
    assert out.select("target_type", "direction").rows() == [
        ("classification", "classification->classification"),
        ("generation", "classification->generation"),
        ("all", "classification->all")]
    row = one(out, target_type="all")
    # ratios (0.25-0.5)/0.5 = -0.5 and (0.5-0.25)/0.25 = +1.0 -> mean 0.25 -> 25 %
    assert row["mrc_percent"] == 25.0
    assert row["mean_change"] == pytest.approx(0.0)
    assert row["n_sets"] == 2
    assert row["n_zero_base"] == 0 and row["n_missing_base"] == 0
    assert row["train_type"] == "classification"
    assert row["tokens"] == 4096 * 1000
    assert row["mrc_ci_low_percent"] is None and row["mrc_ci_high_percent"] is None  # add_ci
    assert one(out, target_type="classification")["mrc_percent"] == -50.0
    assert one(out, target_type="generation")["mrc_percent"] == 100.0
    assert one(out, target_type="generation")["n_sets"] == 1


def test_zero_base_is_guarded_and_counted():
    perf = table([
        base("paws", 0.5), base("xsum", 0.25), base("socialiqa", 0.0),
        ft("mnli", "paws", 0.25), ft("mnli", "xsum", 0.5), ft("mnli", "socialiqa", 0.75),
    ])
    out = mean_ratio_of_change(perf, "default", 4, 0)
    row = one(out, train_task="mnli", target_type="all")
    assert row["mrc_percent"] == 25.0  # zero-base set not in the ratio mean
    assert row["n_sets"] == 2
    assert row["n_zero_base"] == 1
    # ...but in the raw mean change: (-0.25 + 0.25 + 0.75) / 3
    assert row["mean_change"] == pytest.approx(0.25)
    assert row["train_type"] is None and row["direction"] is None  # no ID rows for mnli
    cls = one(out, target_type="classification")
    assert (cls["n_sets"], cls["n_zero_base"], cls["mrc_percent"]) == (1, 1, -50.0)
    assert cls["mean_change"] == pytest.approx(0.25)  # (-0.25 + 0.75) / 2
    skipped = skipped_sets(cross_task_pairs(perf, "default", 4, 0))
    assert skipped.select("eval_set", "reason").rows() == [("socialiqa", "zero_base")]


def test_missing_base_counted_not_dropped():
    perf = table([
        base("paws", 0.5),
        ft("mnli", "paws", 0.25), ft("mnli", "xsum", 0.5),
    ])
    out = mean_ratio_of_change(perf, "default", 4, 0)
    row = one(out, train_task="mnli", target_type="all")
    assert row["n_sets"] == 1
    assert row["n_missing_base"] == 1
    assert row["mrc_percent"] == -50.0
    assert row["mean_change"] == pytest.approx(-0.25)
    gen = one(out, target_type="generation")  # no usable generation set
    assert gen["mrc_percent"] is None and gen["mean_change"] is None
    assert (gen["n_sets"], gen["n_missing_base"]) == (0, 1)
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
    assert out.select("train_task", "target_type").rows() == [  # sorted
        ("mnli", "classification"), ("mnli", "generation"), ("mnli", "all"),
        ("xsum", "classification"), ("xsum", "all")]
    assert one(out, direction="classification->generation")["mrc_percent"] == pytest.approx(-50)
    assert one(out, direction="classification->classification")["mrc_percent"] == 0.0
    assert one(out, direction="classification->all")["mrc_percent"] == pytest.approx(-25.0)
    gen = one(out, direction="generation->classification")
    assert gen["train_type"] == "generation" and gen["train_task"] == "xsum"
    assert gen["mrc_percent"] == -25.0  # (0 + -0.5) / 2
    assert one(out, direction="generation->all")["mrc_percent"] == -25.0
    assert out.filter(pl.col("direction") == "generation->generation").height == 0


def test_only_requested_format_and_shots_are_used():
    perf = table([
        base("paws", 0.5), base("paws", 0.1, shots=0), base("paws", 0.1, fmt="io"),
        ft("mnli", "paws", 0.25), ft("mnli", "paws", 0.9, shots=4),
        ft("mnli", "paws", 0.9, fmt="io"),
    ])
    row = one(mean_ratio_of_change(perf, "default", 4, 0), target_type="all")
    assert row["n_sets"] == 1
    assert row["mrc_percent"] == -50.0
    io = one(mean_ratio_of_change(perf, "io", 0, 0), target_type="all")
    assert io["n_sets"] == 0 and io["n_missing_base"] == 1  # io base was read at 4 shots only


def test_several_base_rows_for_one_set_refused():
    perf = table([base("paws", 0.5), base("paws", 0.25), ft("mnli", "paws", 0.25)])
    with pytest.raises(ValueError, match="several base rows"):
        mean_ratio_of_change(perf, "default", 4, 0)


def test_steps_are_separate_checkpoints_and_ft_without_cross_sets_kept():
    perf = table([
        base("paws", 0.5, step=1000), base("paws", 0.25, step=2000),
        ft("mnli", "paws", 0.25, step=1000), ft("mnli", "paws", 0.5, step=2000),
        ft("xsum", "xsum", 0.3, role="ID", step=1000),
    ])
    out = mean_ratio_of_change(perf, "default", 4, 0).filter(pl.col("target_type") == "all")
    assert out.select("step", "train_task").rows() == [
        (1000, "mnli"), (1000, "xsum"), (2000, "mnli")]
    # exact: -0.25/0.5 and 0.25/0.25 are exact in binary floating point
    assert out["mrc_percent"].to_list() == [-50.0, None, 100.0]
    xsum = one(out, train_task="xsum")
    assert xsum["n_sets"] == 0 and xsum["mean_change"] is None
    assert xsum["direction"] == "generation->all"


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
    row = one(mean_ratio_of_change(perf, "default", 4, 0), target_type="all")
    pairs = [(items(f), items(b)) for f, b in values.values()]
    assert mrc_point(pairs) * 100 == pytest.approx(row["mrc_percent"])
    low, high = mrc_ci(pairs, 500, seed=1)
    assert low * 100 < row["mrc_percent"] < high * 100


def test_csv_columns_put_the_ci_next_to_the_mrc():
    for columns in (MRC_COLUMNS, SUMMARY_COLUMNS):
        at = columns.index("mrc_percent")
        assert columns[at:at + 3] == ["mrc_percent", "mrc_ci_low_percent",
                                      "mrc_ci_high_percent"]
