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
  a single set it reproduces scipy's paired percentile bootstrap of the ratio. Each call
  resamples on its own: for intervals of one cell or of sets that share no items.
- `JointBootstrap`: the study-wide bootstrap every pooled statistic of the analysis tables uses
  (MRC, OOD ratio, groups' rise, Table 5 and FT − base). Each replicate draws one resample of
  each eval set's items and one of the fine-tuning seeds; every cell of a set (any checkpoint,
  task, tuning) is read through that set's draw, every fine-tuned cell through the seed draw.

Every function is deterministic for a given seed; degenerate inputs (fewer than two items, no
variation, zero resamples) give the point estimate as both bounds, without calling scipy.
"""

from __future__ import annotations

import inspect
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

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


# --- the joint bootstrap ----------------------------------------------------------------------


def derive_seed(seed: int, *key) -> int:
    """A seed per named draw, independent of the order anything is visited in."""
    text = "|".join("" if k is None else str(k) for k in key)
    return seed + zlib.crc32(text.encode("utf-8"))


@dataclass(frozen=True, eq=False)
class Unit:
    """Two sides scored on the same items of one eval set: `a` and `b` are (seeds x items)
    arrays, columns aligned with `ids`. `a_seeds` / `b_seeds` name each side's seeds (rows), or
    are None for a side with no seed axis (a base checkpoint: never seed-resampled)."""

    eval_set: str
    ids: tuple
    a: np.ndarray
    b: np.ndarray
    a_seeds: tuple | None
    b_seeds: tuple | None

    @property
    def size(self) -> int:
        return len(self.ids)

    def means(self) -> tuple[float, float]:
        """Each side's mean over its seeds of its mean over the items."""
        return float(self.a.mean()), float(self.b.mean())


