"""Realistic synthetic result stores, for tests, benchmarks and demos of the analysis tools.

An ablation study is a grid of variants x seeds whose accuracies follow the BTNet headline
numbers (docs in ``/work/shared/BTNET.md``) plus a per-seed effect shared by all variants (so
pairing by seed matters, as it does in real runs) plus small per-trial noise. Each variant
shifts accuracy by a known amount, :func:`variant_effect`, so the statistics have a known
answer: ``no_bct`` really is worse on cross-resolution matching, ``frozen_trunk_bn`` really
changes nothing. A sweep varies learning rate, distillation weight, branch insertion depth,
classification head and multi-resolution augmentation; its objective depends mostly on the
learning rate, then on the insertion depth, so parameter importance has a known ranking too.

Example:
    >>> import tempfile
    >>> from analysis.synthetic_store import generate_store
    >>> generate_store(tempfile.mkdtemp(), 20, kind="ablation", seed=0)
    'ablation-0'
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from analysis.metrics import HR
from analysis.store import flatten_config, write_trial, write_trials

#: Input resolutions of the synthetic studies (112 is the trunk).
RESOLUTIONS = (112, 56, 28, 14, 7)
#: Variants of the synthetic ablation; ``baseline`` first.
ABLATION_VARIANTS = (
    "baseline",
    "no_feature_distill",
    "no_bct",
    "deeper_insertion",
    "frozen_trunk_bn",
)
#: Objective of the synthetic studies.
OBJECTIVE = "acc_112_7"
PROTOCOL = "lfw-multires-10fold-v1"

# Verification accuracy of "a&b" through the branch path (BTNET.md headline numbers, 56 added
# between 28 and 112).
_BASE = {
    (112, 112): 0.9725,
    (112, 56): 0.9712,
    (112, 28): 0.9665,
    (112, 14): 0.9408,
    (112, 7): 0.8610,
    (56, 56): 0.9701,
    (28, 28): 0.9627,
    (14, 14): 0.9090,
    (7, 7): 0.7778,
}
# Accuracy lost per image by upsampling an r x r face to 112 instead of using its branch.
_UPSAMPLE_LOSS = {112: 0.0, 56: 0.002, 28: 0.008, 14: 0.035, 7: 0.085}
# r50 costs (BTNET.md): MACs per image and branch-only parameters of each branch path.
_MACS_BRANCH = {112: 6_309_000_000, 56: 6_050_000_000, 28: 5_236_000_000, 14: 4_276_000_000}
_MACS_BRANCH[7] = 1_517_000_000
_BRANCH_PARAMS = {56: 80_000, 28: 450_000, 14: 2_260_000, 7: 21_290_000}
_TOTAL_PARAMS = 43_590_000
_MACS_TRUNK = 6_309_000_000
_HEAD_EFFECT = {"arcface": 0.0, "cosface": -0.004, "curricularface": 0.003, "adaface": 0.007}
_ERRORS = (
    "CUDA out of memory. Tried to allocate 2.00 GiB",
    "DataError: /data/ms1mv3/train.rec: record 81234 is truncated",
    "worker died: node lost",
)


def variant_effect(variant: str, a: int, b: int, path: str = "method") -> float:
    """The true accuracy shift of an ablation variant against the baseline.

    Args:
        variant: One of :data:`ABLATION_VARIANTS`.
        a: First image's resolution.
        b: Second image's resolution.
        path: ``"method"``/``"branch"`` (what the variants change) or ``"upsample"``
            (the baseline path, which no variant touches).

    Returns:
        Expected ``variant - baseline`` accuracy difference.
    """
    if path == "upsample" or (a == HR and b == HR):
        return 0.0
    low = min(a, b)
    if variant == "no_feature_distill":
        return -0.03 if low <= 14 else -0.01
    if variant == "no_bct":
        return -0.06 if HR in (a, b) else -0.01
    if variant == "deeper_insertion":
        return 0.01 if low == 7 else 0.0
    return 0.0


def _pairs() -> list[tuple[int, int]]:
    return [(HR, r) for r in RESOLUTIONS] + [(r, r) for r in RESOLUTIONS if r != HR]


def _stable_seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha1(repr(parts).encode()).digest()[:8], "little")


def _accuracies(
    rng: np.random.Generator, shift: dict[tuple[int, int], float], seed_fx: dict[Any, float]
) -> dict[str, float]:
    out: dict[str, float] = {}
    for a, b in _pairs():
        noise = rng.normal(0.0, 0.002)
        branch = _BASE[(a, b)] + shift.get((a, b), 0.0) + seed_fx[(a, b)] + noise
        upsample = (
            _BASE[(a, b)] - _UPSAMPLE_LOSS[a] - _UPSAMPLE_LOSS[b] + seed_fx[(a, b)] + noise * 0.8
        )
        for name, value in (
            (f"acc_{a}_{b}", branch),
            (f"acc_{a}_{b}_branch", branch),
            (f"acc_{a}_{b}_upsample", upsample),
        ):
            out[name] = min(1.0, max(0.5, float(value)))
    return out


def _costs(insertion_7: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in RESOLUTIONS:
        macs = _MACS_BRANCH[r] + (insertion_7 * 48_000_000 if r == 7 else 0)
        extra = insertion_7 * 4_720_000 if r == 7 else 0
        out[f"macs_{r}_branch"] = macs
        out[f"macs_{r}_upsample"] = _MACS_TRUNK
        out[f"params_{r}_branch"] = _TOTAL_PARAMS + extra
        out[f"params_{r}_upsample"] = _TOTAL_PARAMS
        out[f"macs_{r}"] = macs
        out[f"params_{r}"] = _TOTAL_PARAMS + extra
        if r != HR:
            out[f"branch_params_{r}"] = _BRANCH_PARAMS[r] + extra
    return out


def _curve(
    rng: np.random.Generator, iterations: int, final_acc: float, final_loss: float
) -> tuple[list[dict[str, Any]], float, float]:
    """Learning curves ending at the final values; returns (rows, best acc, best loss)."""
    rows = []
    steps = np.arange(1, iterations + 1)
    progress = 1.0 - np.exp(-3.0 * steps / iterations)
    progress = progress / progress[-1]
    acc = 0.5 + (final_acc - 0.5) * progress + rng.normal(0, 0.003, iterations)
    loss = final_loss + 6.0 * (1.0 - progress) + np.abs(rng.normal(0, 0.02, iterations))
    acc[-1], loss[-1] = final_acc, final_loss
    for i, (a_v, l_v) in enumerate(zip(acc, loss, strict=True)):
        rows.append({"iteration": int(steps[i]), "metric": OBJECTIVE, "value": float(a_v)})
        rows.append({"iteration": int(steps[i]), "metric": "loss", "value": float(l_v)})
    return rows, float(acc.max()), float(loss.min())


def _common(
    study: str, kind: str, trial_id: str, index: int, seed: int, rng: np.random.Generator
) -> dict[str, Any]:
    start = _dt.datetime(2025, 3, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(minutes=7 * index)
    wall = float(rng.uniform(900, 2400))
    return {
        "study": study,
        "kind": kind,
        "trial_id": trial_id,
        "seed": seed,
        "metric": OBJECTIVE,
        "mode": "max",
        "wall_time_s": wall,
        "cpu_hours": wall / 3600 * 8,
        "gpu_hours": wall / 3600,
        "trunk_cache_hit": index > 0,
        "trunk_key": "r50-ms1mv3-multires-3f9a1c",
        "git_commit": "4be1d0c7a9e2",
        "package_version": "0.1.0",
        "start_time": start,
        "end_time": start + _dt.timedelta(seconds=wall),
        "protocol": PROTOCOL,
    }


def _finish(
    row: dict[str, Any],
    config: dict[str, Any],
    accs: dict[str, float],
    rng: np.random.Generator,
    iterations: int,
    status: str,
    with_curves: bool,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    row.update(flatten_config(config))
    row["config_hash"] = hashlib.sha1(repr(sorted(config.items())).encode()).hexdigest()[:12]
    row["status"] = status
    row.update(_costs(int(config["model"]["insertion"]["7"])))
    if status == "error":
        row["error"] = _ERRORS[int(rng.integers(len(_ERRORS)))]
        row["iterations"] = int(rng.integers(0, iterations))
        return row, []
    final_loss = float(2.2 - 4.0 * (accs[OBJECTIVE] - 0.8) + rng.normal(0, 0.02))
    if status == "diverged":
        done = int(rng.integers(1, max(2, iterations // 2)))
        row["iterations"] = done
        row["error"] = f"DivergedError: loss became NaN at iteration {done}"
        row["final_loss"] = float("nan")
        return row, []
    curves, best_acc, best_loss = _curve(rng, iterations, accs[OBJECTIVE], final_loss)
    row["iterations"] = iterations
    for name, value in accs.items():
        row[f"final_{name}"] = value
        row[f"best_{name}"] = value + abs(float(rng.normal(0, 0.0015)))
    row[f"best_{OBJECTIVE}"] = best_acc
    row["final_loss"] = final_loss
    row["best_loss"] = best_loss
    return row, (curves if with_curves else [])


def ablation_rows(
    n_trials: int,
    seed: int = 0,
    study: str | None = None,
    failure_rate: float = 0.02,
    with_curves: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows and curves of a synthetic ablation: variants x seeds, ``n_trials`` in all.

    Args:
        n_trials: Number of trials (seeds = ceil(n_trials / number of variants)).
        seed: Seed of the generator.
        study: Study name (default ``ablation-<seed>``).
        failure_rate: Share of trials that end in error or diverge.
        with_curves: Whether to produce learning curves.

    Returns:
        (trial rows, curve rows with ``trial_id``).
    """
    study = study or f"ablation-{seed}"
    rng = np.random.default_rng(seed)
    n_seeds = max(1, math.ceil(n_trials / len(ABLATION_VARIANTS)))
    seed_fx = {
        s: {pair: float(rng.normal(0.0, 0.006)) for pair in _pairs()} for s in range(n_seeds)
    }
    rows: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    index = 0
    for s in range(n_seeds):
        for variant in ABLATION_VARIANTS:
            if index >= n_trials:
                break
            trial_rng = np.random.default_rng(_stable_seed(seed, study, variant, s))
            config = {
                "model": {
                    "arch": "r50",
                    "insertion": {"7": 1 if variant == "deeper_insertion" else 0},
                },
                "stage2": {
                    "lr": 0.02,
                    "epochs": 10,
                    "bct": variant != "no_bct",
                    "distill": {"feature_weight": 0.0 if variant == "no_feature_distill" else 1.0},
                },
                "trunk": {"freeze_bn": variant == "frozen_trunk_bn"},
                "data": {"resolutions": [7, 14, 28, 56]},
            }
            shift = {(a, b): variant_effect(variant, a, b) for a, b in _pairs()}
            accs = _accuracies(trial_rng, shift, seed_fx[s])
            status = _status(trial_rng, failure_rate)
            trial_id = f"{variant}-s{s}"
            row = _common(study, "ablation", trial_id, index, s, trial_rng)
            row["variant"] = variant
            row, trial_curves = _finish(row, config, accs, trial_rng, 10, status, with_curves)
            rows.append(row)
            curves.extend({**c, "trial_id": trial_id} for c in trial_curves)
            index += 1
    return rows, curves


