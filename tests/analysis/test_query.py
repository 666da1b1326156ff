"""Tests of analysis/query.py: leaderboards and output formats."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.query import leaderboard, render_table, write_frame
from analysis.store import read_trials
from btnet_core.errors import StoreError


def test_sweep_leaderboard_ranks_completed_trials_first(sweep_store: tuple[Path, str]) -> None:
    """Ranks 1..n follow the objective; failed trials follow without a rank."""
    root, study = sweep_store
    board, heading = leaderboard(read_trials(root, study), top=None)
    assert "objective acc_112_7 (max)" in heading
    done = board[board["status"] == "completed"]
    assert done["rank"].tolist() == list(range(1, len(done) + 1))
    assert done["acc_112_7"].is_monotonic_decreasing
    assert board["rank"].iloc[len(done) :].isna().all()
    assert "stage2.lr" in board.columns and "model.arch" not in board.columns


def test_ablation_leaderboard_has_paired_differences(ablation_store: tuple[Path, str]) -> None:
    """Each variant row has its mean over seeds and its paired difference to the baseline."""
    root, study = ablation_store
    board, _ = leaderboard(read_trials(root, study))
    row = board.set_index("variant").loc["no_bct"]
    assert row["seeds"] == 8 and row["pairs"] == 8
    assert row["diff"] == pytest.approx(-0.06, abs=0.004)
    assert board.set_index("variant").loc["baseline", "flag"] == "baseline"


def test_render_table_limits_rows_and_formats_values() -> None:
    """Numbers to 4 significant digits, NaN blank, a closing line for left-out rows."""
    df = pd.DataFrame({"x": [0.123456, np.nan, 3.0], "name": ["a", "b", "c"]})
    text = render_table(df, max_rows=2)
    lines = text.splitlines()
    assert lines[2].split() == ["0.1235", "a"]
    assert lines[3].split() == ["b"]
    assert lines[-1].startswith("... 1 more rows (of 3)")


def test_write_frame_csv_to_stream() -> None:
    """CSV goes to the given stream without an index."""
    buf = io.StringIO()
    write_frame(pd.DataFrame({"a": [1, 2]}), "csv", stream=buf)
    assert buf.getvalue().splitlines() == ["a", "1", "2"]


def test_write_frame_refuses_unknown_format() -> None:
    """An unknown format names the allowed ones."""
    with pytest.raises(StoreError, match="allowed: table, csv, json, parquet"):
        write_frame(pd.DataFrame(), "xlsx")