class JointBootstrap:
    """One percentile bootstrap shared by every pooled statistic of a study.

    Replicate r draws, for every eval set, one resample of that set's items (its `universe`:
    every id any cell of the set scored, sorted) and one resample of the fine-tuning seeds
    (`seeds`, the seed axis). Every checkpoint, task and tuning that scored the set is read
    through the same item draw, and every fine-tuned cell through the same seed draw, so the
    sampling error they share is not averaged away as if they were independent.

    The draws (documented, so they can be checked by hand):
      items of set s: default_rng(derive_seed(seed, "items", s)).integers(0, N_s, (B, N_s))
      seeds:          default_rng(derive_seed(seed, "seeds")).integers(0, S, (B, S))
    A side's resampled mean is the mean over its drawn seeds of the mean over its drawn items;
    a side scoring only some of the set's items averages the drawn items it has (a replicate
    drawing none of them is left out), a side holding only some of the seeds averages the drawn
    seeds it has (all its seeds equally when the replicate drew none of them). A base side has
    no seed axis. Deterministic for a given seed; n_resamples 0 gives point estimates.
    """

    def __init__(self, universes: dict[str, Sequence[str]], seeds: Sequence[int],
                 n_resamples: int, seed: int, confidence: float = 0.95):
        _check(n_resamples, confidence)
        self.n_resamples, self.seed, self.confidence = n_resamples, seed, confidence
        self.universes = {k: list(v) for k, v in universes.items()}
        self.seed_axis = list(seeds)
        self._pos = {k: {i: p for p, i in enumerate(v)} for k, v in self.universes.items()}
        self._items: dict[str, np.ndarray] = {}
        self._seeds: np.ndarray | None = None
        self._memo: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    # the draws, as counts: weights[r, i] = how often replicate r drew item (or seed) i
    def item_indices(self, eval_set: str) -> np.ndarray:
        n = len(self.universes[eval_set])
        rng = np.random.default_rng(derive_seed(self.seed, "items", eval_set))
        return rng.integers(0, n, (self.n_resamples, n))

    def seed_indices(self) -> np.ndarray:
        s = len(self.seed_axis)
        rng = np.random.default_rng(derive_seed(self.seed, "seeds"))
        return rng.integers(0, s, (self.n_resamples, s))

    @staticmethod
    def _counts(idx: np.ndarray, n: int) -> np.ndarray:
        b = idx.shape[0]
        flat = (idx + n * np.arange(b)[:, None]).ravel()
        return np.bincount(flat, minlength=b * n).reshape(b, n).astype(float)

    def item_weights(self, eval_set: str) -> np.ndarray:
        if eval_set not in self._items:
            n = len(self.universes[eval_set])
            self._items[eval_set] = self._counts(self.item_indices(eval_set), n)
        return self._items[eval_set]

    def seed_weights(self) -> np.ndarray:
        if self._seeds is None:
            self._seeds = self._counts(self.seed_indices(), len(self.seed_axis))
        return self._seeds

    def side_means(self, eval_set: str, ids: Sequence[str], values: np.ndarray,
                   seeds: Sequence[int] | None) -> np.ndarray:
        """(B,) resampled means of one side (seeds x items, columns = ids); nan where the
        replicate drew none of its items. Memoised per values array (kept alive here), so a
        side shared by several statistics (a ScoreBook returns the same Unit) is resampled
        once."""
        memo = (id(values), eval_set, tuple(ids), None if seeds is None else tuple(seeds))
        hit = self._memo.get(memo)
        if hit is not None and hit[0] is values:
            return hit[1]
        out = self._side_means(eval_set, ids, values, seeds)
        self._memo[memo] = (values, out)
        return out

    def _side_means(self, eval_set, ids, values, seeds) -> np.ndarray:
        if eval_set not in self.universes:
            raise ValueError(f"eval set {eval_set!r} is not in the bootstrap's universes")
        pos = self._pos[eval_set]
        try:
            cols = [pos[i] for i in ids]
        except KeyError as err:
            raise ValueError(f"item {err.args[0]!r} is not in eval set {eval_set!r}") from None
        w = self.item_weights(eval_set)
        if len(cols) != w.shape[1] or cols != list(range(w.shape[1])):
            w = w[:, cols]  # (B, n): only the items this side scored
        values = np.atleast_2d(np.asarray(values, dtype=float))
        per_seed = w @ values.T  # (B, S): sums over the drawn items
        total = w.sum(axis=1)
        if seeds is None:
            pooled = per_seed.mean(axis=1)
        else:
            where = {s: k for k, s in enumerate(self.seed_axis)}
            try:
                v = self.seed_weights()[:, [where[s] for s in seeds]]  # (B, S)
            except KeyError as err:
                raise ValueError(f"seed {err.args[0]!r} is not on the seed axis") from None
            drawn = v.sum(axis=1)
            pooled = np.where(drawn > 0, (per_seed * v).sum(axis=1) / np.maximum(drawn, 1),
                              per_seed.mean(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, pooled / np.where(total > 0, total, 1), np.nan)

    def unit_means(self, unit: Unit) -> tuple[np.ndarray, np.ndarray]:
        return (self.side_means(unit.eval_set, unit.ids, unit.a, unit.a_seeds),
                self.side_means(unit.eval_set, unit.ids, unit.b, unit.b_seeds))

    def thetas(self, units: Sequence[Unit], statistic: str = "diff") -> np.ndarray:
        """(B,) replicates of the mean over units of each unit's statistic ("diff": a − b,
        "ratio": (a − b) / b, units with b = 0 left out of that replicate); nan where no unit
        could be used."""
        if statistic not in ("ratio", "diff"):
            raise ValueError(f"statistic must be 'ratio' or 'diff', got {statistic!r}")
        total = np.zeros(self.n_resamples)
        count = np.zeros(self.n_resamples)
        for u in units:
            if not u.size:
                continue
            a, b = self.unit_means(u)
            value, ok = _set_stat(a, np.nan_to_num(b, nan=0.0), statistic)
            ok = ok & np.isfinite(a) & np.isfinite(b)
            total += np.where(ok, value, 0.0)
            count += ok
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    def interval(self, thetas: np.ndarray) -> tuple[float, float]:
        """Percentile interval of replicates (nan ones dropped); (nan, nan) if none is left."""
        theta = np.asarray(thetas, dtype=float)
        theta = theta[np.isfinite(theta)]
        if theta.size == 0:
            return float("nan"), float("nan")
        alpha = (1 - self.confidence) / 2
        low, high = np.quantile(theta, [alpha, 1 - alpha])
        return float(low), float(high)

    def ci(self, units: Sequence[Unit], statistic: str = "diff") -> tuple[float, float, float]:
        """(point, low, high) of the mean over units of their statistic; the point uses every
        unit's seed-mean of item means. n_resamples 0: low = high = point."""
        point = pooled_point(units, statistic)
        if math.isnan(point) or self.n_resamples == 0:
            return point, point, point
        low, high = self.interval(self.thetas(units, statistic))
        return point, low, high

    def difference_ci(self, first: Sequence[Unit], second: Sequence[Unit],
                      statistic: str = "diff") -> tuple[float, float, float]:
        """(point, low, high) of pooled(first) − pooled(second), both read through the same
        replicates."""
        point = pooled_point(first, statistic) - pooled_point(second, statistic)
        if math.isnan(point) or self.n_resamples == 0:
            return point, point, point
        low, high = self.interval(self.thetas(first, statistic)
                                  - self.thetas(second, statistic))
        return point, low, high


def pooled_point(units: Sequence[Unit], statistic: str = "diff") -> float:
    """Mean over units of their statistic on the full data; nan if no unit can be used."""
    values = []
    for u in units:
        if u.size:
            a, b = u.means()
            value, ok = _set_stat(np.array([a]), np.array([b]), statistic)
            if ok[0]:
                values.append(float(value[0]))
    return float(np.mean(values)) if values else float("nan")