def sweep_objective(lr: float, feature_weight: float, insertion_7: int, head: str) -> float:
    """Expected objective (acc 112&7) of a sweep configuration, before per-trial noise."""
    return (
        _BASE[(HR, 7)]
        - 0.045 * (math.log10(lr) + 2.0) ** 2
        + 0.012 * insertion_7
        + 0.006 * min(feature_weight, 1.0)
        + _HEAD_EFFECT[head]
    )


def sweep_rows(
    n_trials: int,
    seed: int = 0,
    study: str | None = None,
    failure_rate: float = 0.02,
    with_curves: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows and curves of a synthetic hyper-parameter sweep (random search)."""
    study = study or f"sweep-{seed}"
    rng = np.random.default_rng(seed)
    heads = sorted(_HEAD_EFFECT)
    rows: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    for i in range(n_trials):
        trial_rng = np.random.default_rng(_stable_seed(seed, study, i))
        lr = float(10 ** rng.uniform(-4, -1))
        weight = float(rng.uniform(0.0, 2.0))
        insertion = int(rng.integers(0, 3))
        head = heads[int(rng.integers(len(heads)))]
        multires = bool(rng.integers(0, 2))
        epochs = int(rng.integers(6, 13))
        config = {
            "model": {"arch": "r50", "insertion": {"7": insertion}},
            "stage2": {"lr": lr, "epochs": epochs, "distill": {"feature_weight": weight}},
            "loss": {"head": head},
            "augment": {"multires": multires},
        }
        target = sweep_objective(lr, weight, insertion, head) + (0.001 if multires else 0.0)
        shift = {
            (a, b): (target - _BASE[(HR, 7)]) * (1.0 if min(a, b) == 7 else 0.4)
            for a, b in _pairs()
            if (a, b) != (HR, HR)
        }
        accs = _accuracies(trial_rng, shift, {pair: 0.0 for pair in _pairs()})
        status = _status(trial_rng, failure_rate)
        trial_id = f"trial_{i:05d}"
        row = _common(study, "sweep", trial_id, i, int(trial_rng.integers(0, 2**31)), trial_rng)
        row, trial_curves = _finish(row, config, accs, trial_rng, epochs, status, with_curves)
        rows.append(row)
        curves.extend({**c, "trial_id": trial_id} for c in trial_curves)
    return rows, curves


def _status(rng: np.random.Generator, failure_rate: float) -> str:
    u = float(rng.uniform())
    if u < failure_rate * 0.6:
        return "error"
    if u < failure_rate:
        return "diverged"
    return "completed"


def generate_store(
    root: str | os.PathLike[str],
    n_trials: int,
    kind: str = "ablation",
    seed: int = 0,
    *,
    study: str | None = None,
    failure_rate: float = 0.02,
    with_curves: bool = True,
    per_trial: bool = False,
    batch_size: int = 20_000,
) -> str:
    """Write a synthetic study into a store.

    Args:
        root: Store root.
        n_trials: Number of trials.
        kind: ``"ablation"`` or ``"sweep"``.
        seed: Generator seed (same seed, same store).
        study: Study name (default ``<kind>-<seed>``).
        failure_rate: Share of trials that end in error or diverge.
        with_curves: Whether to store learning curves.
        per_trial: Write trial by trial through :func:`~analysis.store.write_trial` (as a sweep
            does: many small files) instead of in batches.
        batch_size: Trials per file in batch mode.

    Returns:
        The study name.
    """
    if kind == "ablation":
        rows, curves = ablation_rows(n_trials, seed, study, failure_rate, with_curves)
    elif kind == "sweep":
        rows, curves = sweep_rows(n_trials, seed, study, failure_rate, with_curves)
    else:
        raise ValueError(f"kind {kind!r} is not ablation or sweep")
    name = rows[0]["study"]
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for c in curves:
        by_trial.setdefault(c["trial_id"], []).append(c)
    if per_trial:
        for row in rows:
            points = [
                {k: v for k, v in c.items() if k != "trial_id"}
                for c in by_trial.get(row["trial_id"], [])
            ]
            write_trial(root, row, points)
        return name
    for start in range(0, len(rows), batch_size):
        chunk: Sequence[dict[str, Any]] = rows[start : start + batch_size]
        chunk_curves = [c for r in chunk for c in by_trial.get(r["trial_id"], [])]
        write_trials(root, chunk, chunk_curves, compact_at=0)
    return name
