"""Tests of analysis/synthetic_store.py: the generated stores follow the conventions."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.store import read_curves, read_trials
from analysis.synthetic_store import (
    ABLATION_VARIANTS,
    ablation_rows,
    generate_store,
    sweep_objective,
    variant_effect,
)


def test_ablation_is_a_grid_of_variants_and_seeds(tmp_path: Path) -> None:
    """12 trials over 5 variants: seeds 0..2, the last seed partly filled."""
    study = generate_store(tmp_path, 12, kind="ablation", seed=1, failure_rate=0.0)
    df = read_trials(tmp_path, study)
    assert len(df) == 12
    assert set(df["variant"]) == set(ABLATION_VARIANTS)
    assert sorted(df["seed"].unique()) == [0, 1, 2]
    assert (df["kind"] == "ablation").all() and (df["metric"] == "acc_112_7").all()


def test_generation_is_deterministic() -> None:
    """The same seed gives the same rows."""
    a, _ = ablation_rows(10, seed=4)
    b, _ = ablation_rows(10, seed=4)
    assert a == b


def test_failures_have_errors_and_no_accuracy(tmp_path: Path) -> None:
    """Errored and diverged trials carry an error message and no final accuracy."""
    study = generate_store(tmp_path, 60, kind="sweep", seed=2, failure_rate=0.5)
    df = read_trials(tmp_path, study)
    failed = df[df["status"] != "completed"]
    assert len(failed) > 10
    assert failed["error"].notna().all()
    assert failed["final_acc_112_7"].isna().all()


def test_curves_end_at_the_final_value(tmp_path: Path) -> None:
    """The last point of a trial's objective curve is its final value; best is its maximum."""
    study = generate_store(tmp_path, 5, kind="ablation", seed=0, failure_rate=0.0)
    df = read_trials(tmp_path, study).set_index("trial_id")
    curves = read_curves(tmp_path, study, metrics=["acc_112_7"])
    for tid, part in curves.groupby("trial_id"):
        assert part["value"].iloc[-1] == pytest.approx(df.loc[tid, "final_acc_112_7"])
        assert part["value"].max() == pytest.approx(df.loc[tid, "best_acc_112_7"])


def test_known_effects() -> None:
    """The documented effects: no_bct hurts cross-resolution matching, upsample is untouched."""
    assert variant_effect("no_bct", 112, 7) == -0.06
    assert variant_effect("no_bct", 112, 7, "upsample") == 0.0
    assert variant_effect("frozen_trunk_bn", 14, 14) == 0.0
    assert sweep_objective(1e-2, 1.0, 2, "adaface") > sweep_objective(1e-4, 1.0, 2, "adaface")


def test_per_trial_mode_writes_small_files(tmp_path: Path) -> None:
    """per_trial=True writes through write_trial, one file per trial (as a sweep does)."""
    generate_store(tmp_path, 4, kind="sweep", seed=0, per_trial=True)
    assert len(list((tmp_path / "trials").rglob("t-*.parquet"))) == 4
