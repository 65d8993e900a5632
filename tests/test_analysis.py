"""Known answers for every analysis table (amuro.analysis.*) and the amuro.tables CLI.

Each test builds a small perf table and the per-example scores behind it (0/1 scores, or
continuous ones where a test needs them), so every point estimate below follows from the
definitions by hand. Bootstrap intervals use few resamples; they are checked for what they must
satisfy (bracketing, significance, degenerate cases), not for exact bounds.
"""

from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pytest

from amuro import tables
from amuro.analysis import cost, formats, groups, mrc, ood
from amuro.analysis.scores import ScoreBook, write_scores
from amuro.errors import AmuroError, run_cli
from amuro.tables import PERF_SCHEMA

N = 40  # items per cell; every value below is a multiple of 1/40
B = 200  # bootstrap resamples
SEED = 1
# eval_set -> (eval_task, eval_type, metric)
SETS = {
    "mnli": ("nli", "classification", "accuracy"),
    "mnli_mm": ("nli", "classification", "accuracy"),
    "rte": ("nli", "classification", "accuracy"),
    "paws": ("paraphrase", "classification", "accuracy"),
    "arc": ("science", "classification", "accuracy"),
    "boolq": ("reading", "classification", "accuracy"),
    "xsum": ("summarization", "generation", "rougeL"),
    "cnndm": ("summarization", "generation", "rougeL"),
}


def ones(value: float, n: int = N, shift: int = 0) -> np.ndarray:
    """n 0/1 scores with mean `value`: the ones on items shift, shift+1, ... (wrapping)."""
    k = round(value * n)
    assert abs(k / n - value) < 1e-12, "value * n must be a whole number"
    return np.roll(np.array([1.0] * k + [0.0] * (n - k)), shift)


class Study:
    """A perf table and its per-example scores, built together row by row."""

    def __init__(self):
        self.rows: list[dict] = []
        self.cells: dict[tuple, tuple[list[str], np.ndarray]] = {}

    def add(self, tuning, train_task, eval_set, role, value=None, step=100, shots=None,
            fmt="default", scores=None, model="tiny", seed=None):
        task, kind, metric = SETS[eval_set]
        shots = (4 if tuning == "base" else 0) if shots is None else shots
        seed = (0 if tuning == "base" else 1) if seed is None else seed
        scores = ones(value) if scores is None else np.asarray(scores, dtype=float)
        value = float(scores.mean()) if value is None else value
        assert abs(scores.mean() - value) < 1e-12
        self.rows.append({
            "model": model, "step": step, "tokens": step * 1000, "tuning": tuning,
            "train_task": train_task, "seed": seed, "eval_task": task, "eval_type": kind,
            "eval_set": eval_set, "role": role, "format": fmt, "shots": shots, "metric": metric,
            "value": value, "ci_low": value, "ci_high": value, "n": scores.size,
            "n_truncated": 0, "top_share": None, "empty_share": None,
            "scoring": "loglik" if kind == "classification" else "greedy",
        })
        key = (model, step, tuning, train_task, seed, eval_set, fmt, shots, metric)
        self.cells[key] = ([f"q{i:03d}" for i in range(scores.size)], scores)
        return self

    def base(self, eval_set, value=None, step=100, role="ID", **kw):
        return self.add("base", None, eval_set, role, value, step, **kw)

    def ft(self, train_task, eval_set, value=None, step=100, role="cross", **kw):
        return self.add("sft", train_task, eval_set, role, value, step, **kw)

    def perf(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=PERF_SCHEMA)

    def book(self) -> ScoreBook:
        return ScoreBook(dict(self.cells))

    def write(self, folder):
        """perf.csv and scores.parquet, as amuro.aggregate writes them."""
        perf, scores = folder / "perf.csv", folder / "scores.parquet"
        self.perf().write_csv(perf)
        write_scores(self.cells, scores)
        return perf, scores


def one(df: pl.DataFrame, **key) -> dict:
    rows = df.filter(*[pl.col(k).is_null() if v is None else pl.col(k) == v
                       for k, v in key.items()])
    assert rows.height == 1, rows
    return rows.row(0, named=True)


# --- mrc ------------------------------------------------------------------------------------


def mrc_study() -> Study:
    """Two checkpoints; nli and paraphrase (classification) and summarization (generation).

    Ratios (ft − base) / base of the cross-task sets, base 0.5 everywhere:
      nli           step 100: paws -0.25, xsum 0 (other items) | step 200: paws -0.5, xsum 0
      paraphrase    step 100: mnli -0.5
      summarization step 100: mnli +0.5, paws 0 (other items)  | step 200: mnli (no base row),
                                                                 paws +0.5
    """
    s = Study()
    for step in (100, 200):
        for eval_set in ("paws", "xsum") + (("mnli",) if step == 100 else ()):
            s.base(eval_set, 0.5, step)
        s.ft("nli", "mnli", 0.75, step, role="ID")
        s.ft("nli", "paws", {100: 0.375, 200: 0.25}[step], step)
        s.ft("nli", "xsum", step=step, scores=ones(0.5, shift=20))
        s.ft("summarization", "xsum", 0.75, step, role="ID")
        s.ft("summarization", "mnli", 0.75, step)
    s.ft("summarization", "paws", step=100, scores=ones(0.5, shift=20))
    s.ft("summarization", "paws", 0.75, step=200)
    s.ft("paraphrase", "paws", 0.75, 100, role="ID").ft("paraphrase", "mnli", 0.25, 100)
    return s


def mrc_tables(s: Study, slope_unit=100):
    perf, book = s.perf(), s.book()
    pairs = mrc.cross_task_pairs(perf, "default", 4, 0)
    result = mrc.add_ci(mrc.mean_ratio_of_change(perf, "default", 4, 0), pairs, book,
                        "default", 4, 0, B, SEED)
    summary = mrc.summary(result, pairs, book, "default", 4, 0, B, SEED, slope_unit)
    return pairs, result, summary


def test_mrc_one_row_per_direction_and_checkpoint():
    _, result, _ = mrc_tables(mrc_study())
    got = {(r["train_task"], r["step"], r["direction"]): r["mrc_percent"]
           for r in result.iter_rows(named=True)}
    assert got == {
        ("nli", 100, "classification->classification"): -25.0,
        ("nli", 100, "classification->generation"): 0.0,
        ("nli", 100, "classification->all"): -12.5,
        ("nli", 200, "classification->classification"): -50.0,
        ("nli", 200, "classification->generation"): 0.0,
        ("nli", 200, "classification->all"): -25.0,
        ("paraphrase", 100, "classification->classification"): -50.0,
        ("paraphrase", 100, "classification->all"): -50.0,
        ("summarization", 100, "generation->classification"): 25.0,
        ("summarization", 100, "generation->all"): 25.0,
        ("summarization", 200, "generation->classification"): 50.0,
        ("summarization", 200, "generation->all"): 50.0,
    }
    gen = one(result, train_task="summarization", step=200, target_type="all")
    assert (gen["n_sets"], gen["n_missing_base"], gen["n_zero_base"]) == (1, 1, 0)
    assert gen["tokens"] == 200_000 and gen["train_type"] == "generation"
    for r in result.iter_rows(named=True):
        assert r["mrc_ci_low_percent"] <= r["mrc_percent"] <= r["mrc_ci_high_percent"]
    # paws and xsum at step 200: the CI of a set whose items moved one way excludes 0...
    assert one(result, train_task="nli", step=200,
               target_type="classification")["mrc_ci_high_percent"] < 0
    # ...one whose items moved both ways (same mean, other items) straddles it.
    x = one(result, train_task="nli", step=200, target_type="generation")
    assert x["mrc_ci_low_percent"] < 0 < x["mrc_ci_high_percent"]


