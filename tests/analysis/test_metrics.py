"""Tests of analysis/metrics.py: parsing the core's metric and cost names."""

from __future__ import annotations

from analysis.metrics import (
    acc_column,
    accuracy_metrics,
    cost_column,
    pair_label,
    parse_accuracy,
    probe_resolutions,
)


def test_parse_accuracy_reads_pair_and_path() -> None:
    """acc_{a}_{b}[_path], with or without final_/best_."""
    m = parse_accuracy("final_acc_112_7_branch")
    assert m is not None and (m.a, m.b, m.path, m.pair, m.probe) == (112, 7, "branch", "112&7", 7)
    assert parse_accuracy("acc_7_7").path == "method"  # type: ignore[union-attr]
    assert parse_accuracy("loss") is None
    assert parse_accuracy("acc_112_7_other") is None


def test_column_helpers_round_trip() -> None:
    """Column builders produce names the parser reads back."""
    assert acc_column(112, 14, "upsample") == "final_acc_112_14_upsample"
    assert cost_column("macs", 7) == "macs_7"
    assert cost_column("params", 28, "branch") == "params_28_branch"
    assert pair_label("acc_112_7_upsample") == "112&7 upsample"


def test_probe_resolutions_and_ordering() -> None:
    """Probe resolutions come from acc_112_r columns; metrics sort by path then resolution."""
    cols = ["final_acc_112_7", "final_acc_112_28", "final_acc_7_7", "final_acc_112_14_branch"]
    assert probe_resolutions(cols) == [28, 14, 7]
    names = [m.name for m in accuracy_metrics(cols)]
    assert names == ["acc_112_28", "acc_112_7", "acc_7_7", "acc_112_14_branch"]
