"""Bootstrap CIs: brackets, determinism, degenerate inputs, agreement with scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from amuro.bootstrap import (
    JointBootstrap,
    Unit,
    derive_seed,
    mean_ci,
    mrc_ci,
    mrc_point,
    paired_diff_ci,
    set_mean_ci,
    set_mean_point,
)


def coin(n, p, seed):
    return (np.random.default_rng(seed).random(n) < p).astype(float)


def test_mean_ci_brackets_mean_and_is_deterministic():
    x = coin(200, 0.4, 0)
    low, high = mean_ci(x, 500, seed=7)
    assert low < x.mean() < high
    assert (low, high) == mean_ci(x, 500, seed=7)
    assert (low, high) != mean_ci(x, 500, seed=8)


def test_mean_ci_shrinks_with_more_data():
    small = mean_ci(coin(50, 0.5, 1), 500, seed=1)
    large = mean_ci(coin(2000, 0.5, 1), 500, seed=1)
    assert large[1] - large[0] < (small[1] - small[0]) / 3


@pytest.mark.parametrize("scores", [[0.7], [1.0, 1.0, 1.0], [0.0] * 5])
def test_mean_ci_degenerate(scores):
    m = float(np.mean(scores))
    assert mean_ci(scores, 1000, seed=1) == (m, m)


def test_mean_ci_zero_resamples_and_empty():
    assert mean_ci([0.0, 1.0, 1.0, 1.0], 0, seed=1) == (0.75, 0.75)
    low, high = mean_ci([], 100, seed=1)
    assert np.isnan(low) and np.isnan(high)


def test_mean_ci_matches_hand_resampling():
    # Percentile bootstrap by hand: scipy draws rng.integers(0, n, (B, n)) and takes quantiles.
    x = np.array([0.0, 1.0, 1.0, 0.5, 0.25, 1.0, 0.0])
    idx = np.random.default_rng(3).integers(0, x.size, (200, x.size))
    expected = np.quantile(x[idx].mean(axis=1), [0.025, 0.975])
    assert mean_ci(x, 200, seed=3) == pytest.approx(tuple(expected), abs=1e-12)


def test_paired_diff_ci_identical_vectors_is_zero():
    a = coin(100, 0.3, 2)
    assert paired_diff_ci(a, a.copy(), 1000, seed=1) == (0.0, 0.0)


def test_paired_diff_ci_matches_scipy_and_hand_resampling():
    a = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    b = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    got = paired_diff_ci(a, b, 300, seed=5)
    res = stats.bootstrap((a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), paired=True,
                          vectorized=True, n_resamples=300, method="percentile",
                          rng=np.random.default_rng(5))
    assert got == pytest.approx((res.confidence_interval.low, res.confidence_interval.high),
                                abs=1e-12)
    idx = np.random.default_rng(5).integers(0, a.size, (300, a.size))
    hand = np.quantile(a[idx].mean(1) - b[idx].mean(1), [0.025, 0.975])
    assert got == pytest.approx(tuple(hand), abs=1e-12)
    assert got[0] <= a.mean() - b.mean() <= got[1]


def test_paired_diff_ci_rejects_unaligned():
    with pytest.raises(ValueError, match="differ in length"):
        paired_diff_ci([1.0, 0.0], [1.0], 10, seed=1)


def test_mrc_ci_single_set_equals_scipy_paired_ratio():
    ft, base = coin(60, 0.6, 3), coin(60, 0.4, 4)

    def ratio(f, b, axis):
        return (f.mean(axis) - b.mean(axis)) / b.mean(axis)

    res = stats.bootstrap((ft, base), ratio, paired=True, vectorized=True, n_resamples=400,
                          method="percentile", rng=np.random.default_rng(11))
    assert mrc_ci([(ft, base)], 400, seed=11) == pytest.approx(
        (res.confidence_interval.low, res.confidence_interval.high), abs=1e-12)


def test_mrc_ci_contains_point_and_is_deterministic():
    pairs = [(coin(150, 0.3, 1), coin(150, 0.5, 2)),    # ratio about -0.4
             (coin(80, 0.55, 3), coin(80, 0.25, 4)),    # about +1.2
             (coin(40, 0.5, 5), np.zeros(40))]          # base 0: never in the ratio
    point = mrc_point(pairs)
    expected = np.mean([(p[0].mean() - p[1].mean()) / p[1].mean() for p in pairs[:2]])
    assert point == pytest.approx(expected)
    low, high = mrc_ci(pairs, 1000, seed=1)
    assert low < point < high
    assert (low, high) == mrc_ci(pairs, 1000, seed=1)
    assert mrc_ci(pairs, 0, seed=1) == (point, point)


def test_mrc_ci_no_usable_set():
    low, high = mrc_ci([(np.ones(5), np.zeros(5)), (np.zeros(0), np.zeros(0))], 100, seed=1)
    assert np.isnan(low) and np.isnan(high)


def test_set_mean_point_diff_keeps_zero_base_sets():
    pairs = [([1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]),   # diff 0.5, ratio undefined
             ([1.0, 0.0], [1.0, 1.0]),                       # diff -0.5, ratio -0.5
             ([], [])]                                       # no items: ignored
    assert set_mean_point(pairs, "diff") == 0.0
    assert set_mean_point(pairs[:1], "diff") == 0.5
    assert set_mean_point(pairs, "ratio") == -0.5
    assert np.isnan(set_mean_point(pairs[:1], "ratio"))
    assert np.isnan(set_mean_point([], "diff"))


def test_set_mean_ci_diff_single_set_equals_paired_diff_ci():
    a, b = coin(50, 0.6, 7), coin(50, 0.45, 8)
    assert set_mean_ci([(a, b)], 300, seed=4, statistic="diff") == pytest.approx(
        paired_diff_ci(a, b, 300, seed=4), abs=1e-12)


def test_set_mean_ci_diff_is_stratified_and_brackets_the_point():
    pairs = [(coin(100, 0.7, 1), coin(100, 0.5, 2)), (coin(30, 0.2, 3), np.zeros(30))]
    point = set_mean_point(pairs, "diff")
    assert point == pytest.approx(np.mean([p[0].mean() - p[1].mean() for p in pairs]))
    low, high = set_mean_ci(pairs, 500, seed=2, statistic="diff")
    assert low < point < high
    # By hand: each set resampled on its own, in order, from one generator.
    rng = np.random.default_rng(2)
    theta = np.zeros(500)
    for f, b in pairs:
        idx = rng.integers(0, f.size, (500, f.size))
        theta += (f[idx].mean(1) - b[idx].mean(1)) / len(pairs)
    assert (low, high) == pytest.approx(tuple(np.quantile(theta, [0.025, 0.975])), abs=1e-12)
    assert set_mean_ci(pairs, 0, seed=2, statistic="diff") == (point, point)


def test_mrc_ci_is_set_mean_ci_of_ratios_and_statistic_is_checked():
    pairs = [(coin(40, 0.6, 1), coin(40, 0.4, 2))]
    assert mrc_ci(pairs, 200, seed=3) == set_mean_ci(pairs, 200, seed=3, statistic="ratio")
    with pytest.raises(ValueError, match="statistic must be"):
        set_mean_ci(pairs, 10, seed=1, statistic="mean")
    with pytest.raises(ValueError, match="differ in length"):
        set_mean_ci([([1.0, 0.0], [1.0])], 10, seed=1, statistic="diff")


# --- the joint bootstrap ----------------------------------------------------------------------

def small_study():
    """Two eval sets, seed axis [1, 2]; units that share sets across 'checkpoints', one side
    with only one of the seeds, and one unit on a subset of its set's items."""
    rng = np.random.default_rng(11)
    uni = {"A": [f"a{i}" for i in range(6)], "B": [f"b{i}" for i in range(5)]}

    def scores(rows, n):
        return rng.random((rows, n)).round(2)

    units = [
        Unit("A", tuple(uni["A"]), scores(2, 6), scores(1, 6) + 0.1, (1, 2), None),
        Unit("A", tuple(uni["A"]), scores(2, 6), scores(1, 6) + 0.1, (1, 2), None),
        Unit("B", tuple(uni["B"]), scores(2, 5), scores(1, 5) + 0.1, (1, 2), None),
        Unit("B", tuple(uni["B"]), scores(1, 5), scores(1, 5) + 0.1, (2,), None),
        Unit("A", ("a0", "a2", "a5"), scores(1, 3) + 0.1, scores(1, 3) + 0.1, None, None),
    ]
    return uni, [1, 2], units


