"""Which checkpoint should be fine-tuned? How well pre-fine-tuning signals of a checkpoint
predict the score its fine-tune reaches (issue 15). Pure functions on polars tables.

Inputs (long tables, one key each):

- `signals`: SIGNAL_KEY (model, task, step, signal) + `value`: one point per base checkpoint,
  task and signal (the base few-shot score from perf.csv, `target_loss` and `linear_probe` from
  amuro.signals, a short probe's score, ...). `task` is the fine-tuning task.
- `finetuned`: FT_KEY (model, task, step) + `seed` + `value`: the fine-tuned model's final score
  (on the task's ID set, one metric) per fine-tuning seed. Its point is the mean over seeds; its
  seed-to-seed spread is max − min over seeds.

Intervals (optional): replicates as arrays, one (B,) array per key, all read through the same
B replicates, so replicate r of every array must come from one resample of the study:
`signal_draws[(model, task, step, signal)]` and `finetuned_draws[(model, task, step)]`.
`replicates(items, joint, key)` builds them from per-item tables with an
amuro.bootstrap.JointBootstrap: each replicate draws one resample of each item set (a
signal's held-out training items, universe `train:<task>` — see `signal_tables`; an eval
set's test items, universe the eval set) used by EVERY checkpoint, and one resample of the
fine-tuning seeds used by every fine-tuned cell. Checkpoints are then not treated as
independent samples: what they share (item difficulty) moves them together, as it should for
a correlation across checkpoints. A replicate whose value is nan anywhere (it drew none of a
side's items) gives a nan correlation and is left out of the interval.

Outputs (columns declared once below):

- `rank_correlations` (CORRELATION_SCHEMA): per (model, task, signal) and pooled over tasks
  (task POOLED), the Spearman and Kendall (tau-b) correlation across checkpoints between the
  signal and the fine-tuned score (scipy.stats for the points), with percentile intervals. The
  pooled value is the mean over tasks of the per-task coefficient (each task ranks its own
  checkpoints; raw values of different tasks are not comparable), each replicate pooled the
  same way. Fewer than MIN_CHECKPOINTS checkpoints, or a constant side: null. The sign is raw:
  a loss (lower is better) that predicts well correlates negatively.
- `leave_one_checkpoint_out` (LOO_SCHEMA): per (model, task, signal) and held-out checkpoint,
  the least-squares line of fine-tuned score on signal fitted on the other checkpoints, its
  prediction, the absolute error, the error of predicting the others' mean (`baseline`), and
  the error over the seed-to-seed spread of the real fine-tune at that checkpoint;
  `loo_summary` (LOO_SUMMARY_SCHEMA) averages them per (model, task, signal) and over tasks.
- `recommend` (RECOMMEND_SCHEMA): per (model, task, signal), the earliest checkpoint whose
  predicted fine-tuned score is within the seed noise (`seed_noise`) of the best predicted one,
  with the pre-training tokens (last checkpoint's minus the recommended one's) and the
  fine-tuning seconds (every checkpoint's minus the recommended one's) it saves, net of the
  signal's own seconds when given, and, with the real fine-tunes, the regret.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import stats

SIGNAL_KEY = ["model", "task", "step", "signal"]
FT_KEY = ["model", "task", "step"]
# Item tables (`replicates`): the key, then these.
ITEM_COLUMNS = ["universe", "id", "seed", "value"]
POOLED = "all tasks"
SPEARMAN, KENDALL = "spearman", "kendall"
MIN_CHECKPOINTS = 3
# The universe (JointBootstrap item set) of a signal's held-out training items.
TRAIN_UNIVERSE = "train:{task}"

CORRELATION_SCHEMA = {
    "model": pl.String, "task": pl.String, "signal": pl.String, "method": pl.String,
    "value": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
    "n_checkpoints": pl.Int64, "n_tasks": pl.Int64, "n_replicates": pl.Int64,
}
LOO_SCHEMA = {
    "model": pl.String, "task": pl.String, "signal": pl.String, "step": pl.Int64,
    "signal_value": pl.Float64, "actual": pl.Float64, "predicted": pl.Float64,
    "abs_error": pl.Float64, "baseline_predicted": pl.Float64,
    "baseline_abs_error": pl.Float64, "seed_spread": pl.Float64, "n_seeds": pl.Int64,
    "error_to_spread": pl.Float64, "slope": pl.Float64, "intercept": pl.Float64,
    "n_fit": pl.Int64,
}
LOO_SUMMARY_SCHEMA = {
    "model": pl.String, "task": pl.String, "signal": pl.String, "n_checkpoints": pl.Int64,
    "mean_abs_error": pl.Float64, "mean_baseline_abs_error": pl.Float64,
    "mean_seed_spread": pl.Float64, "error_to_spread": pl.Float64,
    "share_within_spread": pl.Float64,
}
NOISE_SCHEMA = {"model": pl.String, "task": pl.String, "noise": pl.Float64,
                "n_checkpoints": pl.Int64, "n_seeds": pl.Int64}
RECOMMEND_SCHEMA = {
    "model": pl.String, "task": pl.String, "signal": pl.String, "n_checkpoints": pl.Int64,
    "recommended_step": pl.Int64, "recommended_tokens": pl.Int64,
    "recommended_predicted": pl.Float64, "best_predicted_step": pl.Int64,
    "best_predicted": pl.Float64, "noise": pl.Float64, "last_step": pl.Int64,
    "last_tokens": pl.Int64, "tokens_saved": pl.Int64, "finetune_seconds_all": pl.Float64,
    "finetune_seconds_recommended": pl.Float64, "finetune_seconds_saved": pl.Float64,
    "signal_seconds": pl.Float64, "net_seconds_saved": pl.Float64,
    "actual_recommended": pl.Float64, "actual_best": pl.Float64, "actual_best_step": pl.Int64,
    "regret": pl.Float64, "regret_within_noise": pl.Boolean,
}
CORRELATION_COLUMNS = list(CORRELATION_SCHEMA)
LOO_COLUMNS = list(LOO_SCHEMA)
LOO_SUMMARY_COLUMNS = list(LOO_SUMMARY_SCHEMA)
RECOMMEND_COLUMNS = list(RECOMMEND_SCHEMA)

Draws = dict[tuple, np.ndarray]


def _require(table: pl.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {', '.join(missing)}")


def _none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


# --- per-checkpoint points -------------------------------------------------------------------


def finetuned_points(finetuned: pl.DataFrame) -> pl.DataFrame:
    """FT_KEY + value (mean over seeds), n_seeds, seed_spread (max − min over seeds)."""
    _require(finetuned, [*FT_KEY, "seed", "value"], "finetuned")
    dup = finetuned.group_by([*FT_KEY, "seed"]).len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"finetuned: several rows for {dup.sort(FT_KEY).row(0, named=True)}")
    return (finetuned.group_by(FT_KEY)
            .agg(pl.col("value").mean(), pl.len().cast(pl.Int64).alias("n_seeds"),
                 (pl.col("value").max() - pl.col("value").min()).alias("seed_spread"))
            .sort(FT_KEY))


def _joined(signals: pl.DataFrame, finetuned: pl.DataFrame) -> pl.DataFrame:
    """One row per (model, task, signal, step) present in both tables: x (signal), y (fine-tuned
    mean over seeds), n_seeds, seed_spread; sorted by step."""
    _require(signals, [*SIGNAL_KEY, "value"], "signals")
    dup = signals.group_by(SIGNAL_KEY).len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"signals: several rows for {dup.sort(SIGNAL_KEY).row(0, named=True)}")
    ft = finetuned_points(finetuned).rename({"value": "y"})
    return (signals.select(*SIGNAL_KEY, pl.col("value").cast(pl.Float64).alias("x"))
            .join(ft, on=FT_KEY, how="inner")
            .sort("model", "task", "signal", "step"))


# --- rank correlations -----------------------------------------------------------------------


def _point(method: str, x: np.ndarray, y: np.ndarray) -> float:
    """scipy's Spearman rho / Kendall tau-b; nan for too few points or a constant side."""
    if x.size < MIN_CHECKPOINTS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.spearmanr(x, y) if method == SPEARMAN else stats.kendalltau(x, y)
    return float(res.statistic)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho of every row pair of two (B, n) arrays: Pearson's r of the average ranks
    (as scipy.stats.spearmanr); nan for a row with a nan or a constant side."""
    rx, ry = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, (rx * ry).sum(axis=1) / np.where(den > 0, den, 1), np.nan)
    return np.where(np.isnan(x).any(axis=1) | np.isnan(y).any(axis=1), np.nan, rho)


def kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-b of every row pair of two (B, n) arrays (as scipy.stats.kendalltau):
    (concordant − discordant) / sqrt((pairs − ties in x)(pairs − ties in y)); nan for a row with
    a nan or a constant side."""
    i, j = np.triu_indices(x.shape[1], k=1)
    dx, dy = np.sign(x[:, i] - x[:, j]), np.sign(y[:, i] - y[:, j])
    pairs = i.size
    den = np.sqrt((pairs - (dx == 0).sum(axis=1)) * (pairs - (dy == 0).sum(axis=1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = np.where(den > 0, (dx * dy).sum(axis=1) / np.where(den > 0, den, 1), np.nan)
    return np.where(np.isnan(x).any(axis=1) | np.isnan(y).any(axis=1), np.nan, tau)


ROWS = {SPEARMAN: spearman_rows, KENDALL: kendall_rows}


def _interval(theta: np.ndarray | None, confidence: float) -> tuple[float, float, int]:
    if theta is None:
        return math.nan, math.nan, 0
    theta = theta[np.isfinite(theta)]
    if theta.size == 0:
        return math.nan, math.nan, 0
    alpha = (1 - confidence) / 2
    low, high = np.quantile(theta, [alpha, 1 - alpha])
    return float(low), float(high), int(theta.size)


def _stack(draws: Draws | None, keys: list[tuple], name: str) -> np.ndarray | None:
    """(B, n): the replicates of each key as a column; None without draws."""
    if draws is None:
        return None
    missing = [k for k in keys if k not in draws]
    if missing:
        raise ValueError(f"{name}: no replicates for {missing[0]} ({len(missing)} key(s))")
    cols = [np.asarray(draws[k], dtype=float) for k in keys]
    if len({c.shape for c in cols}) > 1 or cols[0].ndim != 1:
        raise ValueError(f"{name}: every key needs a (B,) array of the same B")
    return np.column_stack(cols)


def rank_correlations(signals: pl.DataFrame, finetuned: pl.DataFrame,
                      signal_draws: Draws | None = None, finetuned_draws: Draws | None = None,
                      confidence: float = 0.95, methods: Sequence[str] = (SPEARMAN, KENDALL)
                      ) -> pl.DataFrame:
    """CORRELATION_SCHEMA rows: per (model, task, signal, method), then per (model, signal,
    method) pooled over tasks (task POOLED). Without both draws the intervals are null.

    `signal_draws` / `finetuned_draws`: see the module docstring; the keys needed are those of
    the checkpoints both tables hold."""
    if (signal_draws is None) != (finetuned_draws is None):
        raise ValueError("give both signal_draws and finetuned_draws, or neither")
    joined = _joined(signals, finetuned)
    rows, pooled = [], {}
    for (model, task, signal), part in joined.group_by("model", "task", "signal",
                                                       maintain_order=True):
        steps = part["step"].to_list()
        x, y = part["x"].to_numpy(), part["y"].to_numpy()
        xs = _stack(signal_draws, [(model, task, s, signal) for s in steps], "signal_draws")
        ys = _stack(finetuned_draws, [(model, task, s) for s in steps], "finetuned_draws")
        if xs is not None and xs.shape[0] != ys.shape[0]:
            raise ValueError("signal_draws and finetuned_draws differ in their number of "
                             "replicates")
        for method in methods:
            value = _point(method, x, y)
            theta = None
            if xs is not None and len(steps) >= MIN_CHECKPOINTS:
                theta = ROWS[method](xs, ys)
            low, high, n_rep = _interval(theta, confidence)
            rows.append({"model": model, "task": task, "signal": signal, "method": method,
                         "value": _none(value), "ci_low": _none(low), "ci_high": _none(high),
                         "n_checkpoints": len(steps), "n_tasks": 1, "n_replicates": n_rep})
            if math.isfinite(value):
                pooled.setdefault((model, signal, method), []).append((value, theta,
                                                                        len(steps)))
    for (model, signal, method), parts in pooled.items():
        value = float(np.mean([v for v, _, _ in parts]))
        theta = None
        if all(t is not None for _, t, _ in parts):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a replicate nan everywhere
                theta = np.nanmean(np.vstack([t for _, t, _ in parts]), axis=0)
        low, high, n_rep = _interval(theta, confidence)
        rows.append({"model": model, "task": POOLED, "signal": signal, "method": method,
                     "value": value, "ci_low": _none(low), "ci_high": _none(high),
                     "n_checkpoints": sum(n for _, _, n in parts), "n_tasks": len(parts),
                     "n_replicates": n_rep})
    return pl.DataFrame(rows, schema=CORRELATION_SCHEMA, orient="row")


# --- replicates from per-item tables ---------------------------------------------------------


def universes(*items: pl.DataFrame) -> dict[str, list[str]]:
    """Every universe's item ids (sorted union over the tables): what the joint bootstrap
    resamples. Add them to the study's (ScoreBook.universes()) to share its draws."""
    out: dict[str, set[str]] = {}
    for table in items:
        for (u,), part in table.group_by("universe"):
            out.setdefault(u, set()).update(part["id"].cast(pl.String).to_list())
    return {k: sorted(v) for k, v in sorted(out.items())}


def replicates(items: pl.DataFrame, joint, key: Sequence[str]) -> Draws:
    """{key values: (B,) resampled means} from a per-item table: `key` columns + ITEM_COLUMNS
    (`universe`: the item set, `id`, `seed`: the fine-tuning seed or null for a side without a
    seed axis, `value`: the item's value). Each key's rows form a complete seeds x items matrix
    in one universe; its replicates are `joint.side_means` (amuro.bootstrap.JointBootstrap),
    so every key of a universe is read through the same item draw, every seeded key through
    the same seed draw."""
    _require(items, [*key, *ITEM_COLUMNS], "items")
    out: Draws = {}
    for k, part in items.group_by(list(key), maintain_order=True):
        name = dict(zip(key, k, strict=True))
        universe = part["universe"].unique().to_list()
        if len(universe) != 1:
            raise ValueError(f"items: {name} spans universes {sorted(universe)}")
        ids = sorted(set(part["id"].cast(pl.String).to_list()))
        seeds = sorted(set(part["seed"].drop_nulls().to_list()))
        if seeds and part["seed"].null_count():
            raise ValueError(f"items: {name} mixes rows with and without a seed")
        if part.height != len(ids) * max(1, len(seeds)):
            raise ValueError(f"items: {name} is not one value per (seed, id): {part.height} "
                             f"rows for {max(1, len(seeds))} seed(s) x {len(ids)} item(s)")
        pos = {i: c for c, i in enumerate(ids)}
        row_of = {s: r for r, s in enumerate(seeds)}
        matrix = np.zeros((max(1, len(seeds)), len(ids)))
        for seed, rid, value in part.select("seed", pl.col("id").cast(pl.String),
                                            "value").iter_rows():
            matrix[row_of.get(seed, 0), pos[rid]] = value
        out[tuple(k)] = joint.side_means(universe[0], ids, matrix,
                                         tuple(seeds) if seeds else None)
    return out


def signal_tables(docs: Sequence[tuple[str, int, dict]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(signals, items) from amuro.signals outputs, each given as (model, step, loaded JSON):
    signals has SIGNAL_KEY + value (+ wall_s, cpu_s of the run that computed it), items has
    SIGNAL_KEY + ITEM_COLUMNS (universe `train:<task>`, seed null)."""
    points, items = [], {c: [] for c in [*SIGNAL_KEY, *ITEM_COLUMNS]}
    for model, step, doc in docs:
        for signal, sig in doc["signals"].items():
            key = {"model": model, "task": doc["task"], "step": int(step), "signal": signal}
            points.append({**key, "value": float(sig["value"]), "wall_s": doc.get("wall_s"),
                           "cpu_s": doc.get("cpu_s")})
            n = len(sig["ids"])
            for c, v in key.items():
                items[c].extend([v] * n)
            items["universe"].extend([TRAIN_UNIVERSE.format(task=doc["task"])] * n)
            items["id"].extend(str(i) for i in sig["ids"])
            items["seed"].extend([None] * n)
            items["value"].extend(float(v) for v in sig["values"])
    key_schema = {"model": pl.String, "task": pl.String, "step": pl.Int64, "signal": pl.String}
    return (pl.DataFrame(points, schema={**key_schema, "value": pl.Float64,
                                         "wall_s": pl.Float64, "cpu_s": pl.Float64}),
            pl.DataFrame(items, schema={**key_schema, "universe": pl.String, "id": pl.String,
                                        "seed": pl.Int64, "value": pl.Float64}))


# --- leave one checkpoint out ----------------------------------------------------------------


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """(slope, intercept) of least squares of y on x; None when x does not vary."""
    if np.ptp(x) == 0:
        return None
    xc = x - x.mean()
    slope = float((xc * (y - y.mean())).sum() / (xc * xc).sum())
    return slope, float(y.mean() - slope * x.mean())


def leave_one_checkpoint_out(signals: pl.DataFrame, finetuned: pl.DataFrame) -> pl.DataFrame:
    """LOO_SCHEMA rows: for every (model, task, signal) with at least MIN_CHECKPOINTS
    checkpoints in both tables, each checkpoint held out in turn. The predictor is the
    least-squares line of the fine-tuned score (mean over seeds) on the signal, fitted on the
    other checkpoints (when their signal does not vary: their mean, slope null). The baseline
    predicts the others' mean. `error_to_spread` = abs_error / seed_spread (null when the
    held-out checkpoint has one seed or no spread)."""
    joined = _joined(signals, finetuned)
    rows = []
    for (model, task, signal), part in joined.group_by("model", "task", "signal",
                                                       maintain_order=True):
        if part.height < MIN_CHECKPOINTS:
            continue
        x, y = part["x"].to_numpy(), part["y"].to_numpy()
        for k, r in enumerate(part.iter_rows(named=True)):
            rest = np.arange(part.height) != k
            fit = _line(x[rest], y[rest])
            baseline = float(y[rest].mean())
            predicted = baseline if fit is None else fit[0] * x[k] + fit[1]
            error = abs(predicted - y[k])
            spread = r["seed_spread"]
            rows.append({
                "model": model, "task": task, "signal": signal, "step": r["step"],
                "signal_value": r["x"], "actual": r["y"], "predicted": predicted,
                "abs_error": error, "baseline_predicted": baseline,
                "baseline_abs_error": abs(baseline - y[k]), "seed_spread": spread,
                "n_seeds": r["n_seeds"],
                "error_to_spread": error / spread if r["n_seeds"] > 1 and spread > 0 else None,
                "slope": None if fit is None else fit[0],
                "intercept": None if fit is None else fit[1], "n_fit": int(rest.sum()),
            })
    return pl.DataFrame(rows, schema=LOO_SCHEMA, orient="row")


def loo_summary(loo: pl.DataFrame) -> pl.DataFrame:
    """LOO_SUMMARY_SCHEMA: per (model, task, signal) and pooled over tasks (task POOLED):
    mean absolute error (and the baseline's), mean seed spread, their ratio, and the share of
    held-out checkpoints whose error is within the seed spread (of those with a spread)."""
    def agg(frame, by):
        has = pl.col("n_seeds") > 1
        return frame.group_by(by, maintain_order=True).agg(
            pl.len().cast(pl.Int64).alias("n_checkpoints"),
            pl.col("abs_error").mean().alias("mean_abs_error"),
            pl.col("baseline_abs_error").mean().alias("mean_baseline_abs_error"),
            pl.col("seed_spread").filter(has).mean().alias("mean_seed_spread"),
            ((pl.col("abs_error") <= pl.col("seed_spread")).filter(has).mean()
             .alias("share_within_spread")),
        )

    per_task = agg(loo, ["model", "task", "signal"])
    pooled = agg(loo, ["model", "signal"]).with_columns(task=pl.lit(POOLED))
    out = pl.concat([per_task, pooled.select(per_task.columns)])
    ratio = pl.when(pl.col("mean_seed_spread") > 0).then(
        pl.col("mean_abs_error") / pl.col("mean_seed_spread"))
    return out.with_columns(error_to_spread=ratio).select(
        [pl.col(c).cast(t) for c, t in LOO_SUMMARY_SCHEMA.items()])


# --- recommendation --------------------------------------------------------------------------


def seed_noise(finetuned: pl.DataFrame) -> pl.DataFrame:
    """NOISE_SCHEMA: per (model, task), the seed noise of the real fine-tune: the mean over
    checkpoints of the seed-to-seed spread (max − min over seeds; 0 with one seed)."""
    points = finetuned_points(finetuned)
    return (points.group_by("model", "task", maintain_order=True)
            .agg(pl.col("seed_spread").mean().alias("noise"),
                 pl.len().cast(pl.Int64).alias("n_checkpoints"),
                 pl.col("n_seeds").max().alias("n_seeds"))
            .select([pl.col(c).cast(t) for c, t in NOISE_SCHEMA.items()]))


def recommend(predictions: pl.DataFrame, noise: pl.DataFrame, tokens: pl.DataFrame,
              finetune_seconds: pl.DataFrame, signal_seconds: pl.DataFrame | None = None,
              finetuned: pl.DataFrame | None = None) -> pl.DataFrame:
    """RECOMMEND_SCHEMA rows, one per (model, task, signal).

    predictions: model, task, signal, step, predicted (the fine-tuned score predicted for that
      checkpoint, e.g. leave_one_checkpoint_out's column: each checkpoint predicted without its
      own fine-tune); noise: model, task, noise (seed_noise);
    tokens: model, step, tokens (pre-training tokens seen by each checkpoint);
    finetune_seconds: model, task, step, seconds (fine-tuning one checkpoint, all its seeds);
    signal_seconds (optional): model, task, step, signal, seconds (computing the signal);
    finetuned (optional): the real fine-tunes (FT_KEY + seed + value), for the regret.

    The rule: best = the highest predicted score; the recommendation is the earliest step whose
    prediction is >= best − noise. tokens_saved = tokens of the last checkpoint − tokens of the
    recommended one (the pre-training one need not have run); finetune_seconds_saved = the sum
    over every checkpoint − the recommended one's (fine-tune one checkpoint instead of all);
    net_seconds_saved subtracts the signal's seconds over every checkpoint. regret = the best
    real fine-tuned score − the recommended checkpoint's (`regret_within_noise`: regret <=
    noise)."""
    _require(predictions, ["model", "task", "signal", "step", "predicted"], "predictions")
    _require(noise, ["model", "task", "noise"], "noise")
    _require(tokens, ["model", "step", "tokens"], "tokens")
    _require(finetune_seconds, ["model", "task", "step", "seconds"], "finetune_seconds")
    tok = {(m, s): t for m, s, t in tokens.select("model", "step", "tokens").iter_rows()}
    ft_s = {(m, t, s): v for m, t, s, v in
            finetune_seconds.select("model", "task", "step", "seconds").iter_rows()}
    noise_of = {(m, t): v for m, t, v in noise.select("model", "task", "noise").iter_rows()}
    sig_s: dict[tuple, float] = {}
    if signal_seconds is not None:
        _require(signal_seconds, [*SIGNAL_KEY, "seconds"], "signal_seconds")
        for m, t, s, g, v in signal_seconds.select(*SIGNAL_KEY, "seconds").iter_rows():
            sig_s[(m, t, s, g)] = sig_s.get((m, t, s, g), 0.0) + float(v)
    actual = {}
    if finetuned is not None:
        for r in finetuned_points(finetuned).iter_rows(named=True):
            actual[(r["model"], r["task"], r["step"])] = r["value"]
    rows = []
    for (model, task, signal), part in predictions.sort("step").group_by(
            "model", "task", "signal", maintain_order=True):
        part = part.filter(pl.col("predicted").is_not_null() & pl.col("predicted").is_not_nan())
        if not part.height:
            continue
        if (model, task) not in noise_of:
            raise ValueError(f"noise: no row for model {model!r}, task {task!r}")
        steps, pred = part["step"].to_list(), part["predicted"].to_numpy()
        for what, table, keys in (("tokens", tok, [(model, s) for s in steps]),
                                  ("finetune_seconds", ft_s, [(model, task, s) for s in steps])):
            missing = [k for k in keys if k not in table]
            if missing:
                raise ValueError(f"{what}: no row for {missing[0]}")
        best = int(np.argmax(pred))
        eps = noise_of[(model, task)]
        rec = next(k for k in range(len(steps)) if pred[k] >= pred[best] - eps)
        all_s = float(sum(ft_s[(model, task, s)] for s in steps))
        saved = all_s - ft_s[(model, task, steps[rec])]
        signal_s = None
        if signal_seconds is not None:  # the signal at every checkpoint the decision reads
            signal_s = float(sum(sig_s.get((model, task, s, signal), 0.0) for s in steps))
        real = [(actual[(model, task, s)], s) for s in steps if (model, task, s) in actual]
        act_rec = actual.get((model, task, steps[rec]))
        act_best, act_step = max(real, key=lambda p: (p[0], -p[1])) if real else (None, None)
        regret = act_best - act_rec if act_rec is not None else None
        rows.append({
            "model": model, "task": task, "signal": signal, "n_checkpoints": len(steps),
            "recommended_step": steps[rec], "recommended_tokens": tok[(model, steps[rec])],
            "recommended_predicted": float(pred[rec]), "best_predicted_step": steps[best],
            "best_predicted": float(pred[best]), "noise": eps, "last_step": steps[-1],
            "last_tokens": tok[(model, steps[-1])],
            "tokens_saved": tok[(model, steps[-1])] - tok[(model, steps[rec])],
            "finetune_seconds_all": all_s,
            "finetune_seconds_recommended": ft_s[(model, task, steps[rec])],
            "finetune_seconds_saved": saved, "signal_seconds": signal_s,
            "net_seconds_saved": None if signal_s is None else saved - signal_s,
            "actual_recommended": act_rec, "actual_best": act_best,
            "actual_best_step": act_step, "regret": regret,
            "regret_within_noise": None if regret is None else bool(regret <= eps + 1e-12),
        })
    return pl.DataFrame(rows, schema=RECOMMEND_SCHEMA, orient="row")
