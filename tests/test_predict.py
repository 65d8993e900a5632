"""Known answers for amuro.analysis.predict: rank correlations of hand-made tables, the
leave-one-checkpoint-out errors of a 4-checkpoint linear case worked out by hand, the
recommendation rule, and the joint-bootstrap intervals (bracketing, narrowing with items,
the same item draw for every checkpoint)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from amuro.analysis import predict
from amuro.analysis.predict import KENDALL, POOLED, SPEARMAN
from amuro.bootstrap import JointBootstrap

STEPS = [100, 300, 800, 1200]


def signal_table(values: dict[tuple[str, str], list[float]], steps=STEPS) -> pl.DataFrame:
    """{(task, signal): one value per step}."""
    rows = [{"model": "tiny", "task": t, "step": s, "signal": g, "value": v}
            for (t, g), vals in values.items() for s, v in zip(steps, vals, strict=True)]
    return pl.DataFrame(rows)


def ft_table(values: dict[str, list[list[float]]], steps=STEPS) -> pl.DataFrame:
    """{task: per step, the score of each seed}."""
    rows = [{"model": "tiny", "task": t, "step": s, "seed": k + 1, "value": v}
            for t, per_step in values.items() for s, seeds in zip(steps, per_step, strict=True)
            for k, v in enumerate(seeds)]
    return pl.DataFrame(rows)


def get(table: pl.DataFrame, **where) -> dict:
    rows = table.filter(*[pl.col(k) == v for k, v in where.items()]).to_dicts()
    assert len(rows) == 1, rows
    return rows[0]


def test_rank_correlations_known_values():
    # fine-tuned means 1, 2, 3, 4 (two seeds each, ±0.1)
    ft = ft_table({t: [[m - 0.1, m + 0.1] for m in (1, 2, 3, 4)] for t in ("nli", "para")})
    sig = signal_table({
        ("nli", "up"): [10, 20, 30, 40],       # monotone: +1
        ("nli", "down"): [4, 3, 2, 1],         # reversed: -1 (a loss that predicts well)
        ("nli", "mid"): [1, 3, 2, 4],          # one swap: rho = 1 - 6*2/60, tau = (5-1)/6
        ("para", "up"): [0.1, 0.2, 0.25, 0.3],
        ("para", "mid"): [4, 3, 2, 1],
        ("nli", "flat"): [5, 5, 5, 5],         # constant: undefined
    })
    out = predict.rank_correlations(sig, ft)
    assert out.columns == predict.CORRELATION_COLUMNS
    for method in (SPEARMAN, KENDALL):
        assert get(out, task="nli", signal="up", method=method)["value"] == pytest.approx(1.0)
        assert get(out, task="nli", signal="down", method=method)["value"] == pytest.approx(-1)
        assert get(out, task="nli", signal="flat", method=method)["value"] is None
    assert get(out, task="nli", signal="mid", method=SPEARMAN)["value"] == pytest.approx(0.8)
    assert get(out, task="nli", signal="mid", method=KENDALL)["value"] == pytest.approx(2 / 3)
    # pooled over tasks: the mean of the per-task coefficients
    up = get(out, task=POOLED, signal="up", method=SPEARMAN)
    assert up["value"] == pytest.approx(1.0) and up["n_tasks"] == 2 and up["n_checkpoints"] == 8
    mid = get(out, task=POOLED, signal="mid", method=KENDALL)
    assert mid["value"] == pytest.approx((2 / 3 - 1) / 2)
    assert get(out, task="nli", signal="up", method=SPEARMAN)["ci_low"] is None  # no draws


def test_too_few_checkpoints_and_missing_ones():
    ft = ft_table({"nli": [[1], [2], [3], [4]]})
    sig = signal_table({("nli", "up"): [1, 2]}, steps=[100, 300])
    out = predict.rank_correlations(sig, ft)
    assert get(out, task="nli", method=SPEARMAN)["value"] is None
    assert get(out, task="nli", method=SPEARMAN)["n_checkpoints"] == 2
    assert predict.leave_one_checkpoint_out(sig, ft).height == 0


def test_vectorised_correlations_agree_with_scipy_ties_included():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, (50, 6)).astype(float)  # many ties
    y = rng.normal(size=(50, 6))
    y[:, 2] = y[:, 3]
    rho, tau = predict.spearman_rows(x, y), predict.kendall_rows(x, y)
    for r in range(50):
        if np.ptp(x[r]) == 0:
            assert np.isnan(rho[r]) and np.isnan(tau[r])
            continue
        assert rho[r] == pytest.approx(stats.spearmanr(x[r], y[r]).statistic)
        assert tau[r] == pytest.approx(stats.kendalltau(x[r], y[r]).statistic)
    x[0, 0] = np.nan
    assert np.isnan(predict.spearman_rows(x, y)[0]) and np.isnan(predict.kendall_rows(x, y)[0])


def test_leave_one_checkpoint_out_by_hand():
    # x = 0, 1, 2, 3; fine-tuned means y = 0, 1, 2, 4 with seed spreads 0.5, 0.5, 0.5, 2
    ft = ft_table({"nli": [[-0.25, 0.25], [0.75, 1.25], [1.75, 2.25], [3, 5]]})
    sig = signal_table({("nli", "s"): [0, 1, 2, 3]})
    loo = predict.leave_one_checkpoint_out(sig, ft)
    assert loo.columns == predict.LOO_COLUMNS
    # hold out x=0: line through (1,1),(2,2),(3,4): slope 3/2, intercept -2/3 -> -2/3
    # hold out x=1: (0,0),(2,2),(3,4): slope 9/7, intercept -1/7 -> 8/7
    # hold out x=2: (0,0),(1,1),(3,4): slope 19/14, intercept -1/7 -> 18/7
    # hold out x=3: (0,0),(1,1),(2,2): slope 1, intercept 0 -> 3
    predicted = [-2 / 3, 8 / 7, 18 / 7, 3]
    errors = [2 / 3, 1 / 7, 4 / 7, 1]
    slopes = [3 / 2, 9 / 7, 19 / 14, 1]
    assert loo["step"].to_list() == STEPS
    assert loo["predicted"].to_list() == pytest.approx(predicted)
    assert loo["abs_error"].to_list() == pytest.approx(errors)
    assert loo["slope"].to_list() == pytest.approx(slopes)
    assert loo["seed_spread"].to_list() == pytest.approx([0.5, 0.5, 0.5, 2])
    assert loo["error_to_spread"].to_list() == pytest.approx([4 / 3, 2 / 7, 8 / 7, 1 / 2])
    # baseline: the others' mean, 7/3, 2, 5/3, 1
    assert loo["baseline_abs_error"].to_list() == pytest.approx([7 / 3, 1, 1 / 3, 3])
    assert set(loo["n_fit"].to_list()) == {3}
    summary = predict.loo_summary(loo)
    assert summary.columns == predict.LOO_SUMMARY_COLUMNS
    row = get(summary, task="nli")
    assert row["mean_abs_error"] == pytest.approx(sum(errors) / 4)
    assert row["mean_seed_spread"] == pytest.approx(3.5 / 4)
    assert row["error_to_spread"] == pytest.approx(sum(errors) / 3.5)
    assert row["share_within_spread"] == pytest.approx(0.5)  # ratios 2/7 and 1/2
    assert get(summary, task=POOLED)["mean_abs_error"] == pytest.approx(sum(errors) / 4)


def test_leave_one_out_with_a_flat_signal_predicts_the_mean():
    ft = ft_table({"nli": [[1], [2], [3]]}, steps=[1, 2, 3])
    sig = signal_table({("nli", "s"): [5, 5, 7]}, steps=[1, 2, 3])
    loo = predict.leave_one_checkpoint_out(sig, ft)
    last = get(loo, step=3)  # others have x = 5, 5: no line, their mean 1.5
    assert last["predicted"] == pytest.approx(1.5) and last["slope"] is None
    assert last["error_to_spread"] is None  # one seed: no spread


def costs():
    tokens = pl.DataFrame({"model": "tiny", "step": STEPS,
                           "tokens": [1_000_000, 3_000_000, 8_000_000, 12_000_000]})
    seconds = pl.DataFrame({"model": "tiny", "task": "nli", "step": STEPS,
                            "seconds": [10.0, 12.0, 11.0, 13.0]})
    return tokens, seconds


def test_recommend_picks_the_earliest_checkpoint_within_the_noise():
    predictions = pl.DataFrame({"model": "tiny", "task": "nli", "signal": "s", "step": STEPS,
                                "predicted": [0.50, 0.68, 0.72, 0.70]})
    tokens, seconds = costs()
    # real fine-tunes: means 0.5, 0.66, 0.74, 0.71; seed spreads 0.04, 0.04, 0.06, 0.06
    ft = ft_table({"nli": [[0.48, 0.52], [0.64, 0.68], [0.71, 0.77], [0.68, 0.74]]})
    noise = predict.seed_noise(ft)
    assert get(noise, task="nli")["noise"] == pytest.approx(0.05)
    sig_s = pl.DataFrame({"model": "tiny", "task": "nli", "step": STEPS, "signal": "s",
                          "seconds": [1.0, 1.0, 1.0, 1.0]})
    out = predict.recommend(predictions, noise, tokens, seconds, sig_s, ft)
    assert out.columns == predict.RECOMMEND_COLUMNS
    row = get(out, signal="s")
    # best predicted 0.72 at 800; 0.68 >= 0.72 - 0.05, 0.50 is not: step 300
    assert row["best_predicted_step"] == 800 and row["recommended_step"] == 300
    assert row["tokens_saved"] == 9_000_000 and row["recommended_tokens"] == 3_000_000
    assert row["finetune_seconds_all"] == 46 and row["finetune_seconds_saved"] == 34
    assert row["signal_seconds"] == 4 and row["net_seconds_saved"] == 30
    assert row["actual_best_step"] == 800
    assert row["regret"] == pytest.approx(0.74 - 0.66)
    assert row["regret_within_noise"] is False
    tight = pl.DataFrame({"model": ["tiny"], "task": ["nli"], "noise": [0.01]})
    row = get(predict.recommend(predictions, tight, tokens, seconds), signal="s")
    assert row["recommended_step"] == 800 and row["tokens_saved"] == 4_000_000
    assert row["net_seconds_saved"] is None and row["regret"] is None


def test_recommend_reads_leave_one_out_predictions():
    ft = ft_table({"nli": [[-0.25, 0.25], [0.75, 1.25], [1.75, 2.25], [3, 5]]})
    loo = predict.leave_one_checkpoint_out(signal_table({("nli", "s"): [0, 1, 2, 3]}), ft)
    tokens, seconds = costs()
    out = predict.recommend(loo, predict.seed_noise(ft), tokens, seconds, finetuned=ft)
    # predicted -2/3, 8/7, 18/7, 3; noise 7/8: 18/7 >= 3 - 7/8 -> step 800
    assert get(out, signal="s")["recommended_step"] == 800


# --- intervals from the joint bootstrap ------------------------------------------------------


def item_tables(n_items: int, rng, shared: float, noise: float, ft_step: float = 0.1,
                sig_step: float = 0.1):
    """Per-item tables for 4 checkpoints of one task: a signal on n held-out training items
    (no seed) and the fine-tuned score on n test items for 2 seeds. Item values are an item
    effect (shared by every checkpoint, scale `shared`) + a trend over checkpoints + noise."""
    sig_rows, ft_rows = [], []
    effect_train, effect_test = rng.normal(0, shared, n_items), rng.normal(0, shared, n_items)
    for k, step in enumerate(STEPS):
        for i in range(n_items):
            sig_rows.append({"model": "tiny", "task": "nli", "step": step, "signal": "s",
                             "universe": "train:nli", "id": f"i{i:04d}", "seed": None,
                             "value": effect_train[i] + sig_step * k + rng.normal(0, noise)})
            for seed in (1, 2):
                ft_rows.append({"model": "tiny", "task": "nli", "step": step, "seed": seed,
                                "universe": "tw_nli", "id": f"t{i:04d}",
                                "value": effect_test[i] + ft_step * k + rng.normal(0, noise)})
    sig_schema = {"model": pl.String, "task": pl.String, "step": pl.Int64, "signal": pl.String,
                  "universe": pl.String, "id": pl.String, "seed": pl.Int64, "value": pl.Float64}
    ft_schema = {k: v for k, v in sig_schema.items() if k != "signal"}
    return pl.DataFrame(sig_rows, schema=sig_schema), pl.DataFrame(ft_rows, schema=ft_schema)


def correlations_with_intervals(sig_items, ft_items, n_resamples=200):
    joint = JointBootstrap(predict.universes(sig_items, ft_items), [1, 2], n_resamples, seed=5)
    sig_draws = predict.replicates(sig_items, joint, predict.SIGNAL_KEY)
    ft_draws = predict.replicates(ft_items, joint, predict.FT_KEY)
    sig = sig_items.group_by(predict.SIGNAL_KEY).agg(pl.col("value").mean())
    ft = ft_items.group_by([*predict.FT_KEY, "seed"]).agg(pl.col("value").mean())
    return predict.rank_correlations(sig, ft, sig_draws, ft_draws)


def width(row):
    return row["ci_high"] - row["ci_low"]


def test_interval_brackets_the_point_and_narrows_with_more_items():
    rng = np.random.default_rng(11)
    small = correlations_with_intervals(*item_tables(15, rng, shared=0.0, noise=1.0))
    large = correlations_with_intervals(*item_tables(600, rng, shared=0.0, noise=1.0))
    for method in (SPEARMAN, KENDALL):
        for out in (small, large):
            row = get(out, task="nli", method=method)
            assert row["ci_low"] <= row["value"] <= row["ci_high"]
            assert row["n_replicates"] == 200
        assert width(get(large, task="nli", method=method)) < width(
            get(small, task="nli", method=method))
        assert get(large, task="nli", method=method)["value"] == pytest.approx(1.0)
    pooled = get(small, task=POOLED, method=SPEARMAN)
    single = get(small, task="nli", method=SPEARMAN)
    assert (pooled["ci_low"], pooled["ci_high"]) == (single["ci_low"], single["ci_high"])


def test_every_checkpoint_is_read_through_the_same_item_draw():
    # A large item effect shared by all checkpoints, a small exact trend, no other noise: any
    # resample drawn once for all checkpoints keeps their order, so every replicate is +1.
    rng = np.random.default_rng(2)
    out = correlations_with_intervals(*item_tables(10, rng, shared=5.0, noise=0.0))
    for method in (SPEARMAN, KENDALL):
        row = get(out, task="nli", method=method)
        assert (row["value"], row["ci_low"], row["ci_high"]) == pytest.approx((1, 1, 1))


def test_replicates_resample_the_seeds_and_check_their_input():
    rng = np.random.default_rng(0)
    sig_items, ft_items = item_tables(5, rng, shared=0.0, noise=0.1)
    joint = JointBootstrap(predict.universes(sig_items, ft_items), [1, 2], 50, seed=1)
    draws = predict.replicates(ft_items, joint, predict.FT_KEY)
    assert set(draws) == {("tiny", "nli", s) for s in STEPS}
    assert all(d.shape == (50,) for d in draws.values())
    # the replicate of a seeded cell equals JointBootstrap's own resampled mean
    part = ft_items.filter(pl.col("step") == 100).sort("seed", "id")
    matrix = part["value"].to_numpy().reshape(2, 5)
    ids = sorted(set(part["id"]))
    assert np.allclose(draws[("tiny", "nli", 100)],
                       joint.side_means("tw_nli", ids, matrix, (1, 2)))
    with pytest.raises(ValueError, match="not one value per"):
        predict.replicates(ft_items.head(7), joint, predict.FT_KEY)
    sig = sig_items.group_by(predict.SIGNAL_KEY).agg(pl.col("value").mean())
    ft = ft_items.group_by([*predict.FT_KEY, "seed"]).agg(pl.col("value").mean())
    with pytest.raises(ValueError, match="both"):
        predict.rank_correlations(sig, ft, signal_draws={})


def test_signal_tables_read_amuro_signals_output():
    doc = {"task": "nli", "wall_s": 3.0, "cpu_s": 2.5, "signals": {
        "target_loss": {"ids": ["a", "b"], "values": [1.0, 3.0], "value": 2.0},
        "linear_probe": {"ids": ["a", "b"], "values": [1.0, 0.0], "value": 0.5}}}
    points, items = predict.signal_tables([("tiny", 100, doc), ("tiny", 300, doc)])
    assert points.height == 4 and items.height == 8
    assert get(points, step=300, signal="target_loss")["value"] == 2.0
    assert set(items["universe"]) == {"train:nli"} and items["seed"].null_count() == 8
    assert predict.universes(items) == {"train:nli": ["a", "b"]}
