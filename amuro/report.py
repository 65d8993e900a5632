"""One HTML page with the study's findings: computed sentences, figures, tables, settings.

    python -m amuro.report --results results --figures results/figures \\
        --config-json '{...}' --out results/report.html

Every number in a sentence is read from the run's tables (results/*.csv); nothing is typed in.
Figures are embedded (PNG, base64) so the page can be mailed or moved on its own; the PDFs
stay beside it in the figures folder.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import polars as pl

from amuro.analysis import SECONDARY_METRICS
from amuro.analysis.groups import DIFFERENCE, FINETUNING, PRETRAINING
from amuro.errors import AmuroError, run_cli
from amuro.io import atomic_path, parse_json_object
from amuro.schema import DEGENERATE_SHARE
from amuro.tables import read_perf

PACKAGES = ["amuro", "torch", "transformers", "peft", "datasets", "evaluate", "rouge-score",
            "polars", "scipy", "seaborn", "matplotlib", "snakemake"]
PAPER = {"classification->generation": -61.4, "generation->classification": 0.3}
# The paper's claim per MRC direction (§6.2) and the side of 0 it lies on: "<0" / ">0", or
# "=0" for a change not significantly different from 0.
PAPER_MRC = {"classification->generation": ("−61.4% (< 0)", "<0"),
             "generation->classification": ("+0.3%, not significant (= 0)", "=0")}
# §6.3 / Fig. 7: fine-tuning on NLI helped its OOD sets, on paraphrase hurt them.
PAPER_OOD = {"nli": ">0", "paraphrase": "<0"}
VERDICT_RULE = (
    "Verdict rule: a finding <i>agrees</i> when this run's 95% interval lies entirely on the "
    "paper's side of 0, <i>disagrees</i> when it lies entirely on the other side, and is "
    "<i>inconclusive</i> otherwise or without an interval; for the paper's \"not significantly "
    "different from 0\" it agrees when the interval contains 0 and disagrees when it excludes "
    "it. A finding over several checkpoints or sets agrees only if every one agrees, and "
    "disagrees if any one disagrees. Finding iii (\"may forget\") agrees when any "
    "out-of-domain or cross-task interval lies below 0 and disagrees when all lie above 0; "
    "Fig. 7's mixed behaviour agrees when at least one OOD interval lies above 0 and one below.")


def verdict(lo, hi, side: str) -> str:
    """agrees / disagrees / inconclusive for an interval against the paper's side of 0
    (">0", "<0", or "=0": not different from 0); see VERDICT_RULE."""
    if lo is None or hi is None or lo != lo or hi != hi:
        return "inconclusive (no interval)"
    if side == ">0":
        return "agrees" if lo > 0 else "disagrees" if hi < 0 else "inconclusive"
    if side == "<0":
        return "agrees" if hi < 0 else "disagrees" if lo > 0 else "inconclusive"
    if side == "=0":
        return "agrees" if lo <= 0 <= hi else "disagrees"
    raise ValueError(f"unknown side {side!r}")


def all_verdict(verdicts: list[str]) -> str:
    """Several intervals of one finding: agrees if every one agrees, disagrees if any one
    disagrees, inconclusive otherwise."""
    if not verdicts:
        return "inconclusive (no interval)"
    if all(v == "agrees" for v in verdicts):
        return "agrees"
    if any(v == "disagrees" for v in verdicts):
        return "disagrees"
    return "inconclusive"
TABLES = ["mrc", "mrc_summary", "ood", "groups", "ft_gain_by_group", "format", "format_summary",
          "format_change", "cost", "perf", "ft_vs_base"]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1150px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.finding{background:#f6f8fa;border-left:4px solid #1f77b4;padding:.5em 1em;margin:.6em 0}
.sig{color:#b00020;font-weight:600} .ns{color:#555}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.2em .5em;text-align:right}
th{background:#f0f0f0} td:first-child,th:first-child{text-align:left}
figure{margin:1em 0} figcaption{font-size:.9em;color:#444}
img{max-width:100%;border:1px solid #eee}
details{margin:.5em 0} code{background:#f3f3f3;padding:0 .2em}
.muted{color:#666;font-size:.9em}
"""


def _read(results: Path, name: str) -> pl.DataFrame:
    path = results / f"{name}.csv"
    if not path.is_file():
        raise AmuroError(f"{path}: file not found (run the table steps first)")
    if name == "perf":
        return read_perf(path)
    df = pl.read_csv(path, infer_schema_length=10_000)
    # A column with no value at all (a rise over one checkpoint, an interval of nothing) reads
    # as text; the numeric ones are numbers with no value, not strings.
    empty = [c for c, t in df.schema.items()
             if t == pl.String and c not in TEXT_COLUMNS and df[c].null_count() == df.height]
    return df.with_columns(pl.col(c).cast(pl.Float64) for c in empty)


