"""The aggregate CLI: metrics CSVs (+ predictions.jsonl) in, perf/ft_vs_base/scores out; the MRC
table (python -m amuro.tables mrc) read from its outputs."""

from __future__ import annotations

import csv
import json

import numpy as np
import polars as pl
import pytest

from amuro import tables
from amuro.aggregate import DIFF_COLUMNS, PERF_COLUMNS, main
from amuro.analysis.mrc import MRC_COLUMNS, SUMMARY_COLUMNS
from amuro.analysis.scores import cell_seed, load_scores
from amuro.bootstrap import JointBootstrap, Unit, mean_ci
from amuro.errors import run_cli

HEADER = ["model", "step", "tuning", "train_task", "seed", "eval_task", "eval_type", "eval_set",
          "role", "format", "shots", "metric", "value", "n", "n_truncated", "scoring"]
OLD_HEADER = [c for c in HEADER if c != "seed"]  # metrics files written before seeds
TYPE = {"mnli": "classification", "paws": "classification", "xsum": "generation"}
METRIC = {"classification": "accuracy", "generation": "rougeL"}


def row(tuning, train_task, eval_set, value, role, shots, step=800, model="tiny", seed=None):
    kind = TYPE[eval_set]
    seed = (0 if tuning == "base" else 1) if seed is None else seed
    return {"model": model, "step": step, "tuning": tuning, "train_task": train_task,
            "seed": seed, "eval_task": eval_set, "eval_type": kind, "eval_set": eval_set,
            "role": role,
            "format": "default", "shots": shots, "metric": METRIC[kind], "value": value,
            "n": 100, "n_truncated": 0 if kind == "classification" else 3,
            "scoring": "loglik" if kind == "classification" else "greedy"}


def scores_for(value, n):
    """n per-example 0/1 scores with mean `value` (value * n must be a whole number)."""
    k = round(value * n)
    assert abs(k / n - value) < 1e-12
    return [1.0] * k + [0.0] * (n - k)


def write_metrics(path, rows, header=HEADER, ids=None, predictions=None):
    """A metrics CSV and, beside it, the predictions.jsonl that reproduces its values
    (`predictions`: {eval_set: list of prediction strings}; "x" for every item otherwise)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in header})
    with (path.parent / "predictions.jsonl").open("w") as fh:
        for r in rows:
            item_ids = ids or [f"q{i}" for i in range(r["n"])]
            preds = (predictions or {}).get(r["eval_set"], ["x"] * r["n"])
            for i, score, pred in zip(item_ids, scores_for(r["value"], r["n"]), preds,
                                      strict=True):
                fh.write(json.dumps({"eval_set": r["eval_set"], "format": r["format"],
                                     "shots": r["shots"], "id": i, "prediction": pred,
                                     "target": "x", "score": score, "truncation": "none"})
                         + "\n")
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
    base = [write_metrics(tmp_path / f"base{s}" / "metrics.csv", base_rows(s)) for s in (800, 1600)]
    sft = write_metrics(tmp_path / "sft" / "metrics.csv", sft_rows(800))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"checkpoints": [
        {"step": 800, "tokens": 3276800, "sha256": "a" * 64},
        {"step": 1600, "tokens": 6553600, "sha256": "b" * 64}]}))
    return tmp_path, base, sft, manifest


def run(argv, capsys, entry=main):
    """Run a CLI as `python -m` would; return (exit code, stderr)."""
    try:
        run_cli(entry, [str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def run_mrc(perf_csv, scores, out_dir, capsys, *extra):
    """python -m amuro.tables mrc on aggregate's outputs; returns (mrc.csv, summary, stderr)."""
    mrc_csv, summary_csv = out_dir / "mrc.csv", out_dir / "mrc_summary.csv"
    code, err = run(["mrc", "--perf", perf_csv, "--scores", scores, "--out", mrc_csv,
                     "--summary", summary_csv, "--ft-shots", 0, *extra], capsys,
                    entry=tables.main)
    assert code == 0, err
    return pl.read_csv(mrc_csv), pl.read_csv(summary_csv), err


