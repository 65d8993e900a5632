"""The paper's Figures 2–13 for any checkpoint series, from the tables of one run (PNG and PDF).

    python -m amuro.figures --results results --out results/figures \\
        --format default --base-shots 4 --ft-shots 4

Reads results/{perf,ft_vs_base,groups,ft_gain_by_group,ood,format}.csv. Every line is one
model series' metric against the pre-training step (tick labels add tokens when the manifest
gave them); bands and error bars are the 95% bootstrap intervals of those tables, except around
a fine-tuned curve with several fine-tuning seeds: there the line is the seed mean and the band
spans the seeds' lowest to highest score (the seed spread). Fine-tuned models are solid blue,
base checkpoints dashed orange (as in the paper). `figures.json` lists
every figure with its files and panel titles, so tests and the report need not parse images.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
import seaborn as sns  # noqa: E402

from amuro.analysis import INSTRUCTION_TUNING, SECONDARY_METRICS  # noqa: E402
from amuro.analysis.groups import DIFFERENCE  # noqa: E402
from amuro.analysis.scores import collapse_seeds  # noqa: E402
from amuro.errors import AmuroError, run_cli  # noqa: E402
from amuro.io import atomic_path  # noqa: E402
from amuro.tables import read_perf  # noqa: E402

FT_COLOR, BASE_COLOR = "#1f77b4", "#ff7f0e"
GROUP_COLORS = {"pre-training": "#F28C28", "fine-tuning": "#8A9A5B"}  # mandarin orange, sage
PANEL_W, PANEL_H = 3.2, 2.5
MAX_COLS = 4


def _read(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise AmuroError(f"{path}: file not found (run the table steps first)")
    return pl.read_csv(path, infer_schema_length=10_000)


def _tick(step: int, tokens) -> str:
    if tokens is None:
        return f"{step:,}"
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if tokens >= div:
            return f"{step:,}\n{tokens / div:.3g}{unit} tok"
    return f"{step:,}\n{tokens} tok"


def _step_axis(ax, df: pl.DataFrame) -> None:
    ticks = df.select("step", "tokens").unique().sort("step")
    ax.set_xticks(ticks["step"].to_list())
    ax.set_xticklabels([_tick(s, t) for s, t in ticks.iter_rows()], fontsize=7)
    ax.set_xlabel("pre-training step")


def _line(ax, df: pl.DataFrame, label: str, color, dashed=False, y="value", lo="ci_low",
          hi="ci_high") -> None:
    df = df.sort("step")
    if df.is_empty():
        return
    ax.plot(df["step"], df[y], label=label, color=color, linestyle="--" if dashed else "-",
            marker="o", markersize=3)
    if lo == "ci_low" and "value_min" in df.columns and (df["n_seeds"] > 1).any():
        # several fine-tuning seeds: the band is their spread (lowest to highest seed)
        ax.fill_between(df["step"], df["value_min"], df["value_max"], color=color, alpha=0.2,
                        linewidth=0, hatch="///")
    elif lo in df.columns and hi in df.columns:
        ax.fill_between(df["step"], df[lo], df[hi], color=color, alpha=0.15, linewidth=0)


def _grid(n: int, title: str):
    cols = min(MAX_COLS, max(1, n))
    rows = max(1, -(-n // cols))
    # At least 6 inches wide, so a one-panel figure still has room for its title.
    fig, axes = plt.subplots(rows, cols, figsize=(max(6.0, PANEL_W * cols),
                                                  PANEL_H * rows + 0.6), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    return fig, list(axes.flat[:n])


class Figures:
    """Builds each figure from the run's tables; `made` records what was written."""

    def __init__(self, results: Path, out: Path, fmt: str, base_shots: int, ft_shots: int):
        self.out, self.fmt, self.base_shots, self.ft_shots = out, fmt, base_shots, ft_shots
        self.perf = collapse_seeds(read_perf(results / "perf.csv"))  # seed means + spread
        self.diff = _read(results / "ft_vs_base.csv")
        self.groups = _read(results / "groups.csv")
        self.gain = _read(results / "ft_gain_by_group.csv")
        self.ood = _read(results / "ood.csv")
        self.formats = _read(results / "format.csv")
        self.made: list[dict] = []
        p = self.perf.filter(pl.col("format") == fmt)
        self.base_all = p.filter((pl.col("tuning") == "base") & (pl.col("shots") == base_shots))
        self.ft_all = p.filter((pl.col("tuning") != "base") & (pl.col("shots") == ft_shots))
        # One curve per set: a set's secondary metric (acc_norm) only in Fig. 8's panels.
        primary = ~pl.col("metric").is_in(sorted(SECONDARY_METRICS))
        self.base, self.ft = self.base_all.filter(primary), self.ft_all.filter(primary)

    # --- helpers ------------------------------------------------------------------------------
    def _save(self, fig, name: str, caption: str) -> None:
        fig.tight_layout()
        files = []
        for ext in ("png", "pdf"):
            path = self.out / f"{name}.{ext}"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=ext, dpi=130 if ext == "png" else None)
            files.append(path.name)
        panels = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
        self.made.append({"name": name, "files": files, "panels": panels, "caption": caption})
        plt.close(fig)

    def _ft_vs_base_panel(self, ax, model, tuning, train_task, eval_set) -> None:
        ft = self.ft.filter((pl.col("model") == model) & (pl.col("tuning") == tuning)
                            & (pl.col("train_task") == train_task)
                            & (pl.col("eval_set") == eval_set))
        base = self.base.filter((pl.col("model") == model) & (pl.col("eval_set") == eval_set))
        _line(ax, ft, f"fine-tuned ({self.ft_shots}-shot)", FT_COLOR)
        _line(ax, base, f"base ({self.base_shots}-shot)", BASE_COLOR, dashed=True)
        _step_axis(ax, pl.concat([ft.select("step", "tokens"), base.select("step", "tokens")]))
        metric = (ft if ft.height else base)["metric"]
        ax.set_ylabel(metric[0] if metric.len() else "")

    def _pairs_grid(self, pairs: pl.DataFrame, name: str, title: str, caption: str) -> None:
        """One panel per (model, tuning, train_task, eval_set) row: fine-tuned vs base."""
        if pairs.is_empty():
            return self._empty(name, title, caption)
        fig, axes = _grid(pairs.height, title)
        for ax, r in zip(axes, pairs.iter_rows(named=True), strict=True):
            self._ft_vs_base_panel(ax, r["model"], r["tuning"], r["train_task"], r["eval_set"])
            ax.set_title(f"{r['train_task']} → {r['eval_set']}", fontsize=9)
        axes[0].legend(fontsize=7)
        self._save(fig, name, caption)

    def _empty(self, name: str, title: str, caption: str) -> None:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no data for this figure in this run", ha="center", va="center")
        fig.suptitle(title, fontsize=11)
        self._save(fig, name, caption + " (no data in this run)")

    def _id_pairs(self) -> pl.DataFrame:
        return (self.ft.filter((pl.col("role") == "ID")
                               & (pl.col("eval_task") == pl.col("train_task")))
                .select("model", "tuning", "train_task", "eval_set").unique()
                .sort("model", "train_task", "eval_set"))

    def _mean_diff(self, role: str) -> pl.DataFrame:
        d = self.diff.filter((pl.col("format") == self.fmt) & (pl.col("role") == role))
        if role == "ID":
            d = d.filter(pl.col("eval_task") == pl.col("train_task"))
        return (d.group_by("model", "tuning", "train_task", "eval_set")
                .agg(pl.col("diff").mean()).drop_nulls("diff")
                .sort("diff", "model", "train_task", "eval_set"))

    # --- the figures --------------------------------------------------------------------------
    def fig02(self) -> None:
        groups = self.groups.select("model", "eval_set", "learned_in")
        base = self.base.join(groups, on=["model", "eval_set"], how="left").with_columns(
            pl.col("learned_in").fill_null("no group"))
        names = [g for g in ("pre-training", "fine-tuning", "no group")
                 if g in base["learned_in"].to_list()]
        fig, axes = _grid(len(names), f"Base checkpoints, {self.base_shots}-shot, "
                          f"{self.fmt} format (Fig. 2)")
        sets = sorted(base["eval_set"].unique().to_list())
        palette = dict(zip(sets, sns.color_palette("tab10", len(sets)), strict=True))
        for ax, g in zip(axes, names, strict=True):
            part = base.filter(pl.col("learned_in") == g)
            for (model, eval_set), curve in part.group_by("model", "eval_set",
                                                          maintain_order=True):
                label = eval_set if base["model"].n_unique() == 1 else f"{model}/{eval_set}"
                _line(ax, curve, label, palette[eval_set])
            _step_axis(ax, part)
            ax.set_ylabel("score (accuracy / ROUGE-L)")
            ax.set_title({"pre-training": "(a) learned in pre-training",
                          "fine-tuning": "(b) not learned in pre-training"}.get(g, g),
                         fontsize=9)
            ax.legend(fontsize=6, ncol=2)
        self._save(fig, "fig02_base_fewshot", "Few-shot performance of the base checkpoints; "
                   "sets split by the grouping rule (groups.csv).")

    def fig03(self) -> None:
        ranked = self._mean_diff("ID")
        if ranked.height < 1:
            return self._empty("fig03_ft_vs_base_examples", "Fig. 3", "")
        picks = [ranked.row(-1, named=True), ranked.row(0, named=True)]
        fig, axes = _grid(2, "Fine-tuned vs base, in-domain (Fig. 3)")
        for ax, r, tag in zip(axes, picks, ("(a) gained most", "(b) gained least"),
                              strict=True):
            self._ft_vs_base_panel(ax, r["model"], r["tuning"], r["train_task"], r["eval_set"])
            ax.set_title(f"{tag}: {r['eval_set']}", fontsize=9)
        axes[0].legend(fontsize=7)
        self._save(fig, "fig03_ft_vs_base_examples", "The in-domain set that gained most and "
                   "the one that gained least from fine-tuning (mean over checkpoints).")

    def fig04(self) -> None:
        if self.gain.is_empty():
            return self._empty("fig04_gain_by_group", "Fig. 4", "")
        fig, axes = _grid(1, "Gain from fine-tuning by group (Fig. 4, Table 5)")
        ax = axes[0]
        groups = self.gain.filter(pl.col("learned_in") != DIFFERENCE)
        for g, part in groups.group_by("learned_in", maintain_order=True):
            _line(ax, part, f"learned in {g[0]}", GROUP_COLORS.get(g[0], "grey"),
                  y="mean_change")
        ax.axhline(0, color="black", linewidth=0.6)
        _step_axis(ax, self.gain)
        ax.set_ylabel("Perf(FT) − Perf(BASE)")
        ax.set_title("mean change per checkpoint", fontsize=9)
        ax.legend(fontsize=7)
        self._save(fig, "fig04_gain_by_group", "Mean Perf(FT) − Perf(BASE) per checkpoint for "
                   "sets learned in pre-training vs sets only learned in fine-tuning.")

    def _format_panels(self, rows: pl.DataFrame, name: str, title: str, caption: str) -> None:
        perf = self.perf.filter(pl.col("eval_set").is_in(rows["eval_set"].unique().to_list()))
        fmts = perf["format"].unique().sort().to_list()
        palette = dict(zip(fmts, sns.color_palette("Set2", len(fmts)), strict=True))
        panels = []
        for r in rows.iter_rows(named=True):
            panels.append(("base", r, perf.filter(
                (pl.col("tuning") == "base") & (pl.col("shots") == self.base_shots)
                & (pl.col("model") == r["model"]) & (pl.col("eval_set") == r["eval_set"]))))
            panels.append(("fine-tuned", r, perf.filter(
                (pl.col("tuning") == r["tuning"]) & (pl.col("shots") == self.ft_shots)
                & (pl.col("model") == r["model"]) & (pl.col("train_task") == r["train_task"])
                & (pl.col("eval_set") == r["eval_set"]))))
        fig, axes = _grid(len(panels), title)
        for ax, (kind, r, part) in zip(axes, panels, strict=True):
            for f in fmts:
                _line(ax, part.filter(pl.col("format") == f), f, palette[f],
                      dashed=kind == "base")
            _step_axis(ax, part)
            ax.set_title(f"{r['eval_set']}: {kind}", fontsize=9)
            ax.set_ylabel(part["metric"][0] if part.height else "")
        axes[0].legend(fontsize=7, title="format", title_fontsize=7)
        self._save(fig, name, caption)

    def fig05(self) -> None:
        ft = self.formats.filter(pl.col("kind") == "fine-tuned")
        if ft.is_empty():
            return self._empty("fig05_format_examples", "Fig. 5", "")
        top = (ft.group_by("model", "train_task", "eval_set").agg(pl.col("spread").mean())
               .sort("spread", "eval_set", descending=[True, False]).head(1))
        rows = top.join(self._id_pairs(), on=["model", "train_task", "eval_set"])
        self._format_panels(rows, "fig05_format_examples", "Task format (Fig. 5)",
                            "Base vs fine-tuned in every prompt format, for the in-domain set "
                            "whose fine-tuned spread across formats is largest.")

    def fig06(self) -> None:
        ranked = self._mean_diff("OOD")
        if ranked.is_empty():
            return self._empty("fig06_ood_examples", "Fig. 6", "")
        picks = [ranked.row(0, named=True), ranked.row(-1, named=True)]
        fig, axes = _grid(2, "Out-of-domain, fine-tuned vs base (Fig. 6)")
        for ax, r, tag in zip(axes, picks, ("(a) hurt most", "(b) helped most"), strict=True):
            self._ft_vs_base_panel(ax, r["model"], r["tuning"], r["train_task"], r["eval_set"])
            ax.set_title(f"{tag}: {r['train_task']} → {r['eval_set']}", fontsize=9)
        axes[0].legend(fontsize=7)
        self._save(fig, "fig06_ood_examples", "The OOD set fine-tuning hurt most and the one "
                   "it helped most (mean change over checkpoints).")

    def fig07(self) -> None:
        ood = self.ood.sort("train_task", "eval_set")
        if ood.is_empty():
            return self._empty("fig07_ood_ratio", "Fig. 7", "")
        fig, axes = _grid(1, "Out-of-domain change ratio, mean over checkpoints (Fig. 7)")
        ax = axes[0]
        fig.set_size_inches(max(4.5, 1.1 * ood.height + 1.5), 3.4)
        labels = [f"{t}\n→ {s}" for t, s in zip(ood["train_task"], ood["eval_set"],
                                                strict=True)]
        tasks = ood["train_task"].unique(maintain_order=True).to_list()
        palette = dict(zip(tasks, sns.color_palette("tab10", len(tasks)), strict=True))
        for i, r in enumerate(ood.iter_rows(named=True)):
            value = r["ratio_percent"]
            if value is None:
                ax.text(i, 0, "n/a\n(base 0)", ha="center", va="bottom", fontsize=7)
                continue
            err = None
            if r["ci_low_percent"] is not None:
                err = [[value - r["ci_low_percent"]], [r["ci_high_percent"] - value]]
            ax.bar(i, value, color=palette[r["train_task"]], yerr=err, capsize=3)
            ax.text(i, value, f"{value:+.1f}%", ha="center",
                    va="bottom" if value >= 0 else "top", fontsize=7)
        ax.axhline(0, color="black", linewidth=0.6)
        # Ratios over a near-zero base reach thousands of percent; keep small ones visible.
        extremes = pl.concat([ood["ci_low_percent"], ood["ci_high_percent"]]).drop_nulls().abs()
        if extremes.len() and extremes.max() > 300:
            ax.set_yscale("symlog", linthresh=100)
        ax.set_xticks(range(ood.height))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel("mean ratio of change (%)")
        ax.set_title("fine-tuned task → OOD set", fontsize=9)
        self._save(fig, "fig07_ood_ratio", "Mean over checkpoints of (FT − base) / base on each "
                   "training task's OOD sets, with 95% bootstrap intervals.")

    def fig08(self) -> None:
        """Benchmarks after instruction tuning (the paper's Fig. 8); without instruction tuning,
        the sets no task fine-tunes, after each task fine-tune."""
        trained = self._id_pairs().select("model", "eval_set").unique()
        instructed = self.ft_all.filter(pl.col("tuning") == INSTRUCTION_TUNING)
        tuned = instructed if instructed.height else self.ft
        other = (tuned.join(trained, on=["model", "eval_set"], how="anti")
                 .select("model", "eval_set", "metric").unique()
                 .sort("model", "eval_set", "metric"))
        if instructed.height:
            title = "Benchmarks after instruction tuning (Fig. 8)"
            caption = ("Base vs instruction-tuned models on the sets of tasks nothing is "
                       "fine-tuned on (multiple choice: acc and acc_norm panels).")
        else:
            title = "Sets no model was fine-tuned for, after fine-tuning (Fig. 8)"
            caption = ("Base vs every fine-tuned model on the sets of tasks with no training "
                       "data (the paper: benchmarks after instruction tuning).")
        if other.is_empty():
            return self._empty("fig08_untrained_sets", title, caption)
        fig, axes = _grid(other.height, title)
        labels = sorted(tuned["train_task"].unique().to_list())
        palette = dict(zip(labels, sns.color_palette("tab10", len(labels)), strict=True))
        multi = other.group_by("model", "eval_set").len()["len"].max() > 1
        for ax, r in zip(axes, other.iter_rows(named=True), strict=True):
            sel = ((pl.col("model") == r["model"]) & (pl.col("eval_set") == r["eval_set"])
                   & (pl.col("metric") == r["metric"]))
            part = tuned.filter(sel)
            for (task,), curve in part.group_by("train_task", maintain_order=True):
                label = "instruction-tuned" if instructed.height else f"FT {task}"
                _line(ax, curve, label, FT_COLOR if instructed.height else palette[task])
            base = self.base_all.filter(sel)
            _line(ax, base, "base", BASE_COLOR, dashed=True)
            _step_axis(ax, pl.concat([part.select("step", "tokens"),
                                      base.select("step", "tokens")]))
            ax.set_title(f"{r['eval_set']} ({r['metric']})" if multi else r["eval_set"],
                         fontsize=9)
            ax.set_ylabel(r["metric"])
        axes[0].legend(fontsize=6)
        self._save(fig, "fig08_untrained_sets", caption)

    def fig09(self) -> None:
        self._pairs_grid(self._id_pairs(), "fig09_ft_vs_base_id",
                         "In-domain: fine-tuned vs base at every checkpoint (Fig. 9)",
                         "Every fine-tuned task on its in-domain sets.")

    def fig10(self) -> None:
        pairs = (self.ft.filter(pl.col("role") == "OOD")
                 .select("model", "tuning", "train_task", "eval_set").unique()
                 .sort("model", "train_task", "eval_set"))
        self._pairs_grid(pairs, "fig10_ft_vs_base_ood",
                         "Out-of-domain: fine-tuned vs base (Fig. 10)",
                         "Every fine-tuned task on its out-of-domain sets.")

    def _cross(self, train_type: str):
        own = (self.ft.filter((pl.col("role") == "ID")
                              & (pl.col("eval_task") == pl.col("train_task")))
               .select("model", "tuning", "train_task", train_type=pl.col("eval_type"))
               .unique())
        cross = (self.ft.filter(pl.col("role") == "cross")
                 .join(own, on=["model", "tuning", "train_task"])
                 .filter(pl.col("train_type") == train_type))
        return cross

    def fig11(self) -> None:
        cross = self._cross("classification")
        # Generation targets, or classification with a different label set (another task).
        pairs = (cross.select("model", "tuning", "train_task", "eval_set").unique()
                 .sort("model", "train_task", "eval_set"))
        self._pairs_grid(pairs, "fig11_cross_from_classification",
                         "Cross-task: fine-tuned on classification (Fig. 11)",
                         "Models fine-tuned on a classification task, on generation sets and "
                         "on classification sets with other labels.")

    def fig12(self) -> None:
        cross = self._cross("generation").filter(pl.col("eval_type") == "classification")
        pairs = (cross.select("model", "tuning", "train_task", "eval_set").unique()
                 .sort("model", "train_task", "eval_set"))
        self._pairs_grid(pairs, "fig12_cross_from_generation",
                         "Cross-task: fine-tuned on generation, on classification (Fig. 12)",
                         "Models fine-tuned on a generation task, on classification sets.")

    def fig13(self) -> None:
        rows = self._id_pairs()
        if rows.is_empty():
            return self._empty("fig13_formats_all", "Fig. 13", "")
        self._format_panels(rows, "fig13_formats_all", "Every prompt format (Fig. 13)",
                            "Base (dashed) and fine-tuned (solid) models in every format, "
                            "on every fine-tuned task's in-domain sets.")

    def all(self) -> list[Callable[[], None]]:
        return [self.fig02, self.fig03, self.fig04, self.fig05, self.fig06, self.fig07,
                self.fig08, self.fig09, self.fig10, self.fig11, self.fig12, self.fig13]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m amuro.figures", description=__doc__.split("\n")[0])
    p.add_argument("--results", default="results", help="folder holding the tables")
    p.add_argument("--out", default="results/figures", help="output folder")
    p.add_argument("--format", default="default", help="prompt format of the comparison")
    p.add_argument("--base-shots", type=int, default=4)
    p.add_argument("--ft-shots", type=int, default=4)
    args = p.parse_args(argv)
    sns.set_theme(style="whitegrid", context="paper")
    figs = Figures(Path(args.results), Path(args.out), args.format, args.base_shots,
                   args.ft_shots)
    for make in figs.all():
        make()
    with atomic_path(Path(args.out) / "figures.json") as tmp:
        tmp.write_text(json.dumps(figs.made, indent=2) + "\n", encoding="utf-8")
    print(f"figures: {len(figs.made)} figure(s), PNG and PDF -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