# Columns of the analysis tables that hold text (every other column is a number or a flag).
TEXT_COLUMNS = {"model", "tuning", "train_task", "eval_task", "eval_type", "eval_set", "role",
                "format", "metric", "learned_in", "direction", "target_type", "train_type",
                "sets", "pairing", "best_format", "worst_format", "values", "kind", "experiment",
                "device", "scoring", "ft_tuning", "ft_train_task", "status", "reason"}


def num(x, digits=3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def signed(x, digits=3) -> str:
    return "n/a" if x is None else f"{x:+.{digits}f}"


def pct(x, signed=True) -> str:
    return "n/a" if x is None else (f"{x:+.1f}%" if signed else f"{x:.1f}%")


def ci(lo, hi, fmt=num) -> str:
    return "no interval" if lo is None or hi is None else f"95% CI {fmt(lo)} to {fmt(hi)}"


def significance(lo, hi) -> str:
    if lo is None or hi is None:
        return ""
    if lo > 0 or hi < 0:
        return '<span class="sig">significantly different from 0</span>'
    return '<span class="ns">not significantly different from 0</span>'


def table_html(df: pl.DataFrame, max_rows: int = 200) -> str:
    """A plain HTML table; floats to 4 significant decimals."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    body = []
    for row in df.head(max_rows).iter_rows():
        cells = []
        for v in row:
            text = "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = (f'<p class="muted">first {max_rows} of {df.height} rows; the CSV has them all</p>'
            if df.height > max_rows else "")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


class Report:
    def __init__(self, results: Path, figures: Path, config: dict):
        self.results, self.figures, self.config = results, figures, config
        self.t = {name: _read(results, name) for name in TABLES}
        an = config.get("analysis", {})
        cmp = an.get("compare", {})
        self.fmt = cmp.get("format", "default")
        self.base_shots = cmp.get("base_shots", 4)
        self.ft_shots = cmp.get("finetuned_shots", 4)
        self.unit = an.get("slope_unit_steps", 100_000)
        self.min_rise = an.get("groups", {}).get("min_rise", 0.1)

    # --- findings, each a list of HTML sentences ------------------------------------------------
    def pretraining(self) -> list[str]:
        # one row per set: multiple-choice sets are grouped by their primary metric (acc)
        g = self.t["groups"].filter(~pl.col("metric").is_in(sorted(SECONDARY_METRICS)))
        learned = g.filter(pl.col("learned_in") == "pre-training")
        flat = g.filter(pl.col("learned_in") == "fine-tuning")
        out = []
        if g.is_empty():
            return ["No base checkpoints were evaluated."]
        first, last = g["first_step"].min(), g["last_step"].max()
        rule = (f"a set counts as learned in pre-training when its base score "
                f"({self.base_shots}-shot, {self.fmt} format) rises by at least {self.min_rise} "
                f"from the first checkpoint to the last, with a paired 95% bootstrap interval "
                f"above 0")
        verb = "was" if learned.height == 1 else "were"
        out.append(f"Of {g.height} evaluation sets, <b>{learned.height}</b> {verb} learned during "
                   f"pre-training between steps {first:,} and {last:,} ({rule}).")
        for r in learned.sort("rise", descending=True).iter_rows(named=True):
            out.append(f"<b>{r['eval_set']}</b> rose from {num(r['first_value'])} to "
                       f"{num(r['last_value'])} ({r['metric']}; rise {num(r['rise'])}, "
                       f"{ci(r['rise_ci_low'], r['rise_ci_high'])}).")
        # Sets not learned in pre-training: those whose rise reached min_rise but whose interval
        # does not exclude 0 are named apart from those that stayed below the threshold.
        tol = 1e-9
        reached = flat.filter(pl.col("rise") >= self.min_rise - tol)
        below = flat.filter(pl.col("rise").is_null() | (pl.col("rise") < self.min_rise - tol))
        if reached.height:
            names = ", ".join(
                f"{r_set(r)} {num(r['rise'])} ({ci(r['rise_ci_low'], r['rise_ci_high'])})"
                for r in reached.sort("rise", descending=True).iter_rows(named=True))
            out.append(f"{reached.height} other set(s) rose by at least {self.min_rise} but "
                       f"their interval does not lie above 0, so they count as not learned in "
                       f"pre-training: {names}.")
        if below.height:
            top = below.sort("rise", descending=True, nulls_last=True).row(0, named=True)
            out.append(f"The other {below.height} stayed below the threshold of "
                       f"{self.min_rise}; the largest rise among them was {r_set(top)} "
                       f"{num(top['rise'])} ({ci(top['rise_ci_low'], top['rise_ci_high'])}).")
        none = g.filter(pl.col("learned_in").is_null())
        if none.height:
            out.append(f"{none.height} set(s) could not be grouped (one checkpoint or no "
                       f"paired items): {', '.join(none['eval_set'].to_list())}.")
        return out

    def finetuning_gain(self) -> list[str]:
        gain = self.t["ft_gain_by_group"]
        out = []
        for grp, label in (("fine-tuning", "not learned in pre-training"),
                           ("pre-training", "learned in pre-training")):
            part = gain.filter(pl.col("learned_in") == grp).sort("step")
            if part.is_empty():
                out.append(f"No fine-tuned model was evaluated on a set {label}.")
                continue
            firstr, lastr = part.row(0, named=True), part.row(-1, named=True)
            best = part.sort("mean_change", descending=True, nulls_last=True).row(0, named=True)
            change = best["mean_change"]
            if change is None:
                extreme = "no checkpoint has a change"
            elif change > 0:
                extreme = f"the largest gain was at step {best['step']:,} ({signed(change)})"
            elif change == 0:
                extreme = (f"fine-tuning gained nothing at any checkpoint (best: step "
                           f"{best['step']:,}, {signed(change)})")
            else:
                extreme = (f"fine-tuning lowered performance at every checkpoint; the smallest "
                           f"loss was at step {best['step']:,} ({signed(change)})")
            out.append(
                f"On sets <b>{label}</b> ({firstr['sets']}), fine-tuning changed performance by "
                f"<b>{signed(firstr['mean_change'])}</b> at step {firstr['step']:,} "
                f"({ci(firstr['ci_low'], firstr['ci_high'])}) and "
                f"<b>{signed(lastr['mean_change'])}</b> at step {lastr['step']:,} "
                f"({ci(lastr['ci_low'], lastr['ci_high'])}); {extreme}. "
                f"Pairs: {html.escape(lastr['pairing'])}.")
        diff = gain.filter(pl.col("learned_in") == DIFFERENCE).sort("step")
        if diff.height:
            steps = "; ".join(f"step {r['step']:,}: {signed(r['mean_change'])} "
                              f"({ci(r['ci_low'], r['ci_high'])})"
                              for r in diff.iter_rows(named=True))
            above = diff.filter(pl.col("ci_low") > 0).height
            out.append(f"Gain on the sets not learned in pre-training minus gain on the sets "
                       f"learned in pre-training, per checkpoint (joint bootstrap): {steps}. "
                       f"The interval lies above 0 at <b>{above} of {diff.height}</b> "
                       f"checkpoints.")
        out.append("Paper (OLMo-1B, Table 5): +0.06 to +0.30 for the sets learned in "
                   "fine-tuning, −0.005 to +0.05 for those learned in pre-training.")
        return out

    def cross_task(self) -> list[str]:
        s = self.t["mrc_summary"].filter(pl.col("train_task") == "all")
        out = []
        for r in s.iter_rows(named=True):
            train, target = r["train_type"], r["target_type"]
            paper = PAPER.get(r["direction"])
            slope = ("" if r["slope_percent_per_unit"] is None else
                     f" Across checkpoints the per-checkpoint MRC moved by "
                     f"{r['slope_percent_per_unit']:+.1f} percentage points per "
                     f"{r['slope_unit_steps']:,} steps.")
            out.append(
                f"Fine-tuning on <b>{train}</b> tasks changed <b>{target}</b> performance by "
                f"<b>{pct(r['mrc_percent'])}</b> "
                f"({ci(r['mrc_ci_low_percent'], r['mrc_ci_high_percent'], pct)}) on average "
                f"across {r['n_checkpoints']} checkpoints ({r['n_ratios']} set × checkpoint × "
                f"task ratios; raw mean change {num(r['mean_change'])}), "
                f"{significance(r['mrc_ci_low_percent'], r['mrc_ci_high_percent'])}."
                + slope + (f" Paper: {paper:+.1f}%." if paper is not None else "")
                + self._sign_note(r["mrc_percent"], r["mean_change"]))
        if not out:
            out.append("No fine-tuned model was evaluated on another task's sets.")
        skipped = self.t["mrc"].filter(pl.col("target_type") == "all")
        zero = int(skipped["n_zero_base"].sum() or 0)
        if zero:
            out.append(f"{zero} (model, set) pair(s) had a base score of 0 and were left out of "
                       f"the ratios (counted in mrc.csv, kept in the raw mean change).")
        return out

    @staticmethod
    def _sign_note(ratio, change) -> str:
        if ratio is None or change is None or ratio * change >= 0:
            return ""
        return (" <i>The mean ratio and the raw mean change disagree in sign: sets whose base "
                "score is near 0 dominate the ratio.</i>")

    def ood(self) -> list[str]:
        out = []
        for r in self.t["ood"].iter_rows(named=True):
            if r["ratio_percent"] is None:
                out.append(f"Fine-tuning on <b>{r['train_task']}</b>: out-of-domain "
                           f"<b>{r['eval_set']}</b> has a base score of 0 at every checkpoint, "
                           f"so no ratio; raw mean change {num(r['mean_change'])}.")
                continue
            out.append(
                f"Fine-tuning on <b>{r['train_task']}</b> changed out-of-domain "
                f"<b>{r['eval_set']}</b> by <b>{pct(r['ratio_percent'])}</b> "
                f"({ci(r['ci_low_percent'], r['ci_high_percent'], pct)}; base "
                f"{num(r['mean_base'])} → fine-tuned {num(r['mean_ft'])} on average over "
                f"{r['n_checkpoints']} checkpoints), "
                f"{significance(r['ci_low_percent'], r['ci_high_percent'])}.")
        return out or ["No fine-tuned model was evaluated out of domain."]

    def formats(self) -> list[str]:
        s = self.t["format_summary"].sort("step")
        out = []
        for kind in ("fine-tuned", "base"):
            part = s.filter(pl.col("kind") == kind)
            if part.height < 1:
                continue
            a, b = part.row(0, named=True), part.row(-1, named=True)
            trend = ("shrank" if b["mean_spread"] < a["mean_spread"] else
                     "grew" if b["mean_spread"] > a["mean_spread"] else "did not change")
            change = self.t["format_change"].filter(pl.col("kind") == kind)
            interval = ("" if change.height != 1 else
                        f"; the change over the sets scored at both, "
                        f"{signed(change['change'][0])}, "
                        f"{ci(change['ci_low'][0], change['ci_high'][0])}, "
                        f"{significance(change['ci_low'][0], change['ci_high'][0])}")
            out.append(f"Spread between the best and the worst prompt format, {kind} models, "
                       f"mean over {a['n_sets']} in-domain sets: <b>{num(a['mean_spread'])}</b> "
                       f"at step {a['step']:,} and <b>{num(b['mean_spread'])}</b> at step "
                       f"{b['step']:,} (it {trend}{interval}).")
        f = self.t["format"].filter(pl.col("kind") == "fine-tuned")
        if f.height:
            worst = f.group_by("worst_format").len().sort("len", descending=True).row(0)
            out.append(f"The fine-tuned models' worst format was <b>{worst[0]}</b> in "
                       f"{worst[1]} of {f.height} (checkpoint, set) cells.")
        out.append("Paper: fine-tuned models became less sensitive to the format with more "
                   "pre-training.")
        return out

    def comparison(self) -> str:
        if self.ft_shots == self.base_shots == 4:
            return "the paper's matched comparison (4-shot vs 4-shot)"
        if self.ft_shots == self.base_shots:
            return f"a matched comparison ({self.ft_shots}-shot for both; the paper's is 4 vs 4)"
        return (f"the {self.ft_shots}-shot view of the fine-tuned models against "
                f"{self.base_shots}-shot bases (unmatched; the paper compares 4 vs 4)")

    # --- degenerate outputs, seeds, paper vs run --------------------------------------------------
    def degenerate(self) -> tuple[list[str], pl.DataFrame]:
        """Cells whose predictions are (almost) all one answer or empty."""
        p = self.t["perf"]
        cols = ["model", "step", "tuning", "train_task", "seed", "eval_set", "format", "shots",
                "metric", "value", "top_share", "empty_share"]
        bad = p.filter((pl.col("top_share") >= DEGENERATE_SHARE)
                       | (pl.col("empty_share") >= DEGENERATE_SHARE)).select(cols)
        known = p.filter(pl.col("top_share").is_not_null()).height
        if not known:
            return (["No cell's predictions were recorded, so degenerate outputs cannot be "
                     "checked."], bad)
        share = f"{DEGENERATE_SHARE:g}"
        if not bad.height:
            return ([f"No cell is degenerate: in every one of {known} cells, the most frequent "
                     f"prediction and the empty prediction each take less than {share} of the "
                     f"items."], bad)
        empty = bad.filter(pl.col("empty_share") >= DEGENERATE_SHARE).height
        return ([f"<b>{bad.height}</b> of {known} cells are degenerate: one prediction (or the "
                 f"empty one) takes at least {share} of their items ({empty} mostly empty). "
                 f"Their scores measure that one answer, not the model's ability; they are "
                 f"listed below."], bad)

    def _id_seed_rows(self) -> pl.DataFrame:
        p = self.t["perf"]
        return p.filter((pl.col("tuning") != "base") & (pl.col("role") == "ID")
                        & (pl.col("eval_task") == pl.col("train_task"))
                        & (pl.col("format") == self.fmt) & (pl.col("shots") == self.ft_shots)
                        & ~pl.col("metric").is_in(sorted(SECONDARY_METRICS)))

    def seed_spread(self) -> tuple[list[str], pl.DataFrame]:
        """Seed-to-seed spread of the in-domain fine-tuned scores per checkpoint, beside the
        change of the seed mean from one checkpoint to the next (the paper's "randomness")."""
        ft = self._id_seed_rows()
        keys = ["model", "tuning", "train_task", "eval_set", "metric"]
        cells = (ft.group_by([*keys, "step"])
                 .agg(n_seeds=pl.len(), mean=pl.col("value").mean(),
                      sd=pl.col("value").std(ddof=1),
                      range=pl.col("value").max() - pl.col("value").min())
                 .sort([*keys, "step"]))
        cells = cells.with_columns(
            step_change=(pl.col("mean") - pl.col("mean").shift(1)).abs().over(keys))
        per_step = (cells.group_by("step")
                    .agg(n_sets=pl.len(), n_seeds=pl.col("n_seeds").max(),
                         mean_seed_sd=pl.col("sd").mean(),
                         mean_seed_range=pl.col("range").mean(),
                         mean_step_change=pl.col("step_change").mean())
                    .sort("step"))
        multi = cells.filter(pl.col("n_seeds") > 1)
        if not multi.height:
            return (["Each fine-tuned model has one fine-tuning seed, so the seed-to-seed "
                     "spread is not measured here (the paper's limitation: one run per "
                     "checkpoint)."], per_step)
        rng = multi["range"].mean()
        sd = multi["sd"].mean()
        change = cells["step_change"].drop_nulls().mean()
        n_seeds = int(multi["n_seeds"].max())
        compare = ("larger than" if change is not None and rng > change else
                   "smaller than" if change is not None and rng < change else "equal to")
        change_text = ("" if change is None else
                       f" The seed mean moved by <b>{num(change)}</b> on average from one "
                       f"checkpoint to the next, so the seed-to-seed spread is {compare} the "
                       f"checkpoint-to-checkpoint change.")
        return ([f"Fine-tuning randomness: across {n_seeds} fine-tuning seeds, the in-domain "
                 f"score of one fine-tuned model ({self.ft_shots}-shot) differed between its "
                 f"best and worst seed by <b>{num(rng)}</b> on average (standard deviation "
                 f"across seeds {num(sd)}; mean over {multi.height} checkpoint × set cells)."
                 + change_text + " Every analysis averages over the seeds, and its intervals "
                 "resample them."], per_step)

    def paper_vs_run(self) -> tuple[list[str], pl.DataFrame]:
        """The paper's headline findings against this run, each with a verdict by RULE."""
        rows: list[dict] = []

        def add(finding, paper, value, lo, hi, verdict, source):
            rows.append({"finding": finding, "paper": paper, "this run": value,
                         "95% interval": "" if lo is None or hi is None else
                         f"{num(lo)} to {num(hi)}", "verdict": verdict, "table": source})

        t = self.t
        groups_ = t["groups"].filter(~pl.col("metric").is_in(sorted(SECONDARY_METRICS)))
        gain = t["ft_gain_by_group"]
        # (i) latent improvement: the fine-tuned in-domain curve rises first -> last checkpoint
        if "ft_rise" in groups_.columns:
            for r in groups_.filter(pl.col("ft_rise").is_not_null()).sort(
                    "eval_set").iter_rows(named=True):
                add(f"i) pre-training improves the model in a way fine-tuning reveals: the "
                    f"fine-tuned {r['eval_set']} score (trained on {r['ft_train_task']}) rises "
                    f"from the first to the last checkpoint (base rise {num(r['rise'])})",
                    "rises (> 0)", signed(r["ft_rise"]), r["ft_rise_ci_low"],
                    r["ft_rise_ci_high"],
                    verdict(r["ft_rise_ci_low"], r["ft_rise_ci_high"], ">0"), "groups")
        # (a) sets learned in pre-training rise across base checkpoints
        learned = groups_.filter(pl.col("learned_in") == PRETRAINING)
        if learned.height:
            low = learned.sort("rise_ci_low").row(0, named=True)
            add(f"(a) some sets are learned in pre-training: their base score rises across "
                f"checkpoints ({learned.height} set(s): "
                f"{', '.join(sorted(learned['eval_set'].to_list()))}; weakest shown)",
                "rises (> 0)", signed(low["rise"]), low["rise_ci_low"], low["rise_ci_high"],
                all_verdict([verdict(r["rise_ci_low"], r["rise_ci_high"], ">0")
                             for r in learned.iter_rows(named=True)]), "groups")
        elif groups_.filter(pl.col("rise").is_not_null()).height:
            top = groups_.sort("rise", descending=True, nulls_last=True).row(0, named=True)
            add(f"(a) some sets are learned in pre-training: none passed the rule; the "
                f"largest base rise ({top['eval_set']}) shown", "rises (> 0)",
                signed(top["rise"]), top["rise_ci_low"], top["rise_ci_high"],
                verdict(top["rise_ci_low"], top["rise_ci_high"], ">0"), "groups")
        # (ii) / Table 5 ordering / (b): per checkpoint, gain(FT group) - gain(PT group)
        diff = gain.filter(pl.col("learned_in") == DIFFERENCE).sort("step")
        if diff.height:
            worst = diff.sort("ci_low", nulls_last=False).row(0, named=True)
            add(f"ii) / Table 5 ordering / (b): fine-tuning gains more on sets not learned in "
                f"pre-training than on sets learned in pre-training, at every checkpoint "
                f"({diff.height} checkpoints; the weakest, step {worst['step']:,}, shown)",
                "+0.06 to +0.30 vs −0.005 to +0.05: difference > 0 at every checkpoint",
                signed(worst["mean_change"]), worst["ci_low"], worst["ci_high"],
                all_verdict([verdict(r["ci_low"], r["ci_high"], ">0")
                             for r in diff.iter_rows(named=True)]), "ft_gain_by_group")
        else:
            have = sorted(set(gain["learned_in"].to_list()) & {PRETRAINING, FINETUNING})
            add("ii) / Table 5 ordering / (b): fine-tuning gains more on sets not learned in "
                "pre-training than on sets learned in pre-training",
                "difference > 0 at every checkpoint", "n/a", None, None,
                f"inconclusive (only the group(s) {', '.join(have) or 'none'} exist)",
                "ft_gain_by_group")
        # (iii) forgetting: some OOD or cross-task change lies below 0
        forget = []
        for r in t["ood"].iter_rows(named=True):
            forget.append((f"OOD {r['train_task']} → {r['eval_set']}", r["ratio_percent"],
                           r["ci_low_percent"], r["ci_high_percent"]))
        summary = t["mrc_summary"].filter(pl.col("train_task") == "all")
        for r in summary.iter_rows(named=True):
            forget.append((f"MRC {r['direction']}", r["mrc_percent"],
                           r["mrc_ci_low_percent"], r["mrc_ci_high_percent"]))
        if forget:
            below = [f for f in forget if f[3] is not None and f[3] < 0]
            shown = min(forget, key=lambda f: float("inf") if f[1] is None else f[1])
            if below:
                v = "agrees"
            elif all(f[2] is not None and f[2] > 0 for f in forget):
                v = "disagrees"
            else:
                v = "inconclusive"
            add(f"iii) fine-tuning can make the model forget tasks and domain knowledge: some "
                f"out-of-domain or cross-task change is below 0 ({len(below)} of "
                f"{len(forget)} intervals lie below 0; the most negative, {shown[0]}, shown, "
                f"in %)", "some change < 0", pct(shown[1]), shown[2], shown[3], v,
                "ood, mrc_summary")
        # (iv) format sensitivity shrinks with pre-training
        for r in t["format_change"].filter(pl.col("kind") == "fine-tuned").iter_rows(named=True):
            add(f"iv) fine-tuned models' sensitivity to the prompt format shrinks with more "
                f"pre-training: mean spread across formats over {r['n_sets']} in-domain "
                f"set(s), step {r['last_step']:,} minus step {r['first_step']:,}", "< 0",
                signed(r["change"]), r["ci_low"], r["ci_high"],
                verdict(r["ci_low"], r["ci_high"], "<0"), "format_change")
        # §6.2 MRC per direction
        for r in summary.iter_rows(named=True):
            claim = PAPER_MRC.get(r["direction"])
            if claim is None:
                paper, v = "not reported", "— (no claim in the paper)"
            else:
                paper, side = claim
                v = verdict(r["mrc_ci_low_percent"], r["mrc_ci_high_percent"], side)
            add(f"§6.2 mean ratio of change, {r['direction']} (in %)", paper,
                pct(r["mrc_percent"]), r["mrc_ci_low_percent"], r["mrc_ci_high_percent"], v,
                "mrc_summary")
        # Fig. 7: fine-tuning both helps and hurts out-of-domain sets
        ood = t["ood"]
        if ood.height:
            ivs = [(r["ci_low_percent"], r["ci_high_percent"]) for r in ood.iter_rows(named=True)]
            up = sum(lo is not None and lo > 0 for lo, _ in ivs)
            down = sum(hi is not None and hi < 0 for _, hi in ivs)
            if up and down:
                v = "agrees"
            elif len(ivs) > 1 and (up == len(ivs) or down == len(ivs)):
                v = "disagrees"
            else:
                v = "inconclusive"
            add(f"Fig. 7: out of domain, fine-tuning helps some sets and hurts others "
                f"({up} of {len(ivs)} intervals above 0, {down} below 0)",
                "both signs (NLI helped, paraphrase hurt)", f"{up} up / {down} down", None,
                None, v, "ood")
            for r in ood.iter_rows(named=True):
                side = PAPER_OOD.get(r["train_task"])
                if side is None:
                    continue
                add(f"Fig. 7: fine-tuning on {r['train_task']} changes its OOD set "
                    f"{r['eval_set']} (in %)", {">0": "helped (> 0)", "<0": "hurt (< 0)"}[side],
                    pct(r["ratio_percent"]), r["ci_low_percent"], r["ci_high_percent"],
                    verdict(r["ci_low_percent"], r["ci_high_percent"], side), "ood")
        df = pl.DataFrame(rows, schema={c: pl.String for c in
                                        ("finding", "paper", "this run", "95% interval",
                                         "verdict", "table")})
        agree = sum(v.startswith("agrees") for v in df["verdict"].to_list())
        disagree = sum(v.startswith("disagrees") for v in df["verdict"].to_list())
        return ([f"Of {df.height} comparisons with the paper, <b>{agree}</b> agree, "
                 f"<b>{disagree}</b> disagree and the rest are inconclusive or have no claim. "
                 f"{VERDICT_RULE}"], df)

    def cost(self) -> list[str]:
        c = self.t["cost"]
        if c.is_empty():
            return ["No benchmark files."]
        tot = c.select(pl.col("wall_hours").sum(), pl.col("cpu_hours").sum(),
                       pl.col("gpu_hours").sum()).row(0)
        by = c.group_by("experiment").agg(pl.col("wall_hours").sum()).sort(
            "wall_hours", descending=True)
        parts = ", ".join(f"{e} {h * 60:.1f} min" for e, h in by.iter_rows())
        return [f"The run's jobs took <b>{tot[0] * 60:.1f} job-minutes</b> of wall time "
                f"({tot[1]:.3f} CPU-hours, {tot[2]:.3f} GPU-hours): {parts}."]

    # --- page -----------------------------------------------------------------------------------
    def figure_html(self) -> dict[str, str]:
        index = self.figures / "figures.json"
        if not index.is_file():
            raise AmuroError(f"{index}: file not found (run python -m amuro.figures first)")
        out = {}
        for fig in json.loads(index.read_text(encoding="utf-8")):
            png = self.figures / f"{fig['name']}.png"
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            pdf = f"{self.figures.name}/{fig['name']}.pdf"
            out[fig["name"]] = (
                f'<figure><img alt="{html.escape(fig["name"])}" src="data:image/png;base64,'
                f'{data}"><figcaption><b>{html.escape(fig["name"])}</b>: '
                f'{html.escape(fig["caption"])} <a href="{html.escape(pdf)}">PDF</a>'
                f"</figcaption></figure>")
        return out

    def seeds(self) -> dict:
        c = self.config
        found = {"world.seed": c.get("world", {}).get("seed"),
                 "pretrain.seed": c.get("pretrain", {}).get("seed"),
                 "finetune.seed": c.get("finetune", {}).get("seed"),
                 "finetune.seeds": c.get("finetune", {}).get("seeds"),
                 "evaluate.seed": c.get("evaluate", {}).get("seed"),
                 "analysis.bootstrap.seed": c.get("analysis", {}).get("bootstrap", {}).get(
                     "seed")}
        return {f"seed: {k}": v for k, v in found.items() if v is not None}

    def settings_html(self, run: dict) -> str:
        run = {**run, **self.seeds()}
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                       for k, v in run.items())
        manifests = []
        for m in sorted(self.config.get("models", {})):
            path = self.results / "checkpoints" / m / "manifest.json"
            if path.is_file():
                data = json.loads(path.read_text(encoding="utf-8"))
                for ck in data.get("checkpoints", []):
                    manifests.append((m, ck.get("step"), ck.get("tokens"),
                                      ck.get("revision", ck.get("path")),
                                      (ck.get("sha256") or "")[:16]))
        man = table_html(pl.DataFrame(manifests, schema=["model", "step", "tokens", "revision",
                                                         "sha256 (first 16)"], orient="row"))
        cfg = html.escape(json.dumps(self.config, indent=2, sort_keys=True))
        return (f"<table>{rows}</table><h3>Checkpoints</h3>{man}<details><summary>Full "
                f"configuration</summary><pre>{cfg}</pre></details>")

    def page(self, run: dict) -> str:
        figs = self.figure_html()

        def section(title, sentences, fig_names, tables):
            body = "".join(f'<p class="finding">{s}</p>' for s in sentences)
            body += "".join(figs.get(n, "") for n in fig_names)
            for name, df in tables:
                file, _, note = name.partition(" ")
                body += (f"<details><summary>Table <code>results/{file}.csv</code> "
                         f"{html.escape(note)}</summary>{table_html(df)}</details>")
            return f"<h2>{title}</h2>{body}"

        t = self.t
        table5 = (t["ft_gain_by_group"].select("step", "learned_in", "mean_change")
                  .pivot(on="learned_in", index="step", values="mean_change").sort("step"))
        cost2 = t["cost"].select("experiment", "train_task", "n_jobs", "wall_hours",
                                 "cpu_hours", "gpu_hours", "device")
        # Table 2's layout: experiment × training task, in job-minutes of wall time.
        table2 = (t["cost"].with_columns(pl.col("train_task").fill_null("").replace("", "—"),
                                         minutes=(pl.col("wall_hours") * 60).round(2))
                  .pivot(on="train_task", index="experiment", values="minutes",
                         maintain_order=True))
        versus, versus_table = self.paper_vs_run()
        degenerate, degenerate_table = self.degenerate()
        spread, spread_table = self.seed_spread()
        findings = [*versus, self.pretraining()[0], self.finetuning_gain()[0],
                    self.formats()[0], *[s for s in self.cross_task() if "Paper:" in s],
                    spread[0], degenerate[0], *self.cost()]
        table5_diff = (t["ft_gain_by_group"].filter(pl.col("learned_in") == DIFFERENCE)
                       .select("model", "step", "mean_change", "ci_low", "ci_high",
                               "significant", "n_pairs"))
        summary = ("<h2>Key findings</h2><ul>" + "".join(f"<li>{s}</li>" for s in findings)
                   + "</ul><p class='muted'>Each is computed from the tables below; the "
                   "sections give every finding with its figure.</p>")
        models = ", ".join(sorted(self.config.get("models", {})))
        parts = [
            f"<h1>amuro report</h1><p class='muted'>Model series: {html.escape(models)}. "
            f"Comparisons read every model in the <code>{html.escape(self.fmt)}</code> format, "
            f"base checkpoints {self.base_shots}-shot, fine-tuned models {self.ft_shots}-shot, "
            f"on the same items: {html.escape(self.comparison())}. Fine-tuned scores are "
            f"averaged over their fine-tuning seeds. Intervals are 95% percentile bootstraps "
            f"({self.config.get('analysis', {}).get('bootstrap', {}).get('resamples', '?')} "
            f"resamples) of one joint resampling: each replicate draws every eval set's items "
            f"once, for every checkpoint, task and tuning that scored it, and the fine-tuning "
            f"seeds once. Generated {html.escape(run['generated'])}.</p>",
            summary,
            "<h2>Paper vs this run</h2>"
            + "".join(f'<p class="finding">{x}</p>' for x in versus)
            + table_html(versus_table)
            + "<details><summary>Table <code>results/ft_gain_by_group.csv</code>: gain on sets "
            "not learned in pre-training minus gain on sets learned in pre-training, per "
            f"checkpoint</summary>{table_html(table5_diff)}</details>",
            section("1. What the base checkpoints learn in pre-training (§4, Fig. 2)",
                    self.pretraining(), ["fig02_base_fewshot"], [("groups", t["groups"])]),
            section("2. Does more pre-training improve fine-tuning? (§5, Fig. 3, 4, 8, 9, "
                    "Table 5)", self.finetuning_gain(),
                    ["fig04_gain_by_group", "fig03_ft_vs_base_examples", "fig09_ft_vs_base_id",
                     "fig08_untrained_sets"],
                    [("ft_gain_by_group as Table 5: mean Perf(FT) − Perf(BASE)", table5),
                     ("ft_gain_by_group", t["ft_gain_by_group"])]),
            section("3. Task format (§6.1, Fig. 5, 13)", self.formats(),
                    ["fig05_format_examples", "fig13_formats_all"],
                    [("format_summary", t["format_summary"]), ("format_change", t["format_change"]),
                     ("format", t["format"])]),
            section("4. Task transfer: mean ratio of change (§6.2, Fig. 11, 12)",
                    self.cross_task(),
                    ["fig11_cross_from_classification", "fig12_cross_from_generation"],
                    [("mrc_summary", t["mrc_summary"]), ("mrc", t["mrc"])]),
            section("5. Domain knowledge: out-of-domain sets (§6.3, Fig. 6, 7, 10)", self.ood(),
                    ["fig07_ood_ratio", "fig06_ood_examples", "fig10_ft_vs_base_ood"],
                    [("ood", t["ood"])]),
            section("6. Randomness: fine-tuning seeds", spread, [],
                    [("perf seed-to-seed spread of in-domain scores, per checkpoint",
                      spread_table)]),
            section("7. Degenerate outputs", degenerate, [],
                    [(f"perf cells whose top_share or empty_share is at least "
                      f"{DEGENERATE_SHARE:g}", degenerate_table)]),
            section("8. Compute (App. C, Table 2)", self.cost(), [],
                    [("cost in Table 2's layout: job-minutes of wall time", table2),
                     ("cost", cost2)]),
            f"<h2>Run settings</h2>{self.settings_html(run)}",
            "<h2>All scores</h2><details><summary><code>results/perf.csv</code></summary>"
            f"{table_html(t['perf'], 300)}</details>",
        ]
        return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>amuro "
                f"report</title><style>{CSS}</style></head><body>{''.join(parts)}</body></html>")


def r_set(row: dict) -> str:
    return f"<b>{row['eval_set']}</b>"


def run_info() -> dict:
    """Where and with what the report was made: commit, versions, machine."""
    info = {"generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
        info["amuro commit"] = sha + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        info["amuro commit"] = "unknown (not a git checkout)"
    info["python"] = platform.python_version()
    info["machine"] = f"{platform.system()} {platform.machine()}"
    for pkg in PACKAGES:
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = "not installed"
    return info


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m amuro.report", description=__doc__.split("\n")[0])
    p.add_argument("--results", default="results", help="folder holding the tables")
    p.add_argument("--figures", default="results/figures", help="folder of amuro.figures")
    p.add_argument("--config-json", required=True, help="the run's configuration, as JSON")
    p.add_argument("--out", default="results/report.html")
    args = p.parse_args(argv)
    config = parse_json_object("--config-json", args.config_json)
    report = Report(Path(args.results), Path(args.figures), config)
    page = report.page(run_info())
    with atomic_path(args.out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    print(f"report: {len(page) / 1e6:.1f} MB -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