def test_writes_perf_and_scores_for_the_mrc(inputs, capsys):
    tmp, base, sft, manifest = inputs
    out = tmp / "out"
    perf_csv, scores = out / "perf.csv", out / "scores.parquet"
    code, err = run(["--metrics", sft, *base, "--manifest", f"tiny={manifest}",
                     "--perf", perf_csv, "--scores", scores, "--log-summary"], capsys)
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
    assert "9 row(s)" in err and "900 per-example score(s) in 9 cell(s)" in err
    assert not list(out.glob(".*"))  # no temp files left

    # Every cell's scores, as read from predictions.jsonl (base cells have no train_task).
    book = load_scores(scores)
    assert len(book.cells) == 9
    ids, values = book.get("tiny", 800, "base", None, 0, "paws", "default", 4, "accuracy")
    assert ids == [f"q{i}" for i in range(100)] and values.tolist() == scores_for(0.5, 100)
    assert book.get("tiny", 800, "sft", "mnli", 1, "xsum", "default", 0,
                    "rougeL")[1].mean() == 0.5

    result, summary, err = run_mrc(perf_csv, scores, out, capsys)
    assert result.columns == MRC_COLUMNS
    assert result.select("target_type", "direction", "n_sets").rows() == [
        ("classification", "classification->classification", 1),
        ("generation", "classification->generation", 1),
        ("all", "classification->all", 2)]
    r = result.filter(pl.col("target_type") == "all").row(0, named=True)
    assert (r["model"], r["step"], r["tokens"], r["train_task"], r["train_type"]) == (
        "tiny", 800, 3276800, "mnli", "classification")
    assert r["mrc_percent"] == pytest.approx(25.0)
    assert r["mean_change"] == pytest.approx(0.0)
    assert result["mrc_percent"].to_list()[:2] == pytest.approx([-50.0, 100.0])
    assert summary.columns == SUMMARY_COLUMNS
    assert summary.select("direction", "train_task").rows() == [
        ("classification->classification", "all"), ("classification->classification", "mnli"),
        ("classification->generation", "all"), ("classification->generation", "mnli")]
    assert "mean ratio of change per checkpoint: 3 row(s)" in err
    assert "skipped" not in err


def test_output_is_deterministic(inputs, capsys):
    tmp, base, sft, manifest = inputs
    outs = []
    for order, name in (([*base, sft], "a"), ([sft, *reversed(base)], "b")):
        out = tmp / name
        perf_csv, scores = out / "perf.csv", out / "scores.parquet"
        code, err = run(["--metrics", *order, "--manifest", manifest, "--perf", perf_csv,
                         "--scores", scores, "--diff", out / "d.csv", "--ft-shots", 0], capsys)
        assert code == 0, err
        run_mrc(perf_csv, scores, out, capsys)
        outs.append([(out / f).read_bytes() for f in ("perf.csv", "scores.parquet", "d.csv",
                                                      "mrc.csv", "mrc_summary.csv")])
    assert outs[0] == outs[1]


def test_summary_reports_skipped_sets(tmp_path, capsys):
    rows = [row("base", "", "paws", 0.0, "ID", 4),
            row("sft", "mnli", "paws", 0.25, "cross", 0),
            row("sft", "mnli", "xsum", 0.5, "cross", 0)]
    metrics = [write_metrics(tmp_path / "base" / "m.csv", rows[:1]),
               write_metrics(tmp_path / "sft" / "m.csv", rows[1:])]
    perf_csv, scores = tmp_path / "perf.csv", tmp_path / "scores.parquet"
    code, err = run(["--metrics", *metrics, "--perf", perf_csv, "--scores", scores,
                     "--log-summary"], capsys)
    assert code == 0, err
    assert "tokens seen unknown (no manifest, or null there) for: tiny" in err
    result, summary, err = run_mrc(perf_csv, scores, tmp_path, capsys)
    assert "1 (model, set) pair(s) skipped: base score 0, left out of the ratio (paws)" in err
    assert "1 (model, set) pair(s) skipped: no base row, left out (xsum)" in err
    r = result.filter(pl.col("target_type") == "all").row(0, named=True)
    assert (r["n_sets"], r["n_zero_base"], r["n_missing_base"]) == (0, 1, 1)
    assert r["mrc_percent"] is None and r["mrc_ci_low_percent"] is None
    assert r["mean_change"] == pytest.approx(0.25)
    assert r["direction"] is None  # no in-domain row tells the training task's type
    assert summary.height == 0