def brute_force(uni, seed_axis, units, n_resamples, seed, statistic):
    """The joint bootstrap by explicit loops: per replicate, one draw of each set's items and
    one of the seeds (the documented draws), shared by every unit."""
    items = {s: np.random.default_rng(derive_seed(seed, "items", s)).integers(
        0, len(ids), (n_resamples, len(ids))) for s, ids in uni.items()}
    seeds = np.random.default_rng(derive_seed(seed, "seeds")).integers(
        0, len(seed_axis), (n_resamples, len(seed_axis)))

    def side_mean(r, unit, values, side_seeds):
        col = {i: k for k, i in enumerate(unit.ids)}
        drawn = [col[uni[unit.eval_set][p]] for p in items[unit.eval_set][r]
                 if uni[unit.eval_set][p] in col]
        if not drawn:
            return None
        if side_seeds is None:
            rows = list(range(values.shape[0]))
        else:
            rows = [side_seeds.index(seed_axis[q]) for q in seeds[r]
                    if seed_axis[q] in side_seeds] or list(range(values.shape[0]))
        return sum(sum(values[s, i] for i in drawn) / len(drawn) for s in rows) / len(rows)

    thetas = []
    for r in range(n_resamples):
        stats_r = []
        for u in units:
            a, b = side_mean(r, u, u.a, u.a_seeds), side_mean(r, u, u.b, u.b_seeds)
            if a is None or b is None or (statistic == "ratio" and b == 0):
                continue
            stats_r.append(a - b if statistic == "diff" else (a - b) / b)
        if stats_r:
            thetas.append(sum(stats_r) / len(stats_r))
    return tuple(np.quantile(thetas, [0.025, 0.975])), np.array(thetas)


