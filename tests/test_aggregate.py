"""The aggregate CLI: metrics CSVs in, perf.csv and mrc.csv out, one-line errors."""

from __future__ import annotations

import csv
import json

import polars as pl
import pytest

from amuro.aggregate import PERF_COLUMNS, main
from amuro.errors import run_cli
from amuro.mrc import MRC_COLUMNS

HEADER = ["model", "step", "tuning", "train_task", "eval_task", "eval_type", "eval_set", "role",
          "format", "shots", "metric", "value", "n", "n_truncated", "scoring"]
TYPE = {"mnli": "classification", "paws": "classification", "xsum": "generation"}
METRIC = {"classification": "accuracy", "generation": "rougeL"}


def row(tuning, train_task, eval_set, value, role, shots, step=800, model="tiny"):
    kind = TYPE[eval_set]
    return {"model": model, "step": step, "tuning": tuning, "train_task": train_task,
            "eval_task": eval_set, "eval_type": kind, "eval_set": eval_set, "role": role,
            "format": "default", "shots": shots, "metric": METRIC[kind], "value": value,
            "n": 100, "n_truncated": 0 if kind == "classification" else 3,
            "scoring": "loglik" if kind == "classification" else "greedy"}


def write_metrics(path, rows, header=HEADER):
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in header})
    return path


def base_rows(step=800):
    return [row("base", "", s, v, "ID", 4, step) for s, v in
            (("mnli", 0.4), ("paws", 0.5), ("xsum", 0.25))]


def sft_rows(step=800):
    return [row("sft", "mnli", "mnli", 0.8, "ID", 0, step),
            row("sft", "mnli", "paws", 0.25, "cross", 0, step),
            row("sft", "mnli", "xsum", 0.5, "cross", 0, step)]


@pytest.fixture
def inputs(tmp_path):
    base = write_metrics(tmp_path / "base.csv", base_rows(800) + base_rows(1600))
    sft = write_metrics(tmp_path / "sft.csv", sft_rows(800))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"checkpoints": [
        {"step": 800, "tokens": 3276800, "sha256": "a" * 64},
        {"step": 1600, "tokens": 6553600, "sha256": "b" * 64}]}))
    return tmp_path, base, sft, manifest