def test_mrc_summary_pools_every_ratio_and_fits_a_slope():
    _, _, summary = mrc_tables(mrc_study())
    assert summary.columns == mrc.SUMMARY_COLUMNS
    assert summary.select("direction", "train_task").rows() == [
        ("classification->classification", "all"),
        ("classification->classification", "nli"),
        ("classification->classification", "paraphrase"),
        ("classification->generation", "all"),
        ("classification->generation", "nli"),
        ("generation->classification", "all"),
        ("generation->classification", "summarization"),
    ]
    cc = one(summary, direction="classification->classification", train_task="all")
    # the mean of the three (checkpoint, task, set) ratios -0.25, -0.5, -0.5
    assert cc["mrc_percent"] == pytest.approx(-125 / 3)
    assert (cc["n_ratios"], cc["n_checkpoints"], cc["first_step"], cc["last_step"]) == (
        3, 2, 100, 200)
    assert cc["mean_change"] == pytest.approx(-0.625 / 3)
    # slope of the per-checkpoint MRC (mean over tasks: -37.5 at 100, -50 at 200) per 100 steps
    assert cc["slope_unit_steps"] == 100
    assert cc["slope_percent_per_unit"] == pytest.approx(-12.5, abs=1e-12)
    assert cc["slope_stderr_percent"] is None  # two points: no error estimate
    assert cc["significant"] is True and cc["mrc_ci_high_percent"] < 0
    nli = one(summary, direction="classification->classification", train_task="nli")
    assert nli["mrc_percent"] == -37.5
    assert nli["slope_percent_per_unit"] == pytest.approx(-25.0, abs=1e-12)
    para = one(summary, direction="classification->classification", train_task="paraphrase")
    assert (para["mrc_percent"], para["n_checkpoints"], para["slope_percent_per_unit"]) == (
        -50.0, 1, None)
    cg = one(summary, direction="classification->generation", train_task="all")
    assert cg["mrc_percent"] == 0.0 and cg["slope_percent_per_unit"] == 0.0
    assert cg["significant"] is False
    assert cg["mrc_ci_low_percent"] < 0 < cg["mrc_ci_high_percent"]
    gc = one(summary, direction="generation->classification", train_task="all")
    # pooled over 3 ratios (+0.5, 0, +0.5) = 33.3 %, not the mean of the two MRCs (37.5 %)
    assert gc["mrc_percent"] == pytest.approx(100 / 3)
    assert gc["n_ratios"] == 3
    assert gc["slope_percent_per_unit"] == pytest.approx(25.0, abs=1e-12)
    for r in summary.iter_rows(named=True):
        assert r["mrc_ci_low_percent"] <= r["mrc_percent"] <= r["mrc_ci_high_percent"]
        assert r["significant"] == (r["mrc_ci_low_percent"] > 0 or r["mrc_ci_high_percent"] < 0)


def test_mrc_slope_is_per_unit_steps():
    # MRC -25 % at step 100, -50 % at step 200: -25 per 100 steps, -2.5 per 10 steps.
    assert mrc.slope([100, 200], [-25.0, -50.0], 100) == (-25.0, None)
    assert mrc.slope([100, 200], [-25.0, -50.0], 10) == (-2.5, None)
    sl, se = mrc.slope([0, 100, 200], [0.0, -10.0, -20.0], 100)
    assert sl == pytest.approx(-10.0, abs=1e-12) and se == pytest.approx(0.0, abs=1e-12)
    assert mrc.slope([100, 100], [1.0, 2.0], 100) == (None, None)  # one step: no slope
    assert mrc.slope([100, 200], [1.0, float("nan")], 100) == (None, None)
    _, _, summary = mrc_tables(mrc_study(), slope_unit=1000)
    nli = one(summary, direction="classification->classification", train_task="nli")
    assert nli["slope_percent_per_unit"] == pytest.approx(-250.0, abs=1e-12)
    assert nli["slope_unit_steps"] == 1000


def test_mrc_zero_base_left_out_of_ratio_kept_in_change():
    s = Study()
    s.base("paws", 0.0).base("xsum", 0.5)
    s.ft("nli", "mnli", 0.75, role="ID").ft("nli", "paws", 0.25).ft("nli", "xsum", 0.25)
    pairs, result, summary = mrc_tables(s)
    assert mrc.skipped_sets(pairs).select("eval_set", "reason").rows() == [
        ("paws", "zero_base")]
    cls = one(result, target_type="classification")
    assert (cls["n_sets"], cls["n_zero_base"], cls["mrc_percent"]) == (0, 1, None)
    assert cls["mrc_ci_low_percent"] is None and cls["mean_change"] == 0.25
    al = one(result, target_type="all")
    assert (al["n_sets"], al["n_zero_base"], al["mrc_percent"]) == (1, 1, -50.0)
    assert al["mean_change"] == 0.0  # (+0.25 - 0.25) / 2
    cc = one(summary, direction="classification->classification", train_task="all")
    assert (cc["n_ratios"], cc["mrc_percent"], cc["significant"]) == (0, None, None)
    assert cc["mean_change"] == 0.25
    cg = one(summary, direction="classification->generation", train_task="all")
    assert cg["mrc_percent"] == -50.0 and cg["significant"] is True


# --- ood ------------------------------------------------------------------------------------


def ood_study() -> Study:
    s = Study()
    # rte is an OOD set of nli: base 0.5, 0.25, 0 and fine-tuned 0.25, 0.5, 0.5
    for step, b, f in ((100, 0.5, 0.25), (200, 0.25, 0.5), (300, 0.0, 0.5)):
        s.base("rte", b, step, role="OOD").ft("nli", "rte", f, step, role="OOD")
        s.ft("nli", "rte", 0.0, step, role="OOD", fmt="io")  # another format: ignored
        s.ft("nli", "mnli", 0.75, step, role="ID")  # in-domain: not in the OOD table
    s.ft("nli", "rte", 1.0, 400, role="OOD")  # no base at step 400
    # cnndm for summarization: every base score 0, so no ratio at all
    s.base("cnndm", 0.0, 100, role="OOD").ft("summarization", "cnndm", 0.25, 100, role="OOD")
    return s


