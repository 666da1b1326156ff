"""bench/model_cost.py: the latency ratio's noise comes from paired (same-round) samples."""

from __future__ import annotations

from bench._common import summarize
from bench.model_cost import Case, Row


def _row(branch: list[float], upsample: list[float], macs_branch: int = 25) -> Row:
    return Row(
        Case("r18", 0.25, ((1, len(branch)),)),
        1,
        7,
        macs_branch,
        100,
        summarize(branch),
        summarize(upsample),
        summarize(upsample),
        resize_s=0.0,
        compute_branch=0.9,
        compute_trunk=0.9,
        stage1_branch=0.01,
        stage1_trunk=0.3,
    )


def test_paired_ratios_cancel_load_that_hits_both_paths() -> None:
    """Latencies that swing together (load bursts) give a tight ratio, not a wide one."""
    row = _row([1.0, 2.0, 4.0, 8.0, 1.0], [4.0, 8.0, 16.0, 32.0, 4.0])
    assert row.latency_ratio == 0.25
    assert row.ratio_quartiles == (0.25, 0.25)
    assert row.within_noise  # the MAC ratio is 25/100


def test_a_ratio_away_from_the_macs_is_not_called_noise() -> None:
    """A consistent deviation lies outside the paired IQR and is explained, not excused."""
    row = _row([2.0, 2.1, 1.9, 2.0, 2.05], [4.0, 4.0, 4.0, 4.0, 4.0])
    assert row.deviation > 0.9
    assert not row.within_noise
