"""The end-of-study summary: per-variant means with differences paired seed by seed, the best
sweep points, and the Pareto front of a multi-objective sweep."""

from __future__ import annotations

import pandas as pd

from ablations.study import parse_study
from ablations.summary import pareto_indices, summary_lines

ABLATION = parse_study(
    "name: a\nkind: ablation\nmetric: acc_112_7\nmode: max\n"
    "seeds: [0, 1]\nvariants:\n  no_bct: {compat.type: none}\n",
    "a.yaml",
)


def test_ablation_difference_is_paired_by_seed():
    """Δ is the mean of per-seed differences, over the seeds both completed."""
    rows = pd.DataFrame(
        {
            "variant": ["baseline", "baseline", "no_bct", "no_bct"],
            "seed": [0, 1, 0, 1],
            "status": ["completed", "completed", "completed", "error"],
            "final_acc_112_7": [0.80, 0.90, 0.70, None],
        }
    )
    lines = summary_lines(ABLATION, rows)
    assert "0.8500 ± 0.0707 (n=2)" in lines[1]
    assert "0.7000 ± 0.0000 (n=1)  Δ -0.1000 ± 0.0000 (n=1)" in lines[2]


def test_pareto_front_keeps_the_undominated_points():
    """(acc max, macs min): a point worse on both is dropped, trade-offs are kept."""
    values = [[0.9, 100.0], [0.8, 50.0], [0.7, 120.0], [0.9, 100.0], [float("nan"), 1.0]]
    assert pareto_indices(values, ["max", "min"]) == [0, 1, 3]


def test_sweep_summary_lists_the_best_points_first():
    """Points are ranked by their mean over seeds."""
    study = parse_study(
        "name: s\nkind: sweep\nmetric: acc_112_7\nmode: max\nseeds: [0, 1]\n"
        "space:\n  compat.type: {choice: [bct, l2]}\n",
        "s.yaml",
    )
    rows = pd.DataFrame(
        {
            "cfg_compat__type": ["bct", "bct", "l2", "l2"],
            "seed": [0, 1, 0, 1],
            "status": ["completed"] * 4,
            "final_acc_112_7": [0.6, 0.7, 0.8, 0.9],
        }
    )
    lines = summary_lines(study, rows)
    assert "compat.type=l2" in lines[1] and "acc_112_7=0.85" in lines[1]
    assert "compat.type=bct" in lines[2]