def test_ood_ratio_is_the_mean_over_checkpoints():
    s = ood_study()
    out = ood.ood_change(s.perf(), s.book(), "default", 4, 0, B, SEED)
    assert out.columns == ood.OOD_COLUMNS
    assert out.select("train_task", "eval_set").rows() == [("nli", "rte"),
                                                          ("summarization", "cnndm")]
    r = one(out, eval_set="rte")
    # (0.25 - 0.5) / 0.5 = -0.5 and (0.5 - 0.25) / 0.25 = +1.0; step 300 (base 0) left out
    assert r["ratio_percent"] == 25.0
    assert (r["n_checkpoints"], r["n_zero_base"], r["n_missing"]) == (3, 1, 1)
    assert r["mean_base"] == 0.25
    assert r["mean_ft"] == pytest.approx(1.25 / 3)
    assert r["mean_change"] == pytest.approx(0.5 / 3)
    assert r["ci_low_percent"] < 25.0 < r["ci_high_percent"]
    assert r["significant"] == (r["ci_low_percent"] > 0 or r["ci_high_percent"] < 0)
    assert (r["eval_task"], r["eval_type"], r["metric"]) == ("nli", "classification",
                                                            "accuracy")
    z = one(out, eval_set="cnndm")
    assert (z["n_checkpoints"], z["n_zero_base"], z["ratio_percent"]) == (1, 1, None)
    assert z["ci_low_percent"] is None and z["significant"] is None
    assert z["mean_change"] == 0.25
    again = ood.ood_change(s.perf(), s.book(), "default", 4, 0, B, SEED)
    assert again.equals(out)
    flat = ood.ood_change(s.perf(), s.book(), "default", 4, 0, 0, SEED)
    r0 = one(flat, eval_set="rte")
    assert r0["ci_low_percent"] == r0["ratio_percent"] == r0["ci_high_percent"] == 25.0


# --- groups ---------------------------------------------------------------------------------


def groups_study() -> Study:
    s = Study()
    curves = {
        "mnli": (0.2, 0.9, 0.8),    # learned in pre-training (peaks in the middle)
        "paws": (0.5, 0.5, 0.5),    # flat
        "arc": (0.2, 0.25, 0.3),    # rises by exactly min_rise (0.1)
    }
    for i, step in enumerate((100, 200, 300)):
        for eval_set, curve in curves.items():
            # paws: the same mean on other items at each checkpoint
            shift = 7 * i if eval_set == "paws" else 0
            s.base(eval_set, step=step, scores=ones(curve[i], shift=shift))
        # xsum rises 0.05 on every item: significant, but below min_rise
        s.base("xsum", step=step, scores=np.full(N, 0.5 + 0.025 * i))
    # rte: a large rise (0.5) on two items, one of which does not move: CI low bound 0
    s.base("rte", step=100, scores=[0.0, 0.0]).base("rte", step=300, scores=[0.0, 1.0])
    s.base("boolq", 0.5, step=100)  # one checkpoint: no curve
    return s


def test_groups_classify_sets_by_their_base_curve():
    s = groups_study()
    out = groups.classify_sets(s.perf(), s.book(), "default", 4, 0.1, B, SEED)
    assert out.columns == groups.GROUP_COLUMNS
    got = {r["eval_set"]: r["learned_in"] for r in out.iter_rows(named=True)}
    assert got == {"mnli": "pre-training", "paws": "fine-tuning", "arc": "pre-training",
                   "xsum": "fine-tuning", "rte": "fine-tuning", "boolq": None}
    m = one(out, eval_set="mnli")
    assert (m["first_value"], m["last_value"], m["best_value"]) == (0.2, 0.8, 0.9)
    assert m["rise"] == pytest.approx(0.6) and m["rise_ci_low"] > 0
    assert (m["n_checkpoints"], m["first_step"], m["last_step"], m["min_rise"]) == (
        3, 100, 300, 0.1)
    p = one(out, eval_set="paws")
    assert p["rise"] == 0.0 and p["rise_ci_low"] < 0 < p["rise_ci_high"]
    x = one(out, eval_set="xsum")
    assert x["rise"] == pytest.approx(0.05) and x["rise_ci_low"] == pytest.approx(0.05)
    r = one(out, eval_set="rte")
    assert r["rise"] == 0.5 and r["rise_ci_low"] == 0.0
    b = one(out, eval_set="boolq")
    assert (b["n_checkpoints"], b["rise"], b["rise_ci_low"]) == (1, None, None)
    # above every rise: nothing is learned in pre-training
    strict = groups.classify_sets(s.perf(), s.book(), "default", 4, 0.7, B, SEED)
    assert one(strict, eval_set="mnli")["learned_in"] == "fine-tuning"
    assert one(strict, eval_set="arc")["learned_in"] == "fine-tuning"


def gain_study() -> Study:
    s = Study()
    # step 100: base 0.5 everywhere
    for eval_set in ("mnli", "paws", "xsum", "rte"):
        s.base(eval_set, 0.5, 100).base(eval_set, 0.5, 200)
    s.ft("nli", "mnli", 0.75, 100, role="ID").ft("nli", "paws", 0.25, 100)
    s.ft("nli", "xsum", 0.5, 100).ft("nli", "rte", 1.0, 100, role="OOD")
    s.ft("paraphrase", "paws", 0.75, 100, role="ID").ft("paraphrase", "mnli", 0.0, 100)
    s.ft("paraphrase", "xsum", 0.625, 100)
    s.ft("nli", "mnli", 1.0, 200, role="ID").ft("nli", "xsum", 0.75, 200)
    s.ft("paraphrase", "paws", 0.5, 200, role="ID").ft("paraphrase", "xsum", 0.75, 200)
    s.ft("nli", "mnli", 0.0, 200, role="ID", fmt="io")  # another format: ignored
    return s


