"""bench/asha.py: the two sweeps it compares differ only in the scheduler (no Ray here; the
end-to-end run is in test_bench_smoke.py)."""

from __future__ import annotations

from ablations.study import parse_study, plan_trials
from bench.asha import FULL, QUICK, study_text


def test_grid_and_asha_plan_the_same_trials() -> None:
    """Same points, seeds and base config; only ASHA's scheduler is added."""
    for plan in (QUICK, FULL):
        grid = parse_study(study_text("g", plan, asha=False), "g.yaml")
        asha = parse_study(study_text("g", plan, asha=True), "g.yaml")
        assert [s.trial_id for s in plan_trials(grid)] == [s.trial_id for s in plan_trials(asha)]
        assert len(plan_trials(grid)) == plan.points
        assert grid.base == asha.base and grid.base["stage2"]["epochs"] == plan.epochs
        assert grid.scheduler.type != "asha" and asha.scheduler.type == "asha"
        assert (asha.scheduler.grace_period, asha.scheduler.reduction_factor) == (1, 2)


def test_a_bad_tolerance_is_one_line_and_exit_2(bench_error) -> None:
    """--tolerance outside [0, 1) is one line on stderr, exit 2, nothing written."""
    assert bench_error("bench.asha", "--tolerance", "2") == [
        "bench.asha: error: --tolerance: 2.0 is not allowed; allowed: 0 <= t < 1"
    ]
