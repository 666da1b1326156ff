"""analysis/report.py: the Markdown report of an ablation, every number from the store."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.cli import main as analysis_main
from analysis.report import matrix_metrics, mean_ci, openset_metrics, study_report, trials_report
from analysis.stats import compare_variants
from analysis.store import read_trials
from btnet_core.errors import StoreError


def _row(variant: str, seed: int, **metrics: float) -> dict:
    row = {
        "variant": variant,
        "baseline": "btnet",
        "seed": seed,
        "status": "completed",
        "cpu_hours": 0.01,
        "wall_time_s": 36.0,
        "trunk_cache_hit": variant != "btnet",
        "start_time": pd.Timestamp("2026-12-03 10:00", tz="UTC") + pd.Timedelta(minutes=seed),
        "end_time": pd.Timestamp("2026-12-03 10:30", tz="UTC") + pd.Timedelta(minutes=seed),
        "cfg_method": "upsample" if variant == "upsample" else "btnet",
        "final_macs_7": 1.5e9 if variant == "btnet" else 6.3e9,
        "final_params_7": 43.6e6,
        "final_macs_112": 6.3e9,
        "final_params_112": 43.6e6,
    }
    row.update({f"final_{k}": v for k, v in metrics.items()})
    return row


def _frame() -> pd.DataFrame:
    rows = []
    for seed in range(5):
        rows.append(
            _row(
                "btnet",
                seed,
                acc_112_7=0.80 + 0.01 * seed,
                acc_7_7=0.7,
                acc_112_112=0.95,
                osi_tpir_7=0.5 + 0.02 * seed,
                osi_auc_7=0.6,
            )
        )
        rows.append(
            _row(
                "upsample",
                seed,
                acc_112_7=0.70 + 0.01 * seed + 0.002 * (seed % 2),
                acc_7_7=0.7,
                acc_112_112=0.95,
                osi_tpir_7=0.3,
                osi_auc_7=0.4,
            )
        )
    return pd.DataFrame(rows)


def _cells(text: str, first: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r}")


def test_matrix_order_is_cross_then_same_then_hr() -> None:
    """112&r by r, then r&r, then 112&112; paths other than the method's are left out."""
    cols = [
        "final_acc_112_112",
        "final_acc_7_7",
        "final_acc_112_14",
        "final_acc_112_7",
        "final_acc_112_7_branch",
        "final_acc_14_14",
    ]
    frame = pd.DataFrame({c: [0.5] for c in cols})
    assert matrix_metrics(frame) == [
        "acc_112_7",
        "acc_112_14",
        "acc_7_7",
        "acc_14_14",
        "acc_112_112",
    ]
    assert openset_metrics(
        pd.DataFrame(
            {"final_osi_auc_7": [0.1], "final_osi_tpir_14": [0.2], "final_osi_tpir_7": [0.3]}
        )
    ) == ["osi_tpir_7", "osi_tpir_14", "osi_auc_7"]


def test_mean_ci_is_the_t_interval() -> None:
    """Mean and t half-interval by hand: values 1, 2, 3 -> 2 +- 4.303 * 1 / sqrt(3)."""
    mean, half, n = mean_ci([1.0, 2.0, 3.0, math.nan])
    assert (mean, n) == (2.0, 3)
    assert half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert math.isnan(mean_ci([1.0])[1]) and mean_ci([])[2] == 0


def test_report_numbers_come_from_the_rows() -> None:
    """Matrix means, paired differences (as compare_variants), open-set and cost cells."""
    frame = _frame()
    text = trials_report(frame, "s")
    matrix = _cells(text, "`upsample`")  # first table with that row: the matrix
    assert matrix[1] == "5" and matrix[2].startswith("0.721 ± ")
    comp = compare_variants(frame, "btnet", ["acc_112_7"]).iloc[0]
    diff = [line for line in text.splitlines() if line.startswith("| `upsample` | -0.")][0]
    assert f"{comp['mean_diff']:+.3f}*" in diff
    assert f"[{comp['ci_low']:+.3f}, {comp['ci_high']:+.3f}]" in diff
    # identical differences on every seed (7&7, 112&112): no star, zero-width interval
    assert "+0.000 [+0.000, +0.000]" in diff
    assert "Open-set identification" in text and "TPIR@FPIR=0.1" in text
    assert re.search(r"\| `btnet` \| btnet \| 1\.500 \| 6\.300 \|", text)
    assert "5 of 10 trials" not in text and "10 of 10 trials completed" in text


def test_report_refuses_what_it_cannot_report() -> None:
    """A sweep (no variants), nothing completed, an unknown baseline: one clear error."""
    frame = _frame()
    with pytest.raises(StoreError, match="no variants"):
        trials_report(frame.assign(variant=None), "s")
    with pytest.raises(StoreError, match="no completed trial"):
        trials_report(frame.assign(status="error"), "s")
    with pytest.raises(StoreError, match="unknown baseline variant 'nope'; variants: btnet"):
        trials_report(frame, "s", "nope")


def test_report_of_a_stored_ablation_through_the_cli(
    ablation_store: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`results report STUDY -o FILE` writes the report of a real store; it names every variant."""
    root, study = ablation_store
    out = tmp_path / "report.md"
    assert analysis_main(["results", "report", study, "--store", str(root), "-o", str(out)]) == 0
    text = out.read_text()
    assert text == study_report(root, study)
    for variant in read_trials(root, study)["variant"].unique():
        assert f"`{variant}`" in text
    assert "| variant | seeds | 112&7 |" in text
    assert analysis_main(["results", "report", "no_such", "--store", str(root)]) != 0
    assert "no_such" in capsys.readouterr().err