def test_gain_by_group_pairs_in_domain_or_any_fine_tune():
    s = gain_study()
    sets = pl.DataFrame({"model": ["tiny"] * 4, "eval_set": ["mnli", "paws", "xsum", "rte"],
                         "metric": ["accuracy", "accuracy", "rougeL", "accuracy"],
                         "learned_in": ["pre-training", "fine-tuning", "fine-tuning", None]})
    pairs = groups.adapted_pairs(s.perf(), sets, "default", 0)
    assert pairs.filter(pl.col("step") == 100).select(
        "train_task", "eval_set", "pairing").sort("eval_set", "train_task").rows() == [
        ("nli", "mnli", groups.IN_DOMAIN),        # not paraphrase's cross-task mnli
        ("paraphrase", "paws", groups.IN_DOMAIN),  # not nli's cross-task paws
        ("nli", "xsum", groups.ANY_FT),            # no model trained on xsum: every one
        ("paraphrase", "xsum", groups.ANY_FT)]     # rte has no group: left out
    out = groups.gain_by_group(s.perf(), sets, s.book(), "default", 4, 0, B, SEED)
    assert out.columns == groups.GAIN_COLUMNS
    diff = groups.DIFFERENCE
    assert out.select("step", "learned_in", "n_sets", "n_pairs").rows() == [
        (100, "fine-tuning", 2, 3), (100, "pre-training", 1, 1), (100, diff, 3, 4),
        (200, "fine-tuning", 2, 3), (200, "pre-training", 1, 1), (200, diff, 3, 4)]
    got = {(r["step"], r["learned_in"]): r["mean_change"] for r in out.iter_rows(named=True)}
    # fine-tuning at 100: paws +0.25 (paraphrase), xsum 0 (nli) and +0.125 (paraphrase)
    assert got[(100, "fine-tuning")] == 0.125
    assert got[(100, "pre-training")] == 0.25
    assert got[(200, "fine-tuning")] == pytest.approx(0.5 / 3)  # 0, +0.25, +0.25
    assert got[(200, "pre-training")] == 0.5
    # Table 5's ordering per checkpoint: gain(fine-tuning group) − gain(pre-training group)
    assert got[(100, diff)] == pytest.approx(-0.125)
    assert got[(200, diff)] == pytest.approx(0.5 / 3 - 0.5)
    assert set(out["n_seeds"].to_list()) == {1}
    ft100 = one(out, step=100, learned_in="fine-tuning")
    assert ft100["sets"] == "paws xsum" and ft100["tokens"] == 100_000
    assert ft100["pairing"] == "any fine-tune: xsum; in-domain fine-tune: paws"
    for r in out.iter_rows(named=True):
        assert r["ci_low"] <= r["mean_change"] <= r["ci_high"]
        assert r["significant"] == (r["ci_low"] > 0 or r["ci_high"] < 0)
    # end to end: flat base curves put every set in the fine-tuning group; rte, the OOD set
    # of the fine-tuned nli task, stays out (as in the paper's Table 5):
    # +0.25 (mnli) +0.25 (paws) +0 +0.125 (xsum) at step 100
    sets = groups.classify_sets(s.perf(), s.book(), "default", 4, 0.1, B, SEED)
    assert sets["learned_in"].to_list() == ["fine-tuning"] * 4
    out = groups.gain_by_group(s.perf(), sets, s.book(), "default", 4, 0, B, SEED)
    assert out.select("step", "learned_in", "n_sets", "n_pairs").rows() == [
        (100, "fine-tuning", 3, 4), (200, "fine-tuning", 3, 4)]
    assert out["mean_change"][0] == pytest.approx(0.15625)


def test_gain_by_group_prefers_instruction_tuned_models():
    """A set no task fine-tunes is read after instruction tuning when the study has it (the
    paper's TULU models), not after the task fine-tunes that forget it; and instruction-tuned
    models are not task fine-tunes in the MRC."""
    s = Study()
    for step in (100, 200):
        s.base("arc", 0.5, step).base("mnli", 0.5, step)
        s.ft("nli", "mnli", 0.75, step, role="ID")
        s.ft("nli", "arc", 0.25, step)                   # cross-task: forgetting
        s.add("it", "instruct", "arc", "cross", 0.625, step)
    sets = pl.DataFrame({"model": ["tiny"] * 2, "eval_set": ["arc", "mnli"],
                         "metric": ["accuracy", "accuracy"],
                         "learned_in": ["pre-training", "fine-tuning"]})
    pairs = groups.adapted_pairs(s.perf(), sets, "default", 0)
    assert pairs.filter(pl.col("step") == 100).select("tuning", "eval_set", "pairing").sort(
        "eval_set").rows() == [("it", "arc", groups.INSTRUCTED), ("sft", "mnli", groups.IN_DOMAIN)]
    out = groups.gain_by_group(s.perf(), sets, s.book(), "default", 4, 0, B, SEED)
    assert one(out, step=100, learned_in="pre-training")["mean_change"] == 0.125
    assert one(out, step=200, learned_in="fine-tuning")["mean_change"] == 0.25
    result = mrc.mean_ratio_of_change(s.perf(), "default", 4, 0)
    assert set(result["tuning"].to_list()) == {"sft"}


# --- formats --------------------------------------------------------------------------------


def formats_study() -> Study:
    s = Study()
    for fmt, base_m, ft_m, ft_mm in (("default", 0.5, 0.75, 0.5),
                                     ("instruct", 0.25, 0.625, 0.75),
                                     ("io", 0.125, 0.75, 0.25)):
        s.base("mnli", base_m, fmt=fmt)
        s.base("mnli_mm", 0.5, fmt=fmt)
        s.base("mnli", 0.0, fmt=fmt, shots=0)  # base at 0 shots: not the comparison
        s.base("paws", 0.25, fmt=fmt)  # no model fine-tuned on it
        s.ft("nli", "mnli", ft_m, fmt=fmt, role="ID").ft("nli", "mnli_mm", ft_mm, fmt=fmt,
                                                         role="ID")
        s.ft("nli", "paws", 0.5, fmt=fmt)  # cross-task: not in the table
    return s


def test_format_spread_best_worst_and_summary():
    spread = formats.format_spread(formats_study().perf(), 4, 0)
    assert spread.columns == formats.FORMAT_COLUMNS
    assert spread.select("kind", "eval_set", "shots", "n_formats").rows() == [
        ("base", "mnli", 4, 3), ("base", "mnli_mm", 4, 3),
        ("fine-tuned", "mnli", 0, 3), ("fine-tuned", "mnli_mm", 0, 3)]
    b = one(spread, kind="base", eval_set="mnli")
    assert (b["best_format"], b["best_value"], b["worst_format"], b["worst_value"]) == (
        "default", 0.5, "io", 0.125)
    assert b["spread"] == 0.375 and b["train_task"] == "nli"
    assert b["sd"] == pytest.approx(np.std([0.5, 0.25, 0.125]))
    assert b["values"] == "default=0.5 instruct=0.25 io=0.125"
    f = one(spread, kind="fine-tuned", eval_set="mnli")
    # a tie for best (default and io at 0.75): the first format by name
    assert (f["best_format"], f["worst_format"], f["spread"]) == ("default", "instruct", 0.125)
    mm = one(spread, kind="fine-tuned", eval_set="mnli_mm")
    assert (mm["best_format"], mm["worst_format"], mm["spread"]) == ("instruct", "io", 0.5)
    assert one(spread, kind="base", eval_set="mnli_mm")["spread"] == 0.0

    summary = formats.format_summary(spread)
    assert summary.columns == formats.SUMMARY_COLUMNS
    assert summary.select("kind", "n_sets", "mean_spread", "max_spread").rows() == [
        ("base", 2, 0.1875, 0.375), ("fine-tuned", 2, 0.3125, 0.5)]