@pytest.mark.parametrize("statistic", ["diff", "ratio"])
def test_joint_bootstrap_matches_brute_force(statistic):
    uni, axis, units = small_study()
    joint = JointBootstrap(uni, axis, 150, seed=4)
    expected, thetas = brute_force(uni, axis, units, 150, 4, statistic)
    assert joint.thetas(units, statistic) == pytest.approx(thetas, abs=1e-12)
    point, low, high = joint.ci(units, statistic)
    assert (low, high) == pytest.approx(expected, abs=1e-12)
    # the point: every unit's seed-mean of item means
    means = [(u.a.mean(), u.b.mean()) for u in units]
    want = np.mean([a - b if statistic == "diff" else (a - b) / b for a, b in means])
    assert point == pytest.approx(want, abs=1e-12)
    assert (point, low, high) == JointBootstrap(uni, axis, 150, seed=4).ci(units, statistic)


def test_joint_difference_reads_both_groups_through_the_same_replicates():
    uni, axis, units = small_study()
    joint = JointBootstrap(uni, axis, 150, seed=9)
    _, first = brute_force(uni, axis, units[:2], 150, 9, "diff")
    _, second = brute_force(uni, axis, units[2:], 150, 9, "diff")
    point, low, high = joint.difference_ci(units[:2], units[2:])
    assert (low, high) == pytest.approx(tuple(np.quantile(first - second, [0.025, 0.975])),
                                        abs=1e-12)
    assert point == pytest.approx(np.mean([u.a.mean() - u.b.mean() for u in units[:2]])
                                  - np.mean([u.a.mean() - u.b.mean() for u in units[2:]]))


def test_joint_units_on_one_set_are_not_independent():
    """Two identical units on the same set: with one joint draw their mean's interval is the
    single unit's; resampling each independently (set_mean_ci) wrongly narrows it."""
    ids = tuple(f"q{i:02d}" for i in range(60))
    ft, base = coin(60, 0.7, 1)[None, :], coin(60, 0.4, 2)[None, :]
    unit = Unit("s", ids, ft, base, (1,), None)
    joint = JointBootstrap({"s": list(ids)}, [1], 400, seed=3)
    one_unit = joint.ci([unit], "diff")
    assert joint.ci([unit, unit], "diff") == one_unit
    _, low, high = one_unit
    ind_low, ind_high = set_mean_ci([(ft[0], base[0])] * 2, 400, seed=3, statistic="diff")
    assert ind_high - ind_low < 0.85 * (high - low)


def test_joint_seed_axis():
    ids = tuple(f"q{i}" for i in range(30))
    s1, s2, base = coin(30, 0.3, 5), coin(30, 0.9, 6), coin(30, 0.5, 7)[None, :]
    uni = {"s": list(ids)}
    # identical seeds: resampling them changes nothing
    same = Unit("s", ids, np.vstack([s1, s1]), base, (1, 2), None)
    single = Unit("s", ids, s1[None, :], base, (1,), None)
    joint = JointBootstrap(uni, [1, 2], 300, seed=2)
    assert joint.ci([same], "diff")[1:] == pytest.approx(joint.ci([single], "diff")[1:],
                                                          abs=1e-12)
    # seeds that disagree widen the interval against ignoring the seed axis
    apart = Unit("s", ids, np.vstack([s1, s2]), base, (1, 2), None)
    fixed = Unit("s", ids, np.vstack([s1, s2]), base, None, None)
    _, lo, hi = joint.ci([apart], "diff")
    _, flo, fhi = joint.ci([fixed], "diff")
    assert hi - lo > fhi - flo
    with pytest.raises(ValueError, match="seed 3"):
        joint.ci([Unit("s", ids, s1[None, :], base, (3,), None)], "diff")


def test_joint_zero_resamples_and_degenerate():
    ids = ("a", "b", "c")
    unit = Unit("s", ids, np.array([[1.0, 0.0, 1.0]]), np.array([[0.0, 0.0, 1.0]]), (1,), None)
    point, low, high = JointBootstrap({"s": list(ids)}, [1], 0, seed=1).ci([unit], "diff")
    assert point == low == high == pytest.approx(1 / 3)
    nan = JointBootstrap({"s": list(ids)}, [1], 50, seed=1).ci([], "diff")
    assert all(np.isnan(x) for x in nan)
    # a base of 0 has no ratio: left out of the point and of every replicate
    zero = Unit("s", ids, np.array([[1.0, 0.0, 1.0]]), np.zeros((1, 3)), (1,), None)
    assert all(np.isnan(x) for x in JointBootstrap({"s": list(ids)}, [1], 50, 1).ci(
        [zero], "ratio"))
