"""What a study runs: its trials, how a space is drawn from, and what each trial reports.

The data model of a validated study (:class:`Study`, with its :class:`Param` space and its
:class:`TrialSpec` trials) and the expansion of a study into trials: ablation variants x seeds,
every point of a grid, or the points of a random search, each a pure function of the study
file. Parsing and validation live in :mod:`ablations.study`, which re-exports all of this.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from btnet_core.config import Config, config_hash

# Which method reports which paths' metrics (see btnet_core.train): btnet embeds through its
# branches and also evaluates the upsample path; the baselines only have their own path.
_METHOD_PATHS = {
    "btnet": ("branch", "upsample"),
    "upsample": ("upsample",),
    "multires": ("upsample",),
    "separate": ("separate",),
}


@dataclass(frozen=True)
class Param:
    """One entry of a sweep's space: a btnet_core config key and how to draw its value.

    Attributes:
        key: Dotted config key, e.g. ``"distill.feature_weight"``.
        kind: ``choice``, ``grid``, ``uniform``, ``loguniform`` or ``randint``.
        values: The values of ``choice`` and ``grid``.
        low: Lower bound of ``uniform``, ``loguniform`` and ``randint`` (inclusive).
        high: Upper bound (inclusive).
        q: Step of a quantised ``uniform`` or ``randint``; None when continuous.
        when: Conditions ``(key, allowed values)`` that must all hold for the key to be set;
            otherwise the trial keeps the base config's value.
        line: Line of the entry in the study file.
    """

    key: str
    kind: str
    values: tuple[Any, ...] = ()
    low: float | int | None = None
    high: float | int | None = None
    q: float | int | None = None
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    line: int | None = None

    @property
    def enumerable(self) -> bool:
        """Whether the grid search can list every value."""
        return self.kind in ("choice", "grid", "randint") or self.q is not None

    def grid_values(self) -> list[Any]:
        """Every value of an enumerable parameter, in order."""
        if self.kind in ("choice", "grid"):
            return list(self.values)
        step = self.q if self.q is not None else 1
        n = int(round((self.high - self.low) / step))
        if self.kind == "randint":
            return [int(self.low + i * step) for i in range(n + 1)]
        return [_snap(self.low + i * step, step) for i in range(n + 1)]

    def applies(self, point: Mapping[str, Any]) -> bool:
        """Whether this key is set for a point holding the values drawn so far."""
        return all(k in point and contains_value(allowed, point[k]) for k, allowed in self.when)

    def sample(self, rng: np.random.Generator) -> Any:
        """One random value (the ``random`` algorithm; uniform over the range or choices)."""
        if self.kind in ("choice", "grid"):
            return copy.deepcopy(self.values[int(rng.integers(len(self.values)))])
        if self.kind == "randint":
            values = self.grid_values()
            return values[int(rng.integers(len(values)))]
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        if self.q is not None:
            values = self.grid_values()
            return values[int(rng.integers(len(values)))]
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class TrialSpec:
    """One trial: a variant or a point of the space, at one seed.

    Attributes:
        trial_id: Deterministic id: the same variant or point at the same seed gets the same
            id on every run of the study, which is how ``--resume`` recognises finished trials.
        variant: Name of the ablation variant (None for sweeps).
        seed: The run's seed.
        overrides: Dotted config keys set on top of the base config (without the seed).
        group: Trials that differ only in their seed share a group (the searcher averages
            their metric over seeds).
    """

    trial_id: str
    variant: str | None
    seed: int
    overrides: dict[str, Any]
    group: str

    def to_tune(self) -> dict[str, Any]:
        """The plain dict Ray Tune carries as the trial's config."""
        return {
            "trial_id": self.trial_id,
            "variant": self.variant,
            "seed": self.seed,
            "overrides": copy.deepcopy(self.overrides),
            "group": self.group,
        }

    @classmethod
    def from_tune(cls, config: Mapping[str, Any]) -> TrialSpec:
        """Inverse of :meth:`to_tune`."""
        return cls(
            trial_id=config["trial_id"],
            variant=config.get("variant"),
            seed=int(config["seed"]),
            overrides=dict(config.get("overrides") or {}),
            group=config.get("group") or config["trial_id"],
        )


@dataclass(frozen=True)
class Resources:
    """What one trial holds: CPUs and GPUs (a fraction below 1 shares a GPU)."""

    cpus: float = 1.0
    gpus: float = 0.0

    def to_ray(self) -> dict[str, float]:
        return {"cpu": self.cpus, "gpu": self.gpus}


@dataclass(frozen=True)
class Scheduler:
    """Trial scheduler: ``none`` or ASHA, which stops poor trials at rungs of epochs."""

    type: str = "none"
    grace_period: int = 1
    reduction_factor: float = 2.0
    max_t: int | None = None


@dataclass(frozen=True)
class Study:
    """A validated study; see the module docstring and ``docs/studies.md``."""

    name: str
    kind: str
    path: str
    base: Config
    metrics: tuple[str, ...]
    modes: tuple[str, ...]
    seeds: tuple[int, ...]
    description: str = ""
    baseline: str = "baseline"
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    space: tuple[Param, ...] = ()
    algorithm: str = "grid"
    search_seed: int = 0
    samples: int | None = None
    scheduler: Scheduler = Scheduler()
    resources: Resources = Resources()
    concurrency: int | None = None
    retries: int = 0
    storage: str | None = None

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    def trial_config(self, spec: TrialSpec) -> Config:
        """The resolved btnet_core config of one trial."""
        return self.base.replace(
            {**spec.overrides, "seed": spec.seed}, source=f"{self.path}: trial {spec.trial_id}"
        )

    def make_spec(
        self, overrides: Mapping[str, Any], seed: int, variant: str | None = None
    ) -> TrialSpec:
        """A trial of this study with its deterministic id."""
        overrides = dict(overrides)
        cfg = self.base.replace({**overrides, "seed": seed}, source=self.path)
        digest = config_hash(cfg)[:10]
        group_key = json.dumps([variant, _canonical(overrides)], sort_keys=True, default=str)
        group = hashlib.sha256(group_key.encode()).hexdigest()[:10]
        prefix = f"{variant}-" if variant is not None else ""
        return TrialSpec(
            trial_id=f"{prefix}s{seed}-{digest}",
            variant=variant,
            seed=seed,
            overrides=overrides,
            group=f"{prefix}{group}",
        )