def run(argv, capsys):
    """Run the CLI as `python -m` would; return (exit code, stderr)."""
    try:
        run_cli(main, [str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def test_writes_perf_and_mrc(inputs, capsys):
    tmp, base, sft, manifest = inputs
    perf_csv, mrc_csv = tmp / "out" / "perf.csv", tmp / "out" / "mrc.csv"
    code, err = run(["--metrics", sft, base, "--manifest", f"tiny={manifest}",
                     "--perf", perf_csv, "--mrc", mrc_csv, "--mrc-format", "default",
                     "--mrc-base-shots", "4", "--mrc-ft-shots", "0", "--log-summary"], capsys)
    assert code == 0, err
    perf = pl.read_csv(perf_csv)
    assert perf.columns == PERF_COLUMNS
    assert perf.height == 9
    # Sorted by model, step, tuning, train_task, eval_set...: base before sft, base rows first.
    assert perf.select("step", "tuning", "eval_set").rows()[:4] == [
        (800, "base", "mnli"), (800, "base", "paws"), (800, "base", "xsum"), (800, "sft", "mnli")]
    assert perf.filter(pl.col("step") == 1600)["tokens"].unique().to_list() == [6553600]
    assert perf.filter(pl.col("step") == 800)["tokens"].unique().to_list() == [3276800]
    assert perf.filter(pl.col("tuning") == "base")["train_task"].null_count() == 6
    assert perf.filter(pl.col("eval_set") == "xsum")["n_truncated"].to_list() == [3, 3, 3]

    out = pl.read_csv(mrc_csv)
    assert out.columns == MRC_COLUMNS
    assert out.height == 1
    r = out.row(0, named=True)
    assert (r["model"], r["step"], r["tokens"], r["train_task"], r["train_type"]) == (
        "tiny", 800, 3276800, "mnli", "classification")
    assert r["mrc_percent"] == pytest.approx(25.0)
    assert r["mean_change"] == pytest.approx(0.0)
    assert r["n_sets"] == 2
    assert "mrc: 1 row(s)" in err and "9 row(s)" in err
    assert not list((tmp / "out").glob(".*"))  # no temp files left


def test_output_is_deterministic(inputs, capsys):
    tmp, base, sft, manifest = inputs
    outs = []
    for order, name in (([base, sft], "a"), ([sft, base], "b")):
        perf_csv, mrc_csv = tmp / f"{name}_perf.csv", tmp / f"{name}_mrc.csv"
        code, err = run(["--metrics", *order, "--manifest", manifest,
                         "--perf", perf_csv, "--mrc", mrc_csv], capsys)
        assert code == 0, err
        outs.append((perf_csv.read_bytes(), mrc_csv.read_bytes()))
    assert outs[0] == outs[1]


def test_summary_reports_skipped_sets(tmp_path, capsys):
    rows = [row("base", "", "paws", 0.0, "ID", 4),
            row("sft", "mnli", "paws", 0.25, "cross", 0),
            row("sft", "mnli", "xsum", 0.5, "cross", 0)]
    metrics = write_metrics(tmp_path / "m.csv", rows)
    code, err = run(["--metrics", metrics, "--perf", tmp_path / "perf.csv",
                     "--mrc", tmp_path / "mrc.csv", "--log-summary"], capsys)
    assert code == 0, err
    assert "1 set(s) skipped: base score 0" in err
    assert "1 set(s) skipped: no base row" in err
    assert "zero_base: tiny step 800 sft/mnli on paws (accuracy)" in err
    assert "missing_base: tiny step 800 sft/mnli on xsum (rougeL)" in err
    assert "tokens left empty for: tiny" in err
    r = pl.read_csv(tmp_path / "mrc.csv").row(0, named=True)
    assert (r["n_sets"], r["n_zero_base"], r["n_missing_base"]) == (0, 1, 1)
    assert r["mrc_percent"] is None
    assert r["mean_change"] == pytest.approx(0.25)


def test_duplicate_key_is_refused(inputs, capsys):
    tmp, base, sft, manifest = inputs
    again = write_metrics(tmp / "again.csv", sft_rows(800)[1:2])
    perf_csv = tmp / "perf.csv"
    code, err = run(["--metrics", base, sft, again, "--perf", perf_csv], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: duplicate score")
    assert "eval_set=paws" in lines[0] and "train_task=mnli" in lines[0]
    assert "again.csv" in lines[0] and "sft.csv" in lines[0]
    assert not perf_csv.exists()


def test_missing_column_names_file_and_column(tmp_path, capsys):
    header = [c for c in HEADER if c != "n_truncated"]
    bad = write_metrics(tmp_path / "bad.csv", base_rows(), header=header)
    code, err = run(["--metrics", bad, "--perf", tmp_path / "perf.csv"], capsys)
    assert code == 2
    assert err.strip().splitlines() == [f"error: {bad}: missing column(s) n_truncated"]


def test_extra_column_names_file_and_column(tmp_path, capsys):
    bad = write_metrics(tmp_path / "bad.csv", base_rows(), header=[*HEADER, "ci"])
    code, err = run(["--metrics", bad, "--perf", tmp_path / "perf.csv"], capsys)
    assert code == 2
    assert err.strip() == f"error: {bad}: unexpected column(s) ci"


def test_bad_value_names_file_and_line(tmp_path, capsys):
    rows = base_rows()
    rows[1]["step"] = "latest"
    bad = write_metrics(tmp_path / "bad.csv", rows)
    code, err = run(["--metrics", bad, "--perf", tmp_path / "perf.csv"], capsys)
    assert code == 2
    assert err.startswith(f"error: {bad}: cannot read") and len(err.strip().splitlines()) == 1


def test_cross_role_on_own_task_refused(tmp_path, capsys):
    rows = [row("sft", "mnli", "mnli", 0.8, "cross", 0)]
    bad = write_metrics(tmp_path / "bad.csv", rows)
    code, err = run(["--metrics", bad, "--perf", tmp_path / "perf.csv"], capsys)
    assert code == 2
    assert f"error: {bad}:2: role cross" in err


def test_step_missing_from_manifest_refused(inputs, capsys):
    tmp, base, sft, _ = inputs
    manifest = tmp / "short.json"
    manifest.write_text(json.dumps({"checkpoints": [{"step": 800, "tokens": 3276800}]}))
    code, err = run(["--metrics", base, sft, "--manifest", f"tiny={manifest}",
                     "--perf", tmp / "perf.csv"], capsys)
    assert code == 2
    assert "model tiny step 1600 is not in its checkpoint manifest" in err
