"""The Ray Tune searcher of a study: what trial runs next.

One searcher serves every kind of study. Ablations, grid and random sweeps have a fixed plan
(:func:`ablations.study.plan_trials`): the searcher hands out its trials in order, leaving out
those the result store already holds, so a resumed study runs only what is missing. TPE and
NSGA-II sweeps ask Optuna for points; each point is run at every seed of the study (one
trial per seed, the same seeds for every point) and Optuna is told the mean over seeds once
all of them have finished. On resume, the finished points are added to the Optuna study
from the result store (their values) and the trial records (their parameters), so the search
continues from what it knew rather than from scratch.

Parameters go to Optuna under their dotted config key; a choice whose values are not plain
scalars (a list of resolutions, say) is presented to Optuna as the JSON text of each value.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ray.tune.search import Searcher

from ablations.trials import Param, Study, TrialSpec, plan_trials

log = logging.getLogger(__name__)

# Consecutive suggestions of points already tried before the search counts as exhausted
# (a small discrete space that TPE has fully covered).
MAX_DUPLICATE_ASKS = 25


@dataclass(frozen=True)
class FinishedTrial:
    """A trial the result store holds, as far as the searcher needs to know it.

    Attributes:
        trial_id: Its id.
        group: Its group (the point it ran, across seeds).
        overrides: The point's config values.
        values: Its final value of each of the study's metrics (None when it failed).
    """

    trial_id: str
    group: str
    overrides: dict[str, Any]
    values: tuple[float, ...] | None


@dataclass
class _Group:
    """One point of an Optuna search and its trials, one per seed."""

    overrides: dict[str, Any]
    params: dict[str, Any]
    trial_ids: list[str]
    ot_trials: list[Any] = field(default_factory=list)  # asked trials waiting to be told
    values: dict[str, tuple[float, ...] | None] = field(default_factory=dict)
    added: bool = False  # given to Optuna as an earlier, finished point

    @property
    def complete(self) -> bool:
        return all(t in self.values for t in self.trial_ids)

    def mean(self) -> list[float] | None:
        """Per-metric mean over the seeds whose values are all finite; None if none are."""
        good = [v for v in self.values.values() if v is not None]
        if not good:
            return None
        return [sum(v[i] for v in good) / len(good) for i in range(len(good[0]))]


class StudySearcher(Searcher):
    """Feeds a study's trials to Ray Tune.

    Args:
        study: The validated study.
        finished: Trials already in the result store, by id; they are not run again.
        on_new_trial: Called with each trial spec as it is handed to Tune (the runner writes
            the trial's record then).
    """

    def __init__(
        self,
        study: Study,
        finished: Mapping[str, FinishedTrial] | None = None,
        on_new_trial: Callable[[TrialSpec], None] | None = None,
    ) -> None:
        metric: Any = list(study.metrics) if study.multi_objective else study.metrics[0]
        mode: Any = list(study.modes) if study.multi_objective else study.modes[0]
        super().__init__(metric=metric, mode=mode)
        self.study = study
        self.finished = dict(finished or {})
        self.on_new_trial = on_new_trial
        self._queue: deque[TrialSpec] = deque()
        self._live: dict[str, TrialSpec] = {}  # Tune's trial id -> spec
        self._groups: dict[str, _Group] = {}
        self._optuna: Any = None  # the Optuna study, made on first use (see optuna_study)
        self._uses_optuna = study.kind == "sweep" and study.algorithm in ("tpe", "nsga2")
        self._points_left = 0
        self._exhausted = False
        self.plan_ids: set[str] | None = None  # every trial of a fixed plan; None for Optuna
        if self._uses_optuna:
            self._setup_groups()
        else:
            plan = plan_trials(study)
            self.plan_ids = {s.trial_id for s in plan}
            self._queue.extend(s for s in plan if s.trial_id not in self.finished)

    # -- what is left ----------------------------------------------------------------------
    @property
    def total_remaining(self) -> int:
        """Trials still to run (an upper bound for Optuna searches)."""
        return len(self._queue) + self._points_left * len(self.study.seeds)

    @property
    def planned_total(self) -> int:
        """Trials of the whole study, finished ones included."""
        if self.plan_ids is not None:
            return len(self.plan_ids)
        if self._exhausted:  # the space had fewer distinct points than samples asked for
            return len(self._groups) * len(self.study.seeds)
        return (self.study.samples or 0) * len(self.study.seeds)

    # -- Tune's Searcher interface ---------------------------------------------------------
    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        return True  # the study fixed metric and mode already

    def suggest(self, trial_id: str) -> dict | None:
        if not self._queue and self._uses_optuna:
            self._ask_point()
        if not self._queue:
            return Searcher.FINISHED
        spec = self._queue.popleft()
        self._live[trial_id] = spec
        if self.on_new_trial is not None:
            self.on_new_trial(spec)
        # The resolved config travels with the trial: validated here, trusted in the worker.
        return {**spec.to_tune(), "config": self.study.trial_config(spec).to_dict()}

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        spec = self._live.pop(trial_id, None)
        if spec is None or not self._uses_optuna:
            return
        group = self._groups.get(spec.group)
        if group is None:
            return
        group.values[spec.trial_id] = None if error else self._values(result)
        if group.complete:
            self._tell(group)

    def save(self, checkpoint_path: str) -> None:
        """What the searcher has handed out, as JSON, for a person to inspect.

        Resuming does not read it: ``--resume`` rebuilds the searcher from the result store
        and the trial records, which are never pickles.
        """
        state = {
            "queued": [s.trial_id for s in self._queue],
            "running": [s.trial_id for s in self._live.values()],
            "points_left": self._points_left,
        }
        with open(checkpoint_path, "w") as f:
            json.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError(
            "a study resumes from its result store (btnet-lab sweep "
            "--resume), not from Tune's searcher state"
        )

    # -- Optuna ----------------------------------------------------------------------------
    @property
    def optuna_study(self) -> Any:
        """The Optuna study, created on first use.

        Created late on purpose: Tune copies its searcher before the run starts, and
        NSGA-II's sampler holds a lock that cannot be copied. Finished points of an earlier
        run are added to it here.
        """
        if self._optuna is None:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = self.study
            directions = ["maximize" if m == "max" else "minimize" for m in study.modes]
            self._optuna = optuna.create_study(directions=directions, sampler=self._sampler())
            for group in self._groups.values():
                if group.complete:
                    self._tell(group)
        return self._optuna

    def _sampler(self) -> Any:
        import optuna

        study = self.study
        known = sum(1 for g in self._groups.values() if g.complete)
        # A resumed search re-seeds its sampler by how much it has seen, so that it does not
        # propose again the points it proposed first time round.
        seed = study.search_seed + 7919 * known
        if study.algorithm == "tpe":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "group" is flagged experimental
                return optuna.samplers.TPESampler(
                    seed=seed,
                    multivariate=True,
                    group=any(p.when for p in study.space),
                    n_startup_trials=min(10, max(2, (study.samples or 2) // 3)),
                )
        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=max(2, min(50, (study.samples or 4) // 2))
        )

    def _setup_groups(self) -> None:
        """Points of an earlier run from the store; their missing seeds are queued first."""
        study = self.study
        self._distributions = {p.key: _distribution(p) for p in study.space}
        groups: dict[str, list[FinishedTrial]] = {}
        for t in self.finished.values():
            groups.setdefault(t.group, []).append(t)
        for name, members in groups.items():
            overrides = members[0].overrides
            specs = [study.make_spec(overrides, s) for s in study.seeds]
            group = _Group(overrides, _encode(study.space, overrides), [s.trial_id for s in specs])
            for m in members:
                group.values[m.trial_id] = m.values
            self._groups[name] = group
            if not group.complete:
                self._queue.extend(s for s in specs if s.trial_id not in group.values)
        self._points_left = max(0, (study.samples or 0) - len(groups))

    def _ask_point(self) -> None:
        study = self.study
        duplicates = 0
        while self._points_left > 0 and not self._exhausted:
            ot_trial = self.optuna_study.ask()
            overrides = _sample(ot_trial, study.space)
            specs = [study.make_spec(overrides, s) for s in study.seeds]
            group = self._groups.get(specs[0].group)
            if group is not None:
                # The sampler proposed a point already tried: it gets that point's result.
                group.ot_trials.append(ot_trial)
                if group.complete:
                    self._tell(group)
                duplicates += 1
                if duplicates >= MAX_DUPLICATE_ASKS:
                    log.info(
                        "study %s: the sampler keeps proposing points already tried; "
                        "the space looks exhausted",
                        study.name,
                    )
                    self._exhausted = True
                continue
            # Only a new point counts as one of the study's samples; a repeat is told the
            # repeated point's result and the sampler is asked again.
            self._points_left -= 1
            group = _Group(
                overrides, dict(ot_trial.params), [s.trial_id for s in specs], [ot_trial]
            )
            self._groups[specs[0].group] = group
            self._queue.extend(specs)
            return

    def _values(self, result: Mapping[str, Any] | None) -> tuple[float, ...] | None:
        if not result or result.get("btnet_status", "completed") != "completed":
            return None
        values = []
        for m in self.study.metrics:
            v = result.get(m)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                return None
            values.append(float(v))
        return tuple(values)

    def _tell(self, group: _Group) -> None:
        import optuna

        ot_study = self.optuna_study
        mean = group.mean()
        state = optuna.trial.TrialState.COMPLETE if mean else optuna.trial.TrialState.FAIL
        pending, group.ot_trials = group.ot_trials, []
        if not pending:  # a point finished before a resume: Optuna never asked for it
            if group.added:
                return
            group.added = True
            try:
                ot_study.add_trial(
                    optuna.trial.create_trial(
                        params=group.params,
                        distributions=self._distributions_of(group.params),
                        values=mean,
                        state=state,
                    )
                )
            except ValueError as exc:  # the space changed since: the point is outside it
                log.warning(
                    "study %s: cannot give the searcher the earlier point %s (%s)",
                    self.study.name,
                    group.overrides,
                    exc,
                )
            return
        for ot_trial in pending:
            ot_study.tell(ot_trial, mean, state=state)

    def _distributions_of(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._distributions[k] for k in params}


def _distribution(p: Param) -> Any:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if p.kind in ("choice", "grid"):
        return CategoricalDistribution(_choices(p))
    if p.kind == "randint":
        return IntDistribution(int(p.low), int(p.high), step=int(p.q or 1))
    if p.kind == "loguniform":
        return FloatDistribution(float(p.low), float(p.high), log=True)
    return FloatDistribution(float(p.low), float(p.high), step=p.q)


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _choices(p: Param) -> list[Any]:
    if all(_plain(v) for v in p.values):
        return list(p.values)
    return [json.dumps(v, sort_keys=True) for v in p.values]


def _sample(trial: Any, space: Sequence[Param]) -> dict[str, Any]:
    """Draw a point with an Optuna trial (define-by-run: conditional keys only when they
    apply)."""
    point: dict[str, Any] = {}
    for p in space:
        if not p.applies(point):
            continue
        if p.kind in ("choice", "grid"):
            raw = trial.suggest_categorical(p.key, _choices(p))
            point[p.key] = raw if all(_plain(v) for v in p.values) else json.loads(raw)
        elif p.kind == "randint":
            point[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), step=int(p.q or 1))
        elif p.kind == "loguniform":
            point[p.key] = trial.suggest_float(p.key, float(p.low), float(p.high), log=True)
        else:
            point[p.key] = trial.suggest_float(p.key, float(p.low), float(p.high), step=p.q)
    return point


def _encode(space: Sequence[Param], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A point's values as Optuna parameters (the inverse of :func:`_sample`)."""
    out = {}
    for p in space:
        if p.key not in overrides:
            continue
        value = overrides[p.key]
        if p.kind in ("choice", "grid") and not all(_plain(v) for v in p.values):
            value = json.dumps(value, sort_keys=True)
        out[p.key] = value
    return out
