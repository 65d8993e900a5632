"""The report's computed findings: paper vs run verdicts, degenerate cells, seed spread and the
wording of its sentences; and figures + report end to end on a small hand-made study."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from test_analysis import Study, ones

from amuro import figures, report, tables
from amuro.aggregate import ft_vs_base
from amuro.analysis.cost import SCHEMA as COST_SCHEMA
from amuro.analysis.groups import DIFFERENCE
from amuro.analysis.scores import Pairing
from amuro.errors import run_cli

B, SEED = 200, 1


def test_verdict_rule():
    v = report.verdict
    assert v(0.1, 0.3, ">0") == "agrees" and v(-0.3, -0.1, ">0") == "disagrees"
    assert v(-0.1, 0.3, ">0") == "inconclusive" and v(None, 0.3, ">0").startswith("inconclusive")
    assert v(-0.3, -0.1, "<0") == "agrees" and v(0.1, 0.2, "<0") == "disagrees"
    assert v(-0.1, 0.1, "=0") == "agrees" and v(0.1, 0.2, "=0") == "disagrees"
    assert report.all_verdict(["agrees", "agrees"]) == "agrees"
    assert report.all_verdict(["agrees", "inconclusive"]) == "inconclusive"
    assert report.all_verdict(["agrees", "disagrees", "inconclusive"]) == "disagrees"


def bare(**tables_) -> report.Report:
    """A Report on in-memory tables (no files)."""
    r = report.Report.__new__(report.Report)
    r.t, r.fmt, r.base_shots, r.ft_shots, r.min_rise = tables_, "default", 4, 4, 0.1
    return r


def test_pretraining_sentence_separates_interval_failures_from_small_rises():
    g = pl.DataFrame({
        "eval_set": ["a", "truth", "flat"], "metric": ["accuracy"] * 3,
        "first_step": [100] * 3, "last_step": [400] * 3, "first_value": [0.3, 0.4, 0.5],
        "last_value": [0.6, 0.541, 0.52], "rise": [0.3, 0.141, 0.02],
        "rise_ci_low": [0.2, -0.01, -0.05], "rise_ci_high": [0.4, 0.3, 0.09],
        "learned_in": ["pre-training", "fine-tuning", "fine-tuning"]})
    text = " ".join(bare(groups=g).pretraining())
    assert "1 other set(s) rose by at least 0.1 but their interval does not lie above 0" in text
    assert "<b>truth</b> 0.141" in text
    assert "The other 1 stayed below the threshold of 0.1" in text and "<b>flat</b>" in text


def test_one_checkpoint_tables_with_empty_numeric_columns_read_as_numbers(tmp_path):
    """A series of one checkpoint has no rise: the column is empty in groups.csv and must read
    as numbers (it read as text and the report failed comparing it with min_rise)."""
    (tmp_path / "groups.csv").write_text(
        "eval_set,metric,first_step,last_step,first_value,last_value,rise,rise_ci_low,"
        "rise_ci_high,learned_in,ft_train_task\n"
        "paws,accuracy,0,0,0.5,0.5,,,,fine-tuning,\n")
    g = report._read(tmp_path, "groups")
    assert g.schema["rise"] == pl.Float64 and g.schema["rise_ci_low"] == pl.Float64
    assert g.schema["ft_train_task"] == pl.String and g.schema["learned_in"] == pl.String
    text = " ".join(bare(groups=g).pretraining())
    assert "Of 1 evaluation sets, <b>0</b> were learned during pre-training" in text
    assert "The other 1 stayed below the threshold of 0.1" in text


@pytest.mark.parametrize("changes, words", [
    ((-0.057, -0.2), "fine-tuning lowered performance at every checkpoint; the smallest loss "
                     "was at step 100 (-0.057)"),
    ((0.05, -0.2), "the largest gain was at step 100 (+0.050)")])
def test_gain_sentence_words_losses_by_sign(changes, words):
    gain = pl.DataFrame({"step": [100, 200], "learned_in": ["fine-tuning"] * 2,
                         "mean_change": list(changes), "ci_low": [-0.3, -0.3],
                         "ci_high": [0.1, 0.1], "sets": ["x", "x"], "pairing": ["p", "p"]})
    text = bare(ft_gain_by_group=gain).finetuning_gain()[0]
    assert words in text and "largest gain was at step 100 (-" not in text


# --- end to end -------------------------------------------------------------------------------


def designed_study() -> Study:
    """arc (science: no task trains on it) rises across base checkpoints; mnli stays flat and is
    learned by the nli fine-tune (seeds 1 and 2); summarization transfers to mnli; rte is nli's
    OOD set. Two formats."""
    s = Study()
    for i, step in enumerate((100, 200, 300)):
        for fmt in ("default", "io"):
            s.base("arc", (0.25, 0.5, 0.75)[i], step, fmt=fmt, shots=4)
            s.base("mnli", 0.25, step, fmt=fmt, shots=4)
            s.base("xsum", 0.5, step, fmt=fmt, shots=4)
            s.base("rte", 0.5, step, role="OOD", fmt=fmt, shots=4)
            for seed, v in ((1, 0.75), (2, 0.875)):
                s.ft("nli", "mnli", v if fmt == "default" else 0.5, step, role="ID", fmt=fmt,
                     seed=seed, shots=4)
                s.ft("nli", "arc", step=step, fmt=fmt, seed=seed, shots=4,
                     scores=ones((0.25, 0.5, 0.75)[i]))
                s.ft("nli", "rte", 0.75, step, role="OOD", fmt=fmt, seed=seed, shots=4)
                s.ft("nli", "xsum", 0.125, step, fmt=fmt, seed=seed, shots=4)
                s.ft("summarization", "xsum", 0.75, step, role="ID", fmt=fmt, seed=seed,
                     shots=4)
                s.ft("summarization", "mnli", 0.25, step, fmt=fmt, seed=seed, shots=4)
    return s


def run(entry, argv):
    try:
        run_cli(entry, [str(a) for a in argv])
    except SystemExit as exc:
        assert exc.code == 0, exc


def test_figures_and_report_end_to_end(tmp_path):
    s = designed_study()
    perf_csv, scores = s.write(tmp_path)
    perf = tables.read_perf(perf_csv).with_columns(
        top_share=pl.when(pl.col("eval_set") == "xsum").then(0.95).otherwise(0.4),
        empty_share=pl.lit(0.0))
    perf.write_csv(perf_csv)
    ft_vs_base(perf, Pairing(s.book(), 4, 4), B, SEED).write_csv(tmp_path / "ft_vs_base.csv")
    common = ["--perf", perf_csv, "--scores", scores, "--bootstrap-resamples", B]
    run(tables.main, ["mrc", *common, "--out", tmp_path / "mrc.csv",
                      "--summary", tmp_path / "mrc_summary.csv"])
    run(tables.main, ["ood", *common, "--out", tmp_path / "ood.csv"])
    run(tables.main, ["groups", *common, "--out", tmp_path / "groups.csv",
                      "--gain", tmp_path / "ft_gain_by_group.csv"])
    run(tables.main, ["formats", "--perf", perf_csv, "--scores", scores,
                      "--bootstrap-resamples", B, "--out", tmp_path / "format.csv",
                      "--summary", tmp_path / "format_summary.csv",
                      "--change", tmp_path / "format_change.csv"])
    pl.DataFrame([("fine-tuning", "nli", 2, 0.01, 0.01, 0.0, "cpu")], schema=COST_SCHEMA,
                 orient="row").write_csv(tmp_path / "cost.csv")

    gain = pl.read_csv(tmp_path / "ft_gain_by_group.csv")
    diff = gain.filter(pl.col("learned_in") == DIFFERENCE)
    # fine-tuning group: mnli 0.8125 - 0.25 and xsum 0.75 - 0.5; pre-training group: arc 0
    assert diff["mean_change"].to_list() == pytest.approx([0.40625] * 3)
    assert (diff["ci_low"] > 0).all() and (gain["n_seeds"] == 2).all()

    run(figures.main, ["--results", tmp_path, "--out", tmp_path / "figures"])
    index = json.loads((tmp_path / "figures" / "figures.json").read_text())
    assert len(index) == 12
    config = {"analysis": {"compare": {"format": "default", "base_shots": 4,
                                       "finetuned_shots": 4}},
              "finetune": {"seeds": [1, 2]}}
    run(report.main, ["--results", tmp_path, "--figures", tmp_path / "figures",
                      "--config-json", json.dumps(config), "--out", tmp_path / "report.html"])
    page = (tmp_path / "report.html").read_text()
    assert "the paper&#x27;s matched comparison (4-shot vs 4-shot)" in page
    assert "Paper vs this run" in page and "Verdict rule:" in page

    r = bare(**{n: pl.read_csv(tmp_path / f"{n}.csv") for n in
                ("groups", "ft_gain_by_group", "ood", "mrc_summary", "format_summary",
                 "format_change")})
    _, versus = r.paper_vs_run()
    got = dict(zip([f.split(":")[0] for f in versus["finding"]], versus["verdict"],
                   strict=False))
    assert got["(a) some sets are learned in pre-training"] == "agrees"
    assert got["ii) / Table 5 ordering / (b)"] == "agrees"
    assert got["iii) fine-tuning can make the model forget tasks and domain knowledge"] == (
        "agrees")  # classification -> generation: 0.125 vs 0.5
    assert got["§6.2 mean ratio of change, generation->classification (in %)"] == "agrees"
    iv = versus.filter(pl.col("finding").str.starts_with("iv)")).row(0, named=True)
    change = pl.read_csv(tmp_path / "format_change.csv").filter(pl.col("kind") == "fine-tuned")
    # the designed study's spreads are equal at both checkpoints: no change, in every draw
    assert change["change"].to_list() == [0.0] and change["n_sets"].to_list() == [2]
    assert (iv["this run"], iv["95% interval"], iv["verdict"]) == (
        "+0.000", "0.000 to 0.000", "inconclusive")
    # degenerate cells: every xsum cell (top_share 0.95), counted and listed
    n_xsum = perf.filter(pl.col("eval_set") == "xsum").height
    assert f"<b>{n_xsum}</b> of {perf.height} cells are degenerate" in page
    # seeds: 0.75 vs 0.875 on mnli (nli), equal on xsum (summarization), at every checkpoint
    assert "differed between its best and worst seed by <b>0.062</b>" in page
    assert "moved by <b>0.000</b> on average from one checkpoint to the next" in page
    assert np.isclose(pl.read_csv(tmp_path / "ft_vs_base.csv")["n_seeds"], 2).all()
