"""Percentile-bootstrap confidence intervals over per-example scores (pure functions).

The paper's released code bootstraps per-example scores with `scipy.stats.bootstrap`
(percentile method, 95 %). Here:

- `mean_ci`: CI of one cell's mean score (scipy, percentile).
- `paired_diff_ci`: CI of mean(a) − mean(b) for two score vectors over the SAME items, items
  resampled jointly (scipy, `paired=True`), so the item-difficulty variance shared by both sides
  cancels out.
- `set_mean_ci` / `mrc_ci`: CI of a mean over several eval sets of each set's change ("diff")
  or ratio of change ("ratio"; the mean ratio of change of paper §6.2). Items are
  resampled within each set (stratified: each set keeps its size), jointly for the fine-tuned
  and the base scores. `scipy.stats.bootstrap` cannot stratify, so this one resamples indices
  with numpy; it draws them exactly as scipy does (`rng.integers(0, n, (resamples, n))`), so for
  a single set it reproduces scipy's paired percentile bootstrap of the ratio.

Every function is deterministic for a given seed; degenerate inputs (fewer than two items, no
variation, zero resamples) give the point estimate as both bounds, without calling scipy.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
from scipy import stats

# At most this many resampled values are held in memory at once (resamples x items).
MAX_BATCH_ELEMENTS = 10_000_000

# scipy >= 1.15 names the generator argument `rng`; older versions only know `random_state`.
_RNG_KW = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


def _vector(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d vector of scores, got shape {arr.shape}")
    return arr


def _batch(n_items: int) -> int:
    return max(1, MAX_BATCH_ELEMENTS // max(1, n_items))


def _check(n_resamples: int, confidence: float) -> None:
    if n_resamples < 0:
        raise ValueError(f"n_resamples must be >= 0, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _bounds(res) -> tuple[float, float]:
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_ci(
    scores: Sequence[float] | np.ndarray,
    n_resamples: int,
    seed: int,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile-bootstrap CI of the mean of `scores`; (nan, nan) for no scores."""
    _check(n_resamples, confidence)
    x = _vector(scores, "scores")
    if x.size == 0:
        return float("nan"), float("nan")
    mean = float(x.mean())
    if x.size < 2 or n_resamples == 0 or np.all(x == x[0]):
        return mean, mean
    res = stats.bootstrap(
        (x,), np.mean, n_resamples=n_resamples, batch=_batch(x.size), vectorized=True,
        confidence_level=confidence, method="percentile",
        **{_RNG_KW: np.random.default_rng(seed)},
    )
    return _bounds(res)


def _diff_of_means(a, b, axis=-1):
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def paired_diff_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_resamples: int,
    seed: int,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """CI of mean(a) − mean(b); a[k] and b[k] score the same item, resampled together."""
    _check(n_resamples, confidence)
    x, y = _vector(a, "a"), _vector(b, "b")
    if x.size != y.size:
        raise ValueError(f"paired vectors differ in length: {x.size} vs {y.size}")
    if x.size == 0:
        return float("nan"), float("nan")
    diff = float(x.mean() - y.mean())
    d = x - y
    if x.size < 2 or n_resamples == 0 or np.all(d == d[0]):
        return diff, diff
    res = stats.bootstrap(
        (x, y), _diff_of_means, n_resamples=n_resamples, batch=_batch(x.size), vectorized=True,
        paired=True, confidence_level=confidence, method="percentile",
        **{_RNG_KW: np.random.default_rng(seed)},
    )
    return _bounds(res)


def _set_stat(mean_f, mean_b, statistic: str):
    """Per-set statistic and whether it is defined (a ratio needs a non-zero base)."""
    if statistic == "diff":
        return mean_f - mean_b, np.ones_like(mean_b, dtype=bool)
    ok = mean_b != 0
    return np.where(ok, (mean_f - mean_b) / np.where(ok, mean_b, 1.0), 0.0), ok


def set_mean_point(pairs: Sequence[tuple], statistic: str = "ratio") -> float:
    """Mean over sets of mean_ft − mean_base ("diff") or of (mean_ft − mean_base) / mean_base
    ("ratio", sets with base mean 0 left out); nan if no set can be used."""
    values = []
    for ft, base in pairs:
        f, b = _vector(ft, "ft"), _vector(base, "base")
        if b.size:
            value, ok = _set_stat(np.array([f.mean()]), np.array([b.mean()]), statistic)
            if ok[0]:
                values.append(float(value[0]))
    return float(np.mean(values)) if values else float("nan")


def mrc_point(pairs: Sequence[tuple]) -> float:
    """Mean over sets of (mean_ft − mean_base) / mean_base; sets with base mean 0 left out."""
    return set_mean_point(pairs, "ratio")


def set_mean_ci(
    pairs: Sequence[tuple],
    n_resamples: int,
    seed: int,
    statistic: str = "ratio",
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Stratified paired percentile-bootstrap CI of set_mean_point(pairs, statistic).

    `pairs` holds one (ft_scores, base_scores) per set, aligned item by item. In each resample
    every set is resampled on its own (same size, items drawn with replacement, the same draw
    for both sides); for "ratio", a set whose resampled base mean is 0 is left out of that
    resample's mean, and resamples left with no set are dropped. Sets with no items are
    ignored. Returns (nan, nan) if no set can be used.
    """
    _check(n_resamples, confidence)
    if statistic not in ("ratio", "diff"):
        raise ValueError(f"statistic must be 'ratio' or 'diff', got {statistic!r}")
    sets = []
    for j, (ft, base) in enumerate(pairs):
        f, b = _vector(ft, f"pairs[{j}] ft"), _vector(base, f"pairs[{j}] base")
        if f.size != b.size:
            raise ValueError(f"pairs[{j}]: ft and base differ in length: {f.size} vs {b.size}")
        if f.size:
            sets.append((f, b))
    point = set_mean_point(sets, statistic)
    if np.isnan(point) or n_resamples == 0:
        return point, point
    rng = np.random.default_rng(seed)
    batch = _batch(max(f.size for f, _ in sets))
    thetas = []
    for start in range(0, n_resamples, batch):
        size = min(batch, n_resamples - start)
        total = np.zeros(size)
        count = np.zeros(size)
        for f, b in sets:
            idx = rng.integers(0, f.size, (size, f.size))
            value, ok = _set_stat(f[idx].mean(axis=-1), b[idx].mean(axis=-1), statistic)
            total += np.where(ok, value, 0.0)
            count += ok
        thetas.append(np.where(count > 0, total / np.maximum(count, 1), np.nan))
    theta = np.concatenate(thetas)
    theta = theta[np.isfinite(theta)]
    if theta.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(theta, [alpha, 1 - alpha])
    return float(low), float(high)


def mrc_ci(
    pairs: Sequence[tuple],
    n_resamples: int,
    seed: int,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """CI of the mean ratio of change (a fraction): set_mean_ci with statistic "ratio"."""
    return set_mean_ci(pairs, n_resamples, seed, "ratio", confidence)
