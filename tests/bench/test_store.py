"""bench/store.py: the Ray side holds the same study, and a different answer is caught."""

from __future__ import annotations

import datetime as _dt

import pandas as pd
import pytest

from bench.store import _nested_config, _results, check_same


def _answer(n: int = 4, acc: float = 0.86) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "study": ["ablation-0", "sweep-1"],
            "variant": ["baseline", None],
            "n": [n, 7],
            "acc": [acc, 0.85],
            "gain": [0.17, 0.16],
            "gpu": [1.5, 6.0],
        }
    )


def test_check_same_accepts_equal_answers_in_any_order() -> None:
    """Row order and None vs NaN for a sweep's missing variant do not matter."""
    theirs = _answer().iloc[::-1].reset_index(drop=True)
    theirs.loc[theirs["study"] == "sweep-1", "variant"] = float("nan")
    check_same(_answer(), theirs)


@pytest.mark.parametrize("other", [_answer(n=5), _answer(acc=0.87)])
def test_check_same_refuses_a_different_answer(other: pd.DataFrame) -> None:
    """A different count or mean means the two sides did not read the same study."""
    with pytest.raises(RuntimeError, match="answered the query differently"):
        check_same(_answer(), other)


def test_nested_config_rebuilds_what_tune_held() -> None:
    """cfg_ columns become the nested config (lists decoded), plus variant and seed."""
    row = {
        "cfg_model__insertion__7": 1,
        "cfg_stage2__lr": 0.02,
        "cfg_data__resolutions": "[7, 14]",
        "variant": "no_bct",
        "seed": 3,
        "final_acc_112_7": 0.8,
    }
    assert _nested_config(row) == {
        "model": {"insertion": {"7": 1}},
        "stage2": {"lr": 0.02},
        "data": {"resolutions": [7, 14]},
        "variant": "no_bct",
        "seed": 3,
    }


def _row(status: str) -> dict:
    return {
        "trial_id": "t0",
        "status": status,
        "iterations": 3,
        "wall_time_s": 900.0,
        "start_time": _dt.datetime(2025, 3, 1, tzinfo=_dt.timezone.utc),
        "final_acc_112_7": 0.86,
        "final_loss": 1.9,
        "macs_7_branch": 1_517_000_000,
    }


def test_results_of_a_completed_trial_end_with_its_final_metrics() -> None:
    """One line per interval; the last is done, completed, with the final values and time."""
    curve = [{"iteration": 1, "metric": "acc_112_7", "value": 0.6}]
    lines = _results(_row("completed"), curve, "abcde_00000", {"seed": 0})
    assert [x["training_iteration"] for x in lines] == [1, 2, 3]
    assert lines[0]["acc_112_7"] == 0.6 and lines[0]["btnet_status"] == "running"
    last = lines[-1]
    assert last["done"] is True and last["btnet_status"] == "completed"
    assert last["acc_112_7"] == 0.86 and last["time_total_s"] == 900.0
    assert last["config"] == {"seed": 0}


def test_results_of_a_failed_trial_are_empty() -> None:
    """A trial that raised before reporting leaves an empty result.json, as in Tune."""
    assert _results(_row("error"), [], "abcde_00001", {}) == []