def test_format_spread_change_matches_a_brute_force_joint_bootstrap():
    """Finding iv's interval: every replicate redraws the items (and seeds) of the set once and
    recomputes each format's score from that draw before taking best − worst."""
    rng = np.random.default_rng(7)
    s = Study()
    scores = {}
    for step in (100, 200):
        for fmt in ("default", "instruct", "io"):
            s.base("mnli", None, step, fmt=fmt, scores=rng.integers(0, 2, N).astype(float))
            for seed in (1, 2):
                x = rng.integers(0, 2, N).astype(float)
                scores[(step, fmt, seed)] = x
                s.ft("nli", "mnli", None, step, role="ID", fmt=fmt, seed=seed, scores=x)
    perf, book = s.perf(), s.book()
    spread = formats.format_spread(perf, 4, 0)
    change = formats.spread_change(spread, book, B, SEED)
    assert change.columns == formats.CHANGE_COLUMNS
    ft = one(change, kind="fine-tuned")
    summary = formats.format_summary(spread)
    means = {r["step"]: r["mean_spread"] for r in
             summary.filter(pl.col("kind") == "fine-tuned").iter_rows(named=True)}
    assert ft["change"] == pytest.approx(means[200] - means[100])
    assert (ft["first_step"], ft["last_step"], ft["n_sets"]) == (100, 200, 1)
    joint = book.joint(B, SEED)
    items, seed_draws = joint.item_indices("mnli"), joint.seed_indices()
    axis = joint.seed_axis
    reps = []
    for r in range(B):
        spreads = {}
        for step in (100, 200):
            v = [np.mean([scores[(step, fmt, axis[k])][items[r]].mean() for k in seed_draws[r]])
                 for fmt in ("default", "instruct", "io")]
            spreads[step] = max(v) - min(v)
        reps.append(spreads[200] - spreads[100])
    low, high = np.quantile(reps, [0.025, 0.975])
    assert (ft["ci_low"], ft["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert one(change, kind="base")["n_sets"] == 1  # the base curve gets its change too

# --- cost -----------------------------------------------------------------------------------

BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
METRICS_HEADER = ("model,step,tuning,train_task,eval_task,eval_type,eval_set,role,format,"
                  "shots,metric,value,n,n_truncated,scoring")


def bench(path, *runs):
    """A Snakemake benchmark TSV with one line per (seconds, cpu seconds) run."""
    lines = [BENCH_HEADER] + [f"{s}\t0:00:00\t512.25\t1024.5\t400.1\t410.2\t1.5\t2.5\t98.7\t{c}"
                              for s, c in runs]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def eval_job(tmp_path, name, tuning, cells, wall=1000.0, cpu=500.0, device="cuda",
             train_task="nli"):
    """An evaluation job: cells are (eval_set, role, format, seconds)."""
    folder = tmp_path / name
    folder.mkdir()
    rows = [f"tiny,100,{tuning},{'' if tuning == 'base' else train_task},nli,classification,"
            f"{e},{r},{f},0,accuracy,0.5,10,0,loglik" for e, r, f, _ in cells]
    (folder / "metrics.csv").write_text("\n".join([METRICS_HEADER, *rows]) + "\n")
    (folder / "timing.json").write_text(json.dumps({"device": device, "cells": [
        {"eval_set": e, "format": f, "shots": 0, "seconds": sec} for e, _, f, sec in cells]}))
    return {"kind": "evaluate", "benchmark": bench(folder / "bench.tsv", (wall, cpu)),
            "timing": str(folder / "timing.json"), "metrics": str(folder / "metrics.csv"),
            **({} if tuning == "base" else {"train_task": train_task})}


def test_read_benchmark(tmp_path):
    assert cost.read_benchmark(bench(tmp_path / "a.tsv", (12.5, 6.25))) == (12.5, 6.25)
    # repeated runs: the last one
    assert cost.read_benchmark(bench(tmp_path / "b.tsv", (1, 2), (3.5, 4))) == (3.5, 4.0)
    assert cost.read_benchmark(bench(tmp_path / "c.tsv", (7, "NA"))) == (7.0, 0.0)
    with pytest.raises(AmuroError, match=r"c\.tsv: expected numeric columns"):
        cost.read_benchmark(bench(tmp_path / "c.tsv", ("NA", 1)))
    missing = tmp_path / "none.tsv"
    with pytest.raises(AmuroError) as err:
        cost.read_benchmark(missing)
    assert str(err.value) == f"{missing}: benchmark file not found"
    (tmp_path / "empty.tsv").write_text(BENCH_HEADER + "\n")
    with pytest.raises(AmuroError, match="has no rows"):
        cost.read_benchmark(tmp_path / "empty.tsv")


def test_cost_splits_evaluation_time_by_cell_seconds(tmp_path):
    ft = eval_job(tmp_path, "ft", "sft", [("mnli", "ID", "default", 30),
                                          ("rte", "OOD", "default", 10),
                                          ("mnli", "ID", "io", 60)])
    base = eval_job(tmp_path, "base", "base", [("mnli", "ID", "default", 5),
                                               ("rte", "OOD", "io", 5)], wall=360, cpu=720,
                    device="cpu")
    cross = eval_job(tmp_path, "cross", "sft", [("paws", "cross", "default", 1),
                                                ("xsum", "ID", "default", 3)], wall=36, cpu=0,
                     device="cpu", train_task="paraphrase")
    (tmp_path / "ft_timing.json").write_text(json.dumps({"device": "cuda"}))
    jobs = [
        {"kind": "pretrain", "benchmark": bench(tmp_path / "pt.tsv", (7200, 3600))},
        {"kind": "finetune", "benchmark": bench(tmp_path / "f1.tsv", (36, 72)),
         "train_task": "nli", "timing": str(tmp_path / "ft_timing.json")},
        {"kind": "finetune", "benchmark": bench(tmp_path / "f2.tsv", (18, 36)),
         "train_task": "nli"},
        ft, base, cross,
    ]
    out = cost.cost_table(jobs, "default")
    assert out.columns == cost.COST_COLUMNS
    rows = {(r["experiment"], r["train_task"]): r for r in out.iter_rows(named=True)}
    assert list(rows) == [
        (cost.PRETRAIN, ""), (cost.FINETUNE, "nli"), (cost.EVAL_BASE, ""),
        (cost.EVAL_ID, "nli"), (cost.EVAL_ID, "paraphrase"), (cost.EVAL_OOD, "nli"),
        (cost.EVAL_CROSS, "paraphrase"), (cost.EVAL_FORMAT, "nli")]
    pt = rows[(cost.PRETRAIN, "")]
    assert (pt["n_jobs"], pt["wall_hours"], pt["cpu_hours"], pt["gpu_hours"], pt["device"]) == (
        1, 2.0, 1.0, 0.0, "cpu")
    f = rows[(cost.FINETUNE, "nli")]
    assert (f["n_jobs"], f["device"]) == (2, "cpu+cuda")
    assert f["wall_hours"] == pytest.approx(54 / 3600)
    assert f["cpu_hours"] == pytest.approx(108 / 3600)
    assert f["gpu_hours"] == pytest.approx(36 / 3600)  # only the job that ran on cuda
    # ID 30 s, OOD 10 s (training format), 60 s in io: 0.3 / 0.1 / 0.6 of 1000 s
    for kind, share in ((cost.EVAL_ID, 0.3), (cost.EVAL_OOD, 0.1), (cost.EVAL_FORMAT, 0.6)):
        r = rows[(kind, "nli")]
        assert r["wall_hours"] == pytest.approx(1000 * share / 3600)
        assert r["gpu_hours"] == pytest.approx(1000 * share / 3600)
        assert r["cpu_hours"] == pytest.approx(500 * share / 3600)
        assert (r["n_jobs"], r["device"]) == (1, "cuda")
    b = rows[(cost.EVAL_BASE, "")]  # every cell of a base checkpoint, whatever its format
    assert (b["wall_hours"], b["cpu_hours"], b["gpu_hours"]) == (0.1, 0.2, 0.0)
    assert rows[(cost.EVAL_CROSS, "paraphrase")]["wall_hours"] == pytest.approx(9 / 3600)
    assert rows[(cost.EVAL_ID, "paraphrase")]["wall_hours"] == pytest.approx(27 / 3600)
    assert out["wall_hours"].sum() == pytest.approx((7200 + 54 + 1000 + 360 + 36) / 3600)


def test_eval_shares_zero_seconds_split_evenly():
    metrics = pl.DataFrame({"tuning": ["sft", "sft"], "eval_set": ["mnli", "rte"],
                            "role": ["ID", "OOD"]})
    timing = {"cells": [{"eval_set": "mnli", "format": "default", "seconds": 0},
                        {"eval_set": "rte", "format": "default", "seconds": 0}]}
    assert cost.eval_shares(timing, metrics, "default", "t.json") == {
        cost.EVAL_ID: 0.5, cost.EVAL_OOD: 0.5}


def test_cost_reads_the_steps_own_cpu_time_when_the_benchmark_saw_less(tmp_path):
    """Under the zygote the job's process only forwards the work: its benchmark shows almost
    no CPU time, and the step's own count (timing `cpu_s`, or settings.json's timing) wins."""
    (tmp_path / "settings.json").write_text(json.dumps({"timing": {"cpu_s": 90.0}}))
    (tmp_path / "pt_timing.json").write_text(json.dumps({"cpu_s": 1.0}))
    jobs = [
        {"kind": "finetune", "benchmark": bench(tmp_path / "f.tsv", (36, 0.5)),
         "train_task": "nli", "timing": str(tmp_path / "settings.json")},
        {"kind": "pretrain", "benchmark": bench(tmp_path / "pt.tsv", (7200, 3600)),
         "timing": str(tmp_path / "pt_timing.json")},
    ]
    rows = {r["experiment"]: r for r in cost.cost_table(jobs, "default").iter_rows(named=True)}
    assert rows[cost.FINETUNE]["cpu_hours"] == pytest.approx(90.0 / 3600)
    assert rows[cost.PRETRAIN]["cpu_hours"] == pytest.approx(1.0)  # the larger one


def test_cost_errors_are_one_line_and_name_the_file(tmp_path):
    missing = tmp_path / "nowhere.tsv"
    with pytest.raises(AmuroError) as err:
        cost.cost_table([{"kind": "pretrain", "benchmark": str(missing)}], "default")
    assert str(err.value) == f"{missing}: benchmark file not found"

    job = eval_job(tmp_path, "ev", "sft", [("mnli", "ID", "default", 1)])
    timing = tmp_path / "ev" / "timing.json"
    timing.write_text(json.dumps({"device": "cpu", "phases": {"load": 1}}))
    with pytest.raises(AmuroError) as err:
        cost.cost_table([job], "default")
    assert str(err.value) == (f"{timing}: field cells: expected a list of per-cell timings")
    timing.write_text(json.dumps({"cells": [{"eval_set": "mnli"}]}))
    with pytest.raises(AmuroError, match="each needs eval_set, format, seconds"):
        cost.cost_table([job], "default")
    timing.write_text("{not json")
    with pytest.raises(AmuroError, match=re.escape(f"{timing}: not valid JSON")):
        cost.cost_table([job], "default")
    timing.write_text(json.dumps({"cells": [{"eval_set": "mnli", "format": "default",
                                             "seconds": 1}]}))
    assert cost.cost_table([job], "default").height == 1
    with pytest.raises(AmuroError, match="needs timing"):
        cost.cost_table([{**job, "timing": None}], "default")
    with pytest.raises(AmuroError, match="nope.csv: file not found"):
        cost.cost_table([{**job, "metrics": str(tmp_path / "nope.csv")}], "default")
    with pytest.raises(AmuroError, match="kind must be pretrain, finetune, instruction_tune"):
        cost.cost_table([{**job, "kind": "train"}], "default")


# --- the tables CLI -------------------------------------------------------------------------


def run(argv, capsys):
    """python -m amuro.tables ARGV; returns (exit code, stderr)."""
    try:
        run_cli(tables.main, [str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def cli_study() -> Study:
    """Two checkpoints, two formats, two fine-tuned tasks: every table has rows."""
    s = Study()
    for i, step in enumerate((100, 200)):
        for fmt in ("default", "io"):
            s.base("mnli", (0.25, 0.75)[i], step, fmt=fmt).base("xsum", 0.5, step, fmt=fmt)
            s.base("rte", 0.5, step, role="OOD", fmt=fmt)
            s.ft("nli", "mnli", 0.875 if fmt == "default" else 0.5, step, role="ID", fmt=fmt)
            s.ft("nli", "rte", (0.25, 0.75)[i], step, role="OOD", fmt=fmt)
            s.ft("nli", "xsum", 0.25, step, fmt=fmt)
            s.ft("summarization", "xsum", 0.75, step, role="ID", fmt=fmt)
            s.ft("summarization", "mnli", (0.375, 0.75)[i], step, fmt=fmt)
    return s


def test_tables_cli_writes_every_table(tmp_path, capsys):
    perf, scores = cli_study().write(tmp_path)
    common = ["--perf", perf, "--scores", scores, "--bootstrap-resamples", B, "--ft-shots", 0]

    code, err = run(["mrc", *common, "--out", tmp_path / "mrc.csv", "--summary",
                     tmp_path / "mrc_summary.csv", "--slope-unit", 100], capsys)
    assert code == 0, err
    result = pl.read_csv(tmp_path / "mrc.csv")
    assert result.columns == mrc.MRC_COLUMNS and result.height == 8
    r = one(result, step=100, direction="generation->classification")
    assert r["mrc_percent"] == 50.0  # (0.375 - 0.25) / 0.25
    summary = pl.read_csv(tmp_path / "mrc_summary.csv")
    gc = one(summary, direction="generation->classification", train_task="all")
    assert gc["mrc_percent"] == 25.0  # +50 % then 0 %
    assert gc["slope_percent_per_unit"] == pytest.approx(-50.0, abs=1e-12)
    assert "mean ratio of change per checkpoint: 8 row(s)" in err and "skipped" not in err

    code, err = run(["ood", *common, "--out", tmp_path / "ood.csv"], capsys)
    assert code == 0, err
    r = one(pl.read_csv(tmp_path / "ood.csv"), eval_set="rte")
    assert r["ratio_percent"] == 0.0 and r["n_checkpoints"] == 2  # -50 % then +50 %
    assert "out-of-domain change per training task: 1 row(s)" in err

    code, err = run(["groups", *common, "--out", tmp_path / "groups.csv", "--gain",
                     tmp_path / "gain.csv", "--min-rise", 0.25], capsys)
    assert code == 0, err
    sets = pl.read_csv(tmp_path / "groups.csv")
    assert dict(sets.select("eval_set", "learned_in").rows()) == {
        "mnli": "pre-training", "rte": "fine-tuning", "xsum": "fine-tuning"}
    gain = pl.read_csv(tmp_path / "gain.csv")
    g = one(gain, step=200, learned_in="pre-training")
    assert g["mean_change"] == 0.125 and g["sets"] == "mnli"  # 0.875 - 0.75, in-domain only
    # xsum: the summarization model (in-domain); rte is nli's OOD set: left to the OOD table
    f = one(gain, step=100, learned_in="fine-tuning")
    assert f["mean_change"] == 0.25 and f["n_pairs"] == 1 and f["sets"] == "xsum"
    assert "learned in pre-training vs fine-tuning: 3 row(s)" in err

    code, err = run(["formats", "--perf", perf, "--ft-shots", 0, "--out", tmp_path / "format.csv",
                     "--summary", tmp_path / "format_summary.csv"], capsys)
    assert code == 0, err
    spread = pl.read_csv(tmp_path / "format.csv")
    assert one(spread, step=100, kind="fine-tuned", eval_set="mnli")["spread"] == 0.375
    assert one(spread, step=100, kind="base", eval_set="mnli")["spread"] == 0.0
    assert pl.read_csv(tmp_path / "format_summary.csv").height == 4
    code, err = run(["formats", "--perf", perf, "--ft-shots", 0, "--out", tmp_path / "f.csv",
                     "--summary", tmp_path / "fs.csv", "--change", tmp_path / "fc.csv"], capsys)
    assert code == 2 and err.strip().endswith("--change needs --scores (the item scores it "
                                              "resamples)")

    job = eval_job(tmp_path, "ev", "sft", [("mnli", "ID", "default", 3),
                                           ("xsum", "cross", "default", 1)])
    (tmp_path / "jobs.json").write_text(json.dumps([job]))
    code, err = run(["cost", "--jobs", tmp_path / "jobs.json", "--out",
                     tmp_path / "cost.csv"], capsys)
    assert code == 0, err
    c = pl.read_csv(tmp_path / "cost.csv")
    assert c.select("experiment", "wall_hours").rows() == [
        (cost.EVAL_ID, 750 / 3600), (cost.EVAL_CROSS, 250 / 3600)]
    # the job list inline, as the workflow passes it: the same table
    code, err = run(["cost", "--jobs", json.dumps([job]), "--out", tmp_path / "cost2.csv"],
                    capsys)
    assert code == 0, err
    assert (tmp_path / "cost2.csv").read_bytes() == (tmp_path / "cost.csv").read_bytes()
    assert not list(tmp_path.glob(".*"))  # atomic writes leave no temp files


def test_tables_cli_outputs_are_deterministic(tmp_path, capsys):
    perf, scores = cli_study().write(tmp_path)
    outs = []
    for name in ("a", "b"):
        code, err = run(["mrc", "--perf", perf, "--scores", scores, "--bootstrap-resamples", B,
                         "--ft-shots", 0, "--out", tmp_path / f"{name}.csv", "--summary",
                         tmp_path / f"{name}_s.csv"], capsys)
        assert code == 0, err
        outs.append(((tmp_path / f"{name}.csv").read_bytes(),
                     (tmp_path / f"{name}_s.csv").read_bytes()))
    assert outs[0] == outs[1]


def test_tables_cli_reports_skipped_mrc_pairs(tmp_path, capsys):
    s = Study()
    s.base("mnli", 0.0).ft("summarization", "mnli", 0.25).ft("summarization", "paws", 0.5)
    perf, scores = s.write(tmp_path)
    code, err = run(["mrc", "--perf", perf, "--scores", scores, "--out", tmp_path / "m.csv",
                     "--summary", tmp_path / "s.csv", "--bootstrap-resamples", B, "--ft-shots",
                     0], capsys)
    assert code == 0, err
    assert "1 (model, set) pair(s) skipped: base score 0, left out of the ratio (mnli)" in err
    assert "1 (model, set) pair(s) skipped: no base row, left out (paws)" in err


@pytest.mark.parametrize("table", ["mrc", "ood", "groups", "formats"])
def test_tables_cli_missing_perf_is_one_line(tmp_path, capsys, table):
    _, scores = cli_study().write(tmp_path)
    missing = tmp_path / "nope.csv"
    argv = [table, "--perf", missing, "--out", tmp_path / "o.csv"]
    argv += {"mrc": ["--scores", scores, "--summary", tmp_path / "s.csv"],
             "ood": ["--scores", scores],
             "groups": ["--scores", scores, "--gain", tmp_path / "g.csv"],
             "formats": ["--summary", tmp_path / "s.csv"]}[table]
    code, err = run(argv, capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {missing}: file not found (written by python -m amuro.aggregate)"]
    assert not (tmp_path / "o.csv").exists()


def test_tables_cli_bad_inputs_are_one_line(tmp_path, capsys):
    s = cli_study()
    perf, scores = s.write(tmp_path)

    def mrc_run(perf_path, scores_path, *extra):
        return run(["mrc", "--perf", perf_path, "--scores", scores_path, "--out",
                    tmp_path / "m.csv", "--summary", tmp_path / "s.csv", *extra], capsys)

    missing = tmp_path / "none.parquet"
    code, err = mrc_run(perf, missing)
    assert (code, err.strip()) == (
        2, f"error: {missing}: file not found (written by python -m amuro.aggregate)")

    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not a parquet file")
    code, err = mrc_run(perf, broken)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {broken}: cannot read")

    short = tmp_path / "short.parquet"
    pl.read_parquet(scores).drop("score").write_parquet(short)
    code, err = mrc_run(perf, short)
    assert (code, err.strip()) == (2, f"error: {short}: missing column(s) score")

    no_value = tmp_path / "no_value.csv"
    s.perf().drop("value").write_csv(no_value)
    code, err = mrc_run(no_value, scores)
    assert (code, err.strip()) == (2, f"error: {no_value}: missing column(s) value")

    bad_step = tmp_path / "bad_step.csv"
    s.perf().with_columns(pl.col("step").cast(pl.String).replace("200", "last")).write_csv(
        bad_step)
    code, err = mrc_run(bad_step, scores)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {bad_step}: cannot read")

    twice = tmp_path / "twice.csv"
    pl.concat([s.perf(), s.perf().filter(pl.col("tuning") == "base")]).write_csv(twice)
    code, err = mrc_run(twice, scores)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {twice}: several base rows for")

    code, err = mrc_run(perf, scores, "--bootstrap-resamples", "-1")
    assert (code, err.strip()) == (2, "error: --bootstrap-resamples must be >= 0, got -1")
    code, err = mrc_run(perf, scores, "--slope-unit", "0")
    assert (code, err.strip()) == (2, "error: --slope-unit must be >= 1, got 0")
    assert not (tmp_path / "m.csv").exists()


def test_tables_cli_cost_errors_name_the_file(tmp_path, capsys):
    jobs = tmp_path / "jobs.json"
    out = tmp_path / "cost.csv"
    code, err = run(["cost", "--jobs", jobs, "--out", out], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {jobs}: cannot read the job list")

    jobs.write_text(json.dumps({"kind": "pretrain"}))
    code, err = run(["cost", "--jobs", jobs, "--out", out], capsys)
    assert err.strip() == f"error: {jobs}: expected a list of objects with kind and benchmark"
    code, err = run(["cost", "--jobs", '[{"kind": "pretrain"}]', "--out", out], capsys)
    assert (code, err.strip()) == (
        2, "error: --jobs: expected a list of objects with kind and benchmark")
    code, err = run(["cost", "--jobs", "[{", "--out", out], capsys)
    assert code == 2 and err.startswith("error: --jobs: cannot read the job list")

    missing = tmp_path / "pt.tsv"
    jobs.write_text(json.dumps([{"kind": "pretrain", "benchmark": str(missing)}]))
    code, err = run(["cost", "--jobs", jobs, "--out", out], capsys)
    assert (code, err.strip()) == (2, f"error: {missing}: benchmark file not found")

    job = eval_job(tmp_path, "ev", "sft", [("mnli", "ID", "default", 1)])
    timing = tmp_path / "ev" / "timing.json"
    timing.write_text(json.dumps({"device": "cpu"}))
    jobs.write_text(json.dumps([job]))
    code, err = run(["cost", "--jobs", jobs, "--out", out], capsys)
    assert (code, err.strip()) == (
        2, f"error: {timing}: field cells: expected a list of per-cell timings")
    assert not out.exists()


# --- fine-tuning seeds ----------------------------------------------------------------------


def test_collapse_seeds_means_and_spread():
    from amuro.analysis.scores import collapse_seeds

    s = Study().base("mnli", 0.5)
    s.ft("nli", "mnli", 0.5, role="ID", seed=1).ft("nli", "mnli", 0.75, role="ID", seed=2)
    out = collapse_seeds(s.perf())
    assert "seed" not in out.columns
    ft = one(out, tuning="sft")
    assert (ft["value"], ft["n_seeds"], ft["value_min"], ft["value_max"]) == (0.625, 2, 0.5,
                                                                               0.75)
    assert ft["ci_low"] is None and one(out, tuning="base")["ci_low"] == 0.5
    assert collapse_seeds(out).equals(out)  # idempotent
    twice = pl.concat([s.perf(), s.perf().filter(pl.col("seed") == 2)])
    with pytest.raises(ValueError, match="several fine-tuned rows"):
        collapse_seeds(twice)


def test_scorebook_pairs_seeds_on_ids_every_seed_scored():
    cells = {
        ("m", 1, "sft", "t", 1, "s", "f", 0, "acc"): (["a", "b", "c"], np.array([1.0, 0, 1])),
        ("m", 1, "sft", "t", 2, "s", "f", 0, "acc"): (["b", "c", "d"], np.array([1.0, 1, 0])),
        ("m", 1, "base", None, 0, "s", "f", 4, "acc"): (["c", "b", "a", "d"],
                                                        np.array([0.0, 1, 0, 1])),
    }
    book = ScoreBook(cells)
    assert book.universes() == {"s": ["a", "b", "c", "d"]}
    assert book.fine_tuning_seeds() == [1, 2]
    unit = book.paired(("m", 1, "sft", "t", "s", "f", 0, "acc"),
                       ("m", 1, "base", None, "s", "f", 4, "acc"))
    assert unit.ids == ("b", "c") and unit.a_seeds == (1, 2) and unit.b_seeds is None
    assert unit.a.tolist() == [[0.0, 1.0], [1.0, 1.0]] and unit.b.tolist() == [[1.0, 0.0]]
    assert book.unpaired == {(("m", 1, "sft", "t", "s", "f", 0, "acc"),
                              ("m", 1, "base", None, "s", "f", 4, "acc")): (2, 2)}
    assert book.joint(10, 1) is book.joint(10, 1)


def seeds_study() -> Study:
    """Two checkpoints; nli fine-tuned with seeds 1 and 2 (mnli ID, rte OOD, xsum cross)."""
    s = Study()
    for step, (m1, m2) in ((100, (0.5, 0.75)), (200, (0.75, 1.0))):
        s.base("mnli", 0.5, step).base("rte", 0.5, step, role="OOD").base("xsum", 0.5, step)
        for seed, mnli, rte in ((1, m1, 0.25), (2, m2, 0.5)):
            s.ft("nli", "mnli", mnli, step, role="ID", seed=seed)
            s.ft("nli", "rte", rte, step, role="OOD", seed=seed)
            s.ft("nli", "xsum", 0.25 * seed, step, seed=seed)
    return s


def test_every_analysis_averages_over_seeds():
    s = seeds_study()
    _, result, summary = mrc_tables(s)
    r = one(result, step=100, target_type="generation")
    assert r["mrc_percent"] == pytest.approx(-25.0) and r["n_seeds"] == 2  # (0.375-0.5)/0.5
    assert one(summary, train_task="all")["n_seeds"] == 2
    o = ood.ood_change(s.perf(), s.book(), "default", 4, 0, B, SEED).row(0, named=True)
    assert o["mean_ft"] == 0.375 and o["n_seeds"] == 2
    assert o["ci_low_percent"] < o["ratio_percent"] < o["ci_high_percent"]
    sets = groups.classify_sets(s.perf(), s.book(), "default", 4, 0.1, B, SEED, 0)
    m = one(sets, eval_set="mnli")
    # fine-tuned mnli: 0.625 at step 100, 0.875 at step 200 (seed means)
    assert (m["ft_train_task"], m["ft_first_value"], m["ft_last_value"]) == ("nli", 0.625,
                                                                             0.875)
    assert m["ft_rise"] == pytest.approx(0.25) and m["ft_n_seeds"] == 2
    assert m["ft_rise_ci_low"] <= 0.25 <= m["ft_rise_ci_high"]
    assert one(sets, eval_set="rte")["ft_rise"] is None  # OOD: not an in-domain curve
    spread = formats.format_spread(s.perf(), 4, 0)
    assert one(spread, step=100, kind="fine-tuned")["n_seeds"] == 2