def test_duplicate_key_is_refused(inputs, capsys):
    tmp, base, sft, manifest = inputs
    again = write_metrics(tmp / "again" / "again.csv", sft_rows(800)[1:2])
    perf_csv = tmp / "perf.csv"
    code, err = run(["--metrics", *base, sft, again, "--perf", perf_csv], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: duplicate score")
    assert "eval_set=paws" in lines[0] and "train_task=mnli" in lines[0]
    assert "again.csv" in lines[0] and str(sft) in lines[0]
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
    code, err = run(["--metrics", *base, sft, "--manifest", f"tiny={manifest}",
                     "--perf", tmp / "perf.csv"], capsys)
    assert code == 2
    assert "model tiny step 1600 is not in its checkpoint manifest" in err


def test_manifest_with_unknown_tokens_is_accepted(inputs, capsys):
    """A gguf file or a named revision may not say how many tokens it saw: tokens stay empty,
    but a step missing from the manifest is still refused."""
    tmp, base, sft, _ = inputs
    manifest = tmp / "nulls.json"
    manifest.write_text(json.dumps({"checkpoints": [{"step": 800, "tokens": None},
                                                    {"step": 1600, "tokens": 6553600}]}))
    code, err = run(["--metrics", *base, sft, "--manifest", f"tiny={manifest}",
                     "--perf", tmp / "perf.csv"], capsys)
    assert code == 0, err
    perf = pl.read_csv(tmp / "perf.csv")
    assert perf.filter(pl.col("step") == 800)["tokens"].null_count() == perf.filter(
        pl.col("step") == 800).height
    assert set(perf.filter(pl.col("step") == 1600)["tokens"].to_list()) == {6553600}
    manifest.write_text(json.dumps({"checkpoints": [{"step": 800, "tokens": "many"}]}))
    code, err = run(["--metrics", *base, "--manifest", f"tiny={manifest}",
                     "--perf", tmp / "perf.csv"], capsys)
    assert code == 2 and "integer or null 'tokens'" in err


def full_run(inputs, capsys, *extra):
    tmp, base, sft, manifest = inputs
    out = tmp / "out"
    code, err = run(["--metrics", sft, *base, "--manifest", f"tiny={manifest}",
                     "--perf", out / "perf.csv", "--scores", out / "scores.parquet",
                     "--diff", out / "ft_vs_base.csv", "--ft-shots", "0", *extra], capsys)
    assert code == 0, err
    return out, err


def test_perf_ci_columns(inputs, capsys):
    out, err = full_run(inputs, capsys, "--bootstrap-seed", "3")
    perf = pl.read_csv(out / "perf.csv")
    assert (perf["ci_low"] <= perf["value"]).all() and (perf["value"] <= perf["ci_high"]).all()
    # 0/1 scores with mean in (0, 1): a proper interval; exactly the library's, seeded per cell.
    r = perf.filter((pl.col("tuning") == "base") & (pl.col("eval_set") == "mnli")
                    & (pl.col("step") == 800)).row(0, named=True)
    key = [r[k] for k in ("model", "step", "tuning", "train_task", "seed", "eval_set", "format",
                          "shots")]
    expected = mean_ci(scores_for(0.4, 100), 1000, cell_seed(3, "perf", *key, "accuracy"))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(expected, abs=1e-12)
    assert r["ci_low"] < 0.4 < r["ci_high"] and r["ci_high"] - r["ci_low"] < 0.25
    assert "bootstrap: 1000 resample(s), seed 3" in err


def test_bootstrap_disabled_gives_point_estimates(inputs, capsys):
    out, err = full_run(inputs, capsys, "--bootstrap-resamples", "0")
    assert "(disabled: CIs equal the point estimates)" in err
    perf = pl.read_csv(out / "perf.csv")
    assert perf["ci_low"].to_list() == perf["value"].to_list() == perf["ci_high"].to_list()
    result, summary, _ = run_mrc(out / "perf.csv", out / "scores.parquet", out, capsys,
                                 "--bootstrap-resamples", "0")
    for df in (result, summary):
        assert df["mrc_ci_low_percent"].to_list() == df["mrc_percent"].to_list()
        assert df["mrc_ci_high_percent"].to_list() == df["mrc_percent"].to_list()
    diff = pl.read_csv(out / "ft_vs_base.csv")
    assert diff["diff_ci_low"].to_list() == diff["diff"].to_list()


def test_mrc_ci_columns(inputs, capsys):
    out, _ = full_run(inputs, capsys)
    result, summary, _ = run_mrc(out / "perf.csv", out / "scores.parquet", out, capsys,
                                 "--bootstrap-resamples", "300", "--bootstrap-seed", "5")
    r = result.filter(pl.col("target_type") == "all").row(0, named=True)
    assert r["mrc_percent"] == pytest.approx(25.0)
    assert r["mrc_ci_low_percent"] < 25.0 < r["mrc_ci_high_percent"]
    # Exactly the study's joint bootstrap over the two cross-task sets (paws, xsum): items
    # paired by id in id order, every set's universe its ids, the seed axis [1].
    ids = sorted(f"q{i}" for i in range(100))
    order = sorted(range(100), key=lambda i: f"q{i}")
    units = [Unit(s, tuple(ids), np.array([scores_for(f, 100)])[:, order],
                  np.array([scores_for(b, 100)])[:, order], (1,), None)
             for s, f, b in (("paws", 0.25, 0.5), ("xsum", 0.5, 0.25))]
    joint = JointBootstrap({"mnli": ids, "paws": ids, "xsum": ids}, [1], 300, 5)
    _, low, high = joint.ci(units, "ratio")
    assert (r["mrc_ci_low_percent"], r["mrc_ci_high_percent"]) == pytest.approx(
        (low * 100, high * 100), abs=1e-9)
    for s in summary.iter_rows(named=True):
        assert s["mrc_ci_low_percent"] < s["mrc_percent"] < s["mrc_ci_high_percent"]
        assert s["significant"] == (s["mrc_ci_low_percent"] > 0 or s["mrc_ci_high_percent"] < 0)


def test_ft_vs_base_rows(inputs, capsys):
    out, err = full_run(inputs, capsys)
    diff = pl.read_csv(out / "ft_vs_base.csv")
    assert diff.columns == DIFF_COLUMNS
    assert diff.select("eval_set", "role", "base_value", "ft_value", "n_paired",
                       "n_unpaired", "n_seeds").rows() == [
        ("mnli", "ID", 0.4, 0.8, 100, 0, 1), ("paws", "cross", 0.5, 0.25, 100, 0, 1),
        ("xsum", "cross", 0.25, 0.5, 100, 0, 1)]
    assert diff["diff"].to_list() == pytest.approx([0.4, -0.25, 0.25])
    assert (diff["diff_ci_low"] < diff["diff"]).all()
    assert (diff["diff"] < diff["diff_ci_high"]).all()
    assert diff["tokens"].to_list() == [3276800] * 3
    assert "diff: 3 row(s)" in err and "unmatched" not in err


def test_unmatched_ids_are_counted(tmp_path, capsys):
    base = write_metrics(tmp_path / "base" / "metrics.csv", [row("base", "", "paws", 0.5, "ID", 4)],
                         ids=[f"q{i}" for i in range(10, 110)])
    sft = write_metrics(tmp_path / "sft" / "metrics.csv",
                        [row("sft", "mnli", "paws", 0.25, "cross", 0)])
    code, err = run(["--metrics", base, sft, "--perf", tmp_path / "perf.csv", "--scores",
                     tmp_path / "scores.parquet", "--diff", tmp_path / "d.csv", "--log-summary",
                     "--ft-shots", 0], capsys)
    assert code == 0, err
    assert "1 FT/base pair(s) with unmatched item ids: 10 id(s) only in the fine-tuned" in err
    assert "10 only in the base" in err
    assert "unpaired: tiny step 800 sft/mnli on paws (default): 10 FT-only, 10 base-only" in err
    d = pl.read_csv(tmp_path / "d.csv").row(0, named=True)
    assert (d["n_paired"], d["n_unpaired"]) == (90, 20)
    # paired items q10..q99: FT scores 1 on q10..q24 (15), base on q10..q59 (50)
    assert (d["ft_value"], d["base_value"]) == pytest.approx((15 / 90, 50 / 90))
    # The MRC reads the perf values (0.25 vs 0.5: -50 %); without resampling its CI is that
    # point, not the paired items' ratio (-70 %).
    result, _, _ = run_mrc(tmp_path / "perf.csv", tmp_path / "scores.parquet", tmp_path, capsys,
                           "--bootstrap-resamples", "0")
    r = result.filter(pl.col("target_type") == "all").row(0, named=True)
    assert r["mrc_ci_low_percent"] == r["mrc_percent"] == r["mrc_ci_high_percent"] == -50.0


def test_predictions_mismatch_is_one_line_error(inputs, capsys):
    tmp, base, sft, manifest = inputs
    preds = sft.parent / "predictions.jsonl"
    lines = preds.read_text().splitlines()
    first = json.loads(lines[0])
    first["score"] = 1.0 - first["score"]
    preds.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    perf_csv = tmp / "perf.csv"
    code, err = run(["--metrics", *base, sft, "--perf", perf_csv], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {preds}: eval_set=mnli format=default shots=0 scores "
                               "average")
    assert "value=0.8" in lines[0]
    assert not perf_csv.exists()


def test_predictions_count_mismatch_and_missing_file(inputs, capsys):
    tmp, base, sft, manifest = inputs
    preds = sft.parent / "predictions.jsonl"
    preds.write_text("\n".join(preds.read_text().splitlines()[1:]) + "\n")
    code, err = run(["--metrics", *base, sft, "--perf", tmp / "perf.csv"], capsys)
    assert code == 2
    assert err.strip() == (f"error: {preds}: eval_set=mnli format=default shots=0 has 99 scored "
                           f"example(s), {sft} says n=100")
    preds.unlink()
    code, err = run(["--metrics", *base, sft, "--perf", tmp / "perf.csv"], capsys)
    assert code == 2
    assert err.startswith(f"error: {preds}: file not found") and len(err.strip().splitlines()) == 1


def test_mrc_options_moved_to_the_tables_cli(inputs, capsys):
    tmp, base, sft, _ = inputs
    code, err = run(["--metrics", *base, sft, "--perf", tmp / "perf.csv", "--mrc",
                     tmp / "mrc.csv"], capsys)
    assert code == 2 and "unrecognized arguments: --mrc" in err
    assert not (tmp / "perf.csv").exists()


def test_diff_shots_are_options(inputs, capsys):
    # Base checkpoints were evaluated at 4 shots only: asked for 0-shot bases, no row pairs.
    out, err = full_run(inputs, capsys, "--base-shots", "0")
    diff = pl.read_csv(out / "ft_vs_base.csv")
    assert diff.height == 3 and diff["base_value"].null_count() == 3
    assert (diff["base_shots"] == 0).all() and (diff["n_paired"] == 0).all()
    assert "diff: 3 row(s) (fine-tuned 0-shot vs base 0-shot)" in err


# --- fine-tuning seeds and degenerate-output shares -----------------------------------------


def test_seeds_are_rows_of_perf_and_averaged_in_ft_vs_base(tmp_path, capsys):
    """Two seeds of one fine-tuned model, each its own metrics file: two perf rows, one
    ft_vs_base row with their mean (n_seeds 2); the same seed twice is refused."""
    base = write_metrics(tmp_path / "base" / "metrics.csv", [row("base", "", "mnli", 0.4, "ID", 4)])
    seeds = [write_metrics(tmp_path / f"sft{s}" / "metrics.csv",
                           [row("sft", "mnli", "mnli", v, "ID", 4, seed=s)])
             for s, v in ((1, 0.6), (2, 0.8))]
    out = tmp_path / "out"
    code, err = run(["--metrics", base, *seeds, "--perf", out / "perf.csv", "--scores",
                     out / "scores.parquet", "--diff", out / "d.csv", "--bootstrap-resamples",
                     200], capsys)
    assert code == 0, err
    perf = pl.read_csv(out / "perf.csv")
    assert perf.select("tuning", "seed", "value").rows() == [
        ("base", 0, 0.4), ("sft", 1, 0.6), ("sft", 2, 0.8)]
    d = pl.read_csv(out / "d.csv").row(0, named=True)
    assert (d["n_seeds"], d["n_paired"]) == (2, 100)
    assert d["ft_value"] == pytest.approx(0.7) and d["diff"] == pytest.approx(0.3)
    assert d["diff_ci_low"] < 0.3 < d["diff_ci_high"]
    book = load_scores(out / "scores.parquet")
    assert sorted(book.seeds(("tiny", 800, "sft", "mnli", "mnli", "default", 4,
                              "accuracy"))) == [1, 2]

    again = write_metrics(tmp_path / "again" / "metrics.csv",
                          [row("sft", "mnli", "mnli", 0.6, "ID", 4, seed=1)])
    code, err = run(["--metrics", base, *seeds, again, "--perf", tmp_path / "p.csv"], capsys)
    assert code == 2 and err.startswith("error: duplicate score") and "seed=1" in err


def test_old_metrics_without_seed_read_as_seed_0(tmp_path, capsys):
    old = write_metrics(tmp_path / "old" / "metrics.csv", base_rows(), header=OLD_HEADER)
    code, err = run(["--metrics", old, "--perf", tmp_path / "perf.csv"], capsys)
    assert code == 0, err
    assert pl.read_csv(tmp_path / "perf.csv")["seed"].to_list() == [0, 0, 0]


def test_base_with_a_seed_or_negative_seed_refused(tmp_path, capsys):
    for seed, what in ((3, "base model with a fine-tuning seed other than 0"),
                       (-1, "negative seed")):
        rows = [row("base", "", "mnli", 0.4, "ID", 4, seed=seed)]
        bad = write_metrics(tmp_path / f"b{seed}" / "metrics.csv", rows)
        code, err = run(["--metrics", bad, "--perf", tmp_path / "perf.csv"], capsys)
        assert code == 2 and f"error: {bad}:2: {what}" in err, err


def test_top_and_empty_share_from_predictions(tmp_path, capsys):
    """top_share: share of the cell's most frequent prediction; empty_share: share of empty
    (whitespace-only) predictions; one value per metric row."""
    rows = [row("base", "", "mnli", 0.4, "ID", 4), row("base", "", "xsum", 0.25, "ID", 4),
            row("base", "", "paws", 0.5, "ID", 4)]
    preds = {"mnli": ["no"] * 95 + ["yes"] * 5,
             "xsum": [""] * 60 + ["\n"] * 31 + [f"text {i}" for i in range(9)],
             "paws": ["yes", " yes"] * 30 + [f"p{i}" for i in range(40)]}
    m = write_metrics(tmp_path / "m" / "metrics.csv", rows, predictions=preds)
    code, err = run(["--metrics", m, "--perf", tmp_path / "perf.csv", "--bootstrap-resamples",
                     0], capsys)
    assert code == 0, err
    perf = pl.read_csv(tmp_path / "perf.csv")
    got = {r["eval_set"]: (r["top_share"], r["empty_share"]) for r in perf.iter_rows(named=True)}
    assert got == {"mnli": (0.95, 0.0), "xsum": (0.91, 0.91), "paws": (0.6, 0.0)}
    assert perf.columns == PERF_COLUMNS
    assert PERF_COLUMNS.index("top_share") == PERF_COLUMNS.index("n_truncated") + 1


def test_multiple_choice_shares_per_metric_row(tmp_path):
    """A multiple-choice cell's rows name their metric; each metric row gets the shares of its
    own predictions (the choice each metric picked)."""
    from amuro.analysis.scores import read_predictions

    path = tmp_path / "predictions.jsonl"
    with path.open("w") as fh:
        for i in range(10):
            for metric, pred in (("acc", "A"), ("acc_norm", "B" if i < 7 else "C")):
                fh.write(json.dumps({"eval_set": "arc", "format": "default", "shots": 4,
                                     "metric": metric, "id": i, "prediction": pred,
                                     "score": 1.0}) + "\n")
    shares: dict = {}
    read_predictions(path, shares)
    assert shares[("arc", "default", 4, "acc")] == (1.0, 0.0)
    assert shares[("arc", "default", 4, "acc_norm")] == (0.7, 0.0)
