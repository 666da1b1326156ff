"""Tests of analysis/pareto.py: the front against a brute-force definition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.pareto import pareto_mask, pareto_points, pareto_table
from analysis.store import read_trials


def _brute_force(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    n = len(cost)
    out = np.ones(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            if cost[j] <= cost[i] and acc[j] >= acc[i] and (cost[j] < cost[i] or acc[j] > acc[i]):
                out[i] = False
                break
    return out


def test_pareto_mask_equals_the_definition_on_random_points() -> None:
    """On random points with many ties the sweep agrees with the O(n^2) definition."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        cost = rng.integers(0, 8, n).astype(float)
        acc = rng.integers(0, 8, n).astype(float)
        assert np.array_equal(pareto_mask(cost, acc), _brute_force(cost, acc))


def test_pareto_mask_keeps_identical_points() -> None:
    """Two identical non-dominated points are both on the front."""
    assert pareto_mask(np.array([1.0, 1.0, 2.0]), np.array([0.9, 0.9, 0.8])).tolist() == [
        True,
        True,
        False,
    ]


def test_pareto_points_of_a_sweep_use_trials_and_paths() -> None:
    """A cheap accurate branch point dominates the costly upsample point."""
    trials = pd.DataFrame(
        {
            "trial_id": ["a", "b"],
            "status": ["completed", "completed"],
            "final_acc_112_7_branch": [0.86, 0.80],
            "macs_7_branch": [1.5e9, 1.6e9],
            "final_acc_112_7_upsample": [0.78, 0.78],
            "macs_7_upsample": [6.3e9, 6.3e9],
        }
    )
    pts = pareto_points(trials, 7, "macs")
    front = pts[pts["on_front"]]
    assert front[["label", "path"]].values.tolist() == [["a", "branch"]]
    assert len(pts) == 4


def test_ablation_points_are_variant_means(ablation_store: tuple[Path, str]) -> None:
    """For an ablation each point is a variant's mean over its seeds."""
    root, study = ablation_store
    trials = read_trials(root, study)
    pts = pareto_table(trials)
    seven = pts[
        (pts["resolution"] == 7) & (pts["cost_kind"] == "macs") & (pts["path"] == "branch")
    ]
    assert sorted(seven["label"]) == sorted(trials["variant"].unique())
    assert set(seven["n"]) == {8}
    # deeper insertion costs more MACs at 7 but is the most accurate: it is on the front.
    assert seven.set_index("label").loc["deeper_insertion", "on_front"]
