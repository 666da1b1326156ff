"""bench/trunk_reuse.py: the two studies it compares differ only in whether trials share a
trunk key (no Ray here; the end-to-end run is in test_bench_smoke.py)."""

from __future__ import annotations

from ablations.study import parse_study, plan_trials
from bench.trunk_reuse import study_text
from btnet_core.config import trunk_key


def _trunk_keys(shared: bool) -> list[str]:
    study = parse_study(study_text("t", 4, shared), "t.yaml")
    return [trunk_key(study.trial_config(spec)) for spec in plan_trials(study)]


def test_as_written_every_trial_shares_one_trunk() -> None:
    """The K trials of the study as written have one trunk key between them."""
    keys = _trunk_keys(shared=True)
    assert len(keys) == 4 and len(set(keys)) == 1


def test_defeated_sharing_gives_every_trial_its_own_trunk() -> None:
    """With a distinct stage1.lr per variant, every trial has its own trunk key."""
    keys = _trunk_keys(shared=False)
    assert len(keys) == 4 and len(set(keys)) == 4


def test_too_few_trials_is_one_line_and_exit_2(bench_error) -> None:
    """--trials 1 (nothing to share) is one line on stderr, exit 2, nothing written."""
    assert bench_error("bench.trunk_reuse", "--trials", "1") == [
        "bench.trunk_reuse: error: --trials: 1 is not allowed; allowed: 2 or more"
    ]
