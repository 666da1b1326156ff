"""bench/sweep_overhead.py: the arithmetic of overhead, efficiency and the marginal cost."""

from __future__ import annotations

import pytest

from bench.sweep_overhead import Marginal, SystemResult


def _result(trials: int, wall: float, compute: float) -> SystemResult:
    return SystemResult("x", 2, wall, 5.0, compute, trials)


def test_overhead_and_efficiency_of_one_sweep() -> None:
    """8 trials of 30 s on 2 slots in 130 s: 20 slot-s of overhead, 2.5 s a trial."""
    r = _result(8, 130.0, 240.0)
    assert r.overhead_total_s == pytest.approx(20.0)
    assert r.overhead_per_trial_s == pytest.approx(2.5)
    assert r.efficiency == pytest.approx(240 / 260)
    assert r.overhead_after_start_s == pytest.approx(((130 - 5) * 2 - 240) / 8)


def test_marginal_cost_separates_the_fixed_cost() -> None:
    """A sweep costing 12 slot-s fixed plus 0.5 s per trial is recovered from two sizes."""
    small = _result(8, (8 * 1.0 + 12 + 0.5 * 8) / 2, 8.0)
    large = _result(24, (24 * 1.0 + 12 + 0.5 * 24) / 2, 24.0)
    m = Marginal(small, large)
    assert m.per_trial_s == pytest.approx(0.5)
    assert m.fixed_s == pytest.approx(12.0)
    assert m.efficiency_at(30.0) == pytest.approx(30 / 30.5)


def test_compute_beyond_the_slot_time_is_refused() -> None:
    """More trial compute than wall x slots means compute was counted twice: an error."""
    from bench.sweep_overhead import _checked

    assert _checked(_result(8, 130.0, 240.0)).trials == 8
    with pytest.raises(RuntimeError, match="counted from elsewhere"):
        _checked(_result(8, 100.0, 240.0))
