"""The study searcher: fixed plans skip what the store holds; Optuna points run at every seed,
Optuna learns the mean over seeds, and a resumed search starts from what it knew."""

from __future__ import annotations

import optuna
from ray.tune.search import Searcher

from ablations.searcher import FinishedTrial, StudySearcher
from ablations.study import parse_study, plan_trials

TPE = """name: t
kind: sweep
metric: acc_112_7
mode: max
search: {algorithm: tpe, seed: 3}
samples: 4
seeds: [0, 1]
space:
  compat.type: {choice: [bct, l2]}
  compat.weight: {uniform: [0.5, 2.0], when: {compat.type: l2}}
  stage2.lr: {loguniform: [0.001, 0.1]}
"""
ABLATION = """name: a
kind: ablation
metric: acc_112_7
mode: max
seeds: [0, 1]
variants:
  no_bct: {compat.type: none}
"""


def drain(searcher: StudySearcher) -> list[dict]:
    out = []
    for i in range(100):
        cfg = searcher.suggest(f"tune{i}")
        if cfg is Searcher.FINISHED:
            return out
        out.append(cfg)
    raise AssertionError("the searcher never finished")


def test_fixed_plan_leaves_out_trials_already_in_the_store():
    """A resumed ablation hands Tune only the trials the store does not hold."""
    study = parse_study(ABLATION, "a.yaml")
    plan = plan_trials(study)
    done = {plan[0].trial_id: FinishedTrial(plan[0].trial_id, plan[0].group, {}, None)}
    searcher = StudySearcher(study, done)
    assert searcher.total_remaining == 3 and searcher.planned_total == 4
    handed = [c["trial_id"] for c in drain(searcher)]
    assert handed == [s.trial_id for s in plan[1:]]


def test_each_optuna_point_runs_at_every_seed():
    """Trials come in groups: one point, then the same point at the next seed."""
    study = parse_study(TPE, "t.yaml")
    searcher = StudySearcher(study)
    configs = drain(searcher)
    assert len(configs) == 4 * 2
    for a, b in zip(configs[::2], configs[1::2], strict=True):
        assert a["overrides"] == b["overrides"] and (a["seed"], b["seed"]) == (0, 1)
        assert a["group"] == b["group"] and a["trial_id"] != b["trial_id"]
        assert ("compat.weight" in a["overrides"]) == (a["overrides"]["compat.type"] == "l2")


def test_optuna_learns_the_mean_over_seeds_once_all_have_finished():
    """Optuna is told one value per point: the mean of its seeds' final metric."""
    study = parse_study(TPE, "t.yaml")
    searcher = StudySearcher(study)
    first = searcher.suggest("a")
    second = searcher.suggest("b")
    assert first["group"] == second["group"]
    searcher.on_trial_complete("a", {"acc_112_7": 0.6, "btnet_status": "completed"})
    assert not searcher.optuna_study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    searcher.on_trial_complete("b", {"acc_112_7": 0.8, "btnet_status": "completed"})
    done = searcher.optuna_study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(done) == 1 and abs(done[0].value - 0.7) < 1e-9


def test_a_point_whose_seeds_all_failed_is_a_failed_optuna_trial():
    """Errors and divergences are not averaged in; all failing makes the point FAIL."""
    study = parse_study(TPE, "t.yaml")
    searcher = StudySearcher(study)
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.on_trial_complete("a", error=True)
    searcher.on_trial_complete("b", {"acc_112_7": float("nan"), "btnet_status": "diverged"})
    failed = searcher.optuna_study.get_trials(states=[optuna.trial.TrialState.FAIL])
    assert len(failed) == 1


def test_two_objectives_are_told_together():
    """A multi-objective study tells Optuna both values of a point."""
    text = TPE.replace("metric: acc_112_7", "metric: [acc_112_7, macs_7]").replace(
        "mode: max", "mode: [max, min]"
    )
    study = parse_study(text, "t.yaml")
    searcher = StudySearcher(study)
    assert searcher.metric == ["acc_112_7", "macs_7"]
    searcher.suggest("a")
    searcher.suggest("b")
    for tid, acc in (("a", 0.5), ("b", 0.7)):
        searcher.on_trial_complete(
            tid, {"acc_112_7": acc, "macs_7": 100.0, "btnet_status": "completed"}
        )
    (trial,) = searcher.optuna_study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert trial.values == [0.6, 100.0]


def test_resumed_search_knows_finished_points_and_runs_missing_seeds_first():
    """Finished points go into Optuna; a point missing a seed runs that seed before new ones."""
    study = parse_study(TPE, "t.yaml")
    original = StudySearcher(study)
    configs = drain(original)
    groups: dict[str, list[dict]] = {}
    for c in configs:
        groups.setdefault(c["group"], []).append(c)
    (g1, g2, *_rest) = list(groups.values())
    finished = {
        c["trial_id"]: FinishedTrial(c["trial_id"], c["group"], c["overrides"], (0.5 + i / 10,))
        for i, c in enumerate(g1 + g2[:1])
    }
    resumed = StudySearcher(study, finished)
    known = resumed.optuna_study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(known) == 1 and known[0].params == original._groups[g1[0]["group"]].params
    first = resumed.suggest("x")
    assert first["trial_id"] == g2[1]["trial_id"]
    assert resumed.total_remaining == 2 * 2  # 4 samples, 2 points known: 2 new x 2 seeds
    resumed.on_trial_complete("x", {"acc_112_7": 0.9, "btnet_status": "completed"})
    assert len(resumed.optuna_study.get_trials(states=[optuna.trial.TrialState.COMPLETE])) == 2
