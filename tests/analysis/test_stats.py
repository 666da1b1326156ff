"""Tests of analysis/stats.py against scipy and against constructed data with known answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis.stats import compare_study, compare_variants, default_metrics, paired_summary
from analysis.synthetic_store import variant_effect
from btnet_core.errors import StoreError


def _trials(
    baseline: list[float], variant: list[float], metric: str = "acc_112_7"
) -> pd.DataFrame:
    rows = []
    for seed, (b, v) in enumerate(zip(baseline, variant, strict=True)):
        rows.append(
            {"variant": "baseline", "seed": seed, "status": "completed", f"final_{metric}": b}
        )
        rows.append({"variant": "v", "seed": seed, "status": "completed", f"final_{metric}": v})
    return pd.DataFrame(rows)


def test_paired_summary_matches_scipy() -> None:
    """Mean, t interval, paired t and Wilcoxon p-values equal scipy's on random pairs."""
    rng = np.random.default_rng(3)
    base = rng.normal(0.86, 0.01, 12)
    var = base - 0.004 + rng.normal(0, 0.003, 12)
    out = paired_summary(var - base)
    d = var - base
    lo, hi = sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
    assert out["n"] == 12
    assert out["mean_diff"] == pytest.approx(d.mean())
    assert (out["ci_low"], out["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert out["p_ttest"] == pytest.approx(sps.ttest_rel(var, base).pvalue)
    assert out["p_wilcoxon"] == pytest.approx(sps.wilcoxon(var, base).pvalue)
    assert out["flag"] == ""


def test_known_differences_give_the_hand_computed_interval() -> None:
    """Differences 0.04, 0.05, 0.06 (x2 each): mean 0.05, sd 0.008944, t(5) = 2.5706."""
    diffs = [0.04, 0.05, 0.06, 0.04, 0.05, 0.06]
    out = paired_summary(diffs)
    half = 2.570582 * math.sqrt(0.00008) / math.sqrt(6)
    assert out["mean_diff"] == pytest.approx(0.05)
    assert out["ci_low"] == pytest.approx(0.05 - half, rel=1e-5)
    assert out["ci_high"] == pytest.approx(0.05 + half, rel=1e-5)
    # Six positive differences: the exact two-sided Wilcoxon p is 2 / 2**6.
    assert out["p_wilcoxon"] == pytest.approx(2 / 64)


def test_one_seed_is_flagged_and_gives_no_interval() -> None:
    """With one pair there is no spread: NaN interval and tests, and a flag saying why."""
    out = paired_summary([0.01])
    assert math.isnan(out["ci_low"]) and math.isnan(out["p_ttest"])
    assert "too few seeds (n=1)" in out["flag"]


def test_few_seeds_are_flagged() -> None:
    """Two pairs are too few; four are few for Wilcoxon."""
    assert "too few seeds (n=2)" in paired_summary([0.01, 0.02])["flag"]
    assert "Wilcoxon p cannot fall below 0.05" in paired_summary([0.01, 0.02, 0.0, 0.03])["flag"]


def test_identical_differences_are_flagged() -> None:
    """A constant difference has no spread: the t-test is undefined and said to be."""
    out = paired_summary([0.02] * 5)
    assert math.isnan(out["p_ttest"])
    assert "identical difference" in out["flag"]


def test_compare_variants_pairs_by_seed_only() -> None:
    """Seeds missing on one side and failed trials are left out of the pairs."""
    df = _trials([0.80, 0.81, 0.82, 0.83], [0.75, 0.77, 0.76, 0.78])
    df = pd.concat(
        [
            df,
            pd.DataFrame(
                [
                    {"variant": "v", "seed": 9, "status": "completed", "final_acc_112_7": 0.1},
                    {"variant": "baseline", "seed": 1, "status": "error", "final_acc_112_7": 0.0},
                ]
            ),
        ]
    )
    df.loc[
        (df["variant"] == "baseline") & (df["seed"] == 1) & (df["status"] == "completed"), "status"
    ] = "diverged"
    row = compare_variants(df).iloc[0]
    assert row["n"] == 3
    assert row["mean_diff"] == pytest.approx(np.mean([0.75 - 0.80, 0.76 - 0.82, 0.78 - 0.83]))


def test_compare_variants_needs_a_baseline() -> None:
    """Without a variant called baseline the user is told to name one."""
    df = _trials([0.8, 0.8], [0.7, 0.7])
    df["variant"] = df["variant"].replace({"baseline": "ref"})
    with pytest.raises(StoreError, match="pass one of"):
        compare_variants(df)
    assert compare_variants(df, baseline="ref").iloc[0]["variant"] == "v"


def test_compare_variants_defaults_to_the_baseline_the_rows_name() -> None:
    """An ablation's rows name its baseline (e.g. ``btnet``); comparisons default to it."""
    df = _trials([0.8, 0.8], [0.7, 0.7])
    df["variant"] = df["variant"].replace({"baseline": "btnet"})
    df["baseline"] = "btnet"
    row = compare_variants(df).iloc[0]
    assert row["variant"] == "v" and row["baseline"] == "btnet"


def test_default_metrics_cover_paths_and_loss() -> None:
    """Every accuracy metric present is compared, method path first, then loss."""
    df = pd.DataFrame(
        {
            "final_acc_7_7_upsample": [0.5],
            "final_acc_112_7": [0.8],
            "final_loss": [1.0],
            "final_other": [1.0],
        }
    )
    assert default_metrics(df) == ["acc_112_7", "acc_7_7_upsample", "loss"]


def test_synthetic_ablation_effects_are_recovered(ablation_store: tuple[Path, str]) -> None:
    """On the generated ablation every interval holds the true effect, and the null variant
    is not significant where a real effect is."""
    root, study = ablation_store
    comp = compare_study(root, study)
    for row in comp[comp["metric"].str.startswith("acc_")].itertuples():
        a, b = (int(x) for x in row.pair.split("&"))
        truth = variant_effect(row.variant, a, b, row.path)
        assert row.ci_low - 0.003 <= truth <= row.ci_high + 0.003, row
    key = comp.set_index(["variant", "metric"])
    assert key.loc[("no_bct", "acc_112_7"), "p_ttest"] < 1e-6
    assert key.loc[("no_bct", "acc_112_7"), "mean_diff"] == pytest.approx(-0.06, abs=0.003)
    assert key.loc[("frozen_trunk_bn", "acc_112_7"), "p_ttest"] > 1e-3
    assert key.loc[("no_bct", "acc_112_7_upsample"), "mean_diff"] == pytest.approx(0.0, abs=0.003)