# ---------------------------------------------------------------------------------------------
# Expansion


def plan_trials(study: Study) -> list[TrialSpec]:
    """Every trial of an ablation, a grid sweep or a random sweep, in run order.

    Seeds vary fastest, so the first trials started train distinct trunks (one per seed)
    concurrently instead of waiting on each other. TPE and NSGA-II sweeps are planned while
    they run (:mod:`ablations.searcher`), not here.
    """
    specs: list[TrialSpec] = []
    if study.kind == "ablation":
        for name in (study.baseline, *study.variants):
            overrides = study.variants.get(name, {})
            specs += [study.make_spec(overrides, s, variant=name) for s in study.seeds]
        return specs
    if study.algorithm == "grid":
        points = grid_points(study.space)
    elif study.algorithm == "random":
        points = [
            p
            for i in range(study.samples or 0)
            for p in expand_grid_keys(study.space, random_point(study.space, study.search_seed, i))
        ]
    else:
        raise ValueError(f"search {study.algorithm} is planned by the searcher")
    seen: set[str] = set()
    for point in points:
        for seed in study.seeds:
            spec = study.make_spec(point, seed)
            # A random search may draw the same point twice (a small discrete space): it is
            # one trial, not two rows of identical runs.
            if spec.trial_id not in seen:
                seen.add(spec.trial_id)
                specs.append(spec)
    return specs


def grid_points(space: Sequence[Param]) -> list[dict[str, Any]]:
    """Every combination of the space's values, conditional keys only where they apply."""
    points: list[dict[str, Any]] = [{}]
    for p in space:
        grown: list[dict[str, Any]] = []
        for point in points:
            if p.applies(point):
                grown += [{**point, p.key: copy.deepcopy(v)} for v in p.grid_values()]
            else:
                grown.append(point)
        points = grown
    return points


def random_point(space: Sequence[Param], seed: int, index: int) -> dict[str, Any]:
    """Point ``index`` of a random search: a pure function of (seed, index), so a resumed
    study draws exactly the points it drew before. ``grid`` keys are left for
    :func:`expand_grid_keys`."""
    rng = np.random.default_rng([seed, index])
    point: dict[str, Any] = {}
    for p in space:
        if p.kind == "grid":
            continue
        if p.applies(point):
            point[p.key] = p.sample(rng)
    return point


def expand_grid_keys(space: Sequence[Param], point: dict[str, Any]) -> list[dict[str, Any]]:
    """A random point crossed with every value of the space's ``grid`` keys."""
    points = [point]
    for p in space:
        if p.kind != "grid":
            continue
        grown = []
        for q in points:
            if p.applies(q):
                grown += [{**q, p.key: copy.deepcopy(v)} for v in p.values]
            else:
                grown.append(q)
        points = grown
    return points


def reported_metrics(cfg: Config) -> set[str]:
    """The metric names btnet_core reports at every evaluation for this config.

    ``acc_{a}_{b}`` (the method's own path), ``acc_{a}_{b}_{path}`` and its ``_std``,
    ``macs_{r}``/``params_{r}`` (and per path), ``branch_params_{r}``, ``loss``.
    """
    from btnet_core.evaluate import matrix_pairs  # local: evaluate imports torch
    from btnet_core.model import TRUNK_INPUT

    method = cfg["method"]
    res = list(cfg["eval"]["resolutions"])
    pairs = matrix_pairs(res)
    out = {"loss", "epoch", "iteration", "images_per_s", "achieved_flops"}
    for a, b in pairs:
        out.add(f"acc_{a}_{b}")
        for path in _METHOD_PATHS[method]:
            out |= {f"acc_{a}_{b}_{path}", f"acc_{a}_{b}_{path}_std"}
    for r in res:
        out |= {f"macs_{r}", f"params_{r}"}
    if method == "btnet":
        for r in res:
            out |= {
                f"macs_{r}_branch",
                f"params_{r}_branch",
                f"macs_{r}_upsample",
                f"params_{r}_upsample",
                f"branch_params_{r}",
            }
        out |= {"storage_params", "separate_storage_params"}
    elif method in ("upsample", "multires"):
        out |= {f"macs_{TRUNK_INPUT}_upsample", f"params_{TRUNK_INPUT}_upsample"}
    else:
        out.add("storage_params")
    return out


def metric_is_loss_like(name: str) -> bool:
    """Metrics whose best value is the smallest whatever the study's mode (loss, costs)."""
    return name == "loss" or name.startswith(
        ("macs_", "params_", "branch_params_", "storage_params", "separate_storage")
    )


# ---------------------------------------------------------------------------------------------
# Helpers


def contains_value(values: Sequence[Any], value: Any) -> bool:
    """Whether ``value`` is among ``values``, comparing YAML values (lists too) by content."""
    return any(_canonical(v) == _canonical(value) for v in values)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _snap(value: float, step: float) -> float:
    """Round away float noise of ``low + i * step`` (0.1 * 3 -> 0.3)."""
    digits = max(0, -int(math.floor(math.log10(abs(step))))) + 6 if step else 12
    return float(round(value, digits))
