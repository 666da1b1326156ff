"""Store rows of finished trials: the columns the store expects, final and best values by the
right direction, costs from resources x wall time, and one curve point per report."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from ablations.rows import error_line, trial_row
from ablations.study import parse_study, plan_trials
from ablations.trainable import TrialState
from analysis.store import read_curves, read_trials, write_trial

STUDY = """name: r
kind: ablation
metric: acc_112_7
mode: max
resources: {cpus: 2, gpus: 0.5}
variants:
  no_bct: {compat.type: none}
"""


def history() -> list[dict]:
    return [
        {
            "epoch": 1,
            "iteration": 10,
            "loss": 2.0,
            "acc_112_7": 0.7,
            "macs_7": 1000,
            "params_7": 50,
            "protocol": "p",
            "stage": "stage2",
        },
        {
            "epoch": 2,
            "iteration": 20,
            "loss": 1.0,
            "acc_112_7": 0.6,
            "macs_7": 1000,
            "params_7": 50,
            "protocol": "p",
            "stage": "stage2",
        },
    ]


def make_row(status: str = "completed", error: str | None = None):
    study = parse_study(STUDY, "r.yaml")
    spec = plan_trials(study)[1]
    state = TrialState(
        trial_id=spec.trial_id,
        started_at="2026-01-01T00:00:00+00:00",
        elapsed_s=3600.0,
        trunk_keys=["k1"],
        trunk_hit=True,
        history=history(),
        status=status,
        error=error,
        final=history()[-1],
    )
    end = datetime(2026, 1, 1, 1, tzinfo=timezone.utc)
    return (
        study,
        spec,
        trial_row(study, spec, study.trial_config(spec), state, status, error, end_time=end),
    )


def test_row_has_final_and_best_by_direction():
    """best_ of an accuracy is its maximum, of the loss its minimum; final_ is the last."""
    _study, _spec, (row, _curves) = make_row()
    assert row["final_acc_112_7"] == 0.6 and row["best_acc_112_7"] == 0.7
    assert row["final_loss"] == 1.0 and row["best_loss"] == 1.0
    assert row["macs_7"] == 1000 and row["params_7"] == 50
    assert "final_iteration" not in row and "final_stage" not in row


def test_row_costs_are_resources_times_wall_time():
    """One hour on 2 CPUs and half a GPU is 2 CPU-hours and 0.5 GPU-hours."""
    _study, _spec, (row, _curves) = make_row()
    assert math.isclose(row["cpu_hours"], 2.0) and math.isclose(row["gpu_hours"], 0.5)
    assert row["start_time"] == datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_row_and_curves_are_accepted_by_the_store(workdir):
    """The store takes the row as it is and gives back the same values and curves."""
    study, spec, (row, curves) = make_row()
    write_trial(workdir, row, curves)
    back = read_trials(workdir, "r").iloc[0]
    assert back.trial_id == spec.trial_id and back.variant == "no_bct" and back.seed == 0
    assert back.cfg_compat__type == "none" and back.trunk_cache_hit and back.trunk_key == "k1"
    assert back.protocol == "p" and back.iterations == 20 and back.status == "completed"
    assert back["metric"] == "acc_112_7" and back["mode"] == "max"
    c = read_curves(workdir, "r")
    acc = c[c.metric == "acc_112_7"].sort_values("iteration")
    assert acc.iteration.tolist() == [10, 20] and acc.value.tolist() == [0.7, 0.6]
    assert len(c) == 2 * 5  # epoch, loss, acc, macs, params at two reports


def test_error_line_picks_the_exception_from_a_trace():
    """The row's error is the exception line of Tune's trace, not the whole trace."""
    trace = (
        "Failure # 1 (occurred at 2026)\nTraceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    raise ValueError("bad lr")\n'
        "ValueError: bad lr\n"
    )
    assert error_line(trace) == "ValueError: bad lr"
    assert error_line(None).startswith("the trial failed")
