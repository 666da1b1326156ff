"""Hyper-parameter importance of a sweep, with Optuna's evaluators on trials from the store.

The store holds no Optuna study, so one is rebuilt: each completed trial becomes an
``optuna.trial.create_trial`` whose parameters are the ``cfg_`` columns that vary across the
sweep and whose value is the study's objective (``final_<metric>``). Distributions are
inferred from the values: booleans and strings are categorical; integers are an
``IntDistribution``; floats a ``FloatDistribution``, on a log scale when they look log-uniform
(:func:`looks_log_scaled`: positive, two decades or more, half of them under a tenth of the
largest, as learning rates sampled with ``tune.loguniform`` are). Columns that are missing in
some trials (conditional search spaces) are left out, since Optuna's evaluators need every
parameter in every trial.

fANOVA (``FanovaImportanceEvaluator``) needs scikit-learn; PED-ANOVA does not. Optuna's fANOVA
marginalises over every leaf of every tree in Python, so with its defaults (64 trees of depth
64) it takes 30-50 s on 1,000 trials on a two-core machine. Here it runs with 16 trees of
depth 8 on at most :data:`FANOVA_MAX_TRIALS` trials (a seeded random subset): about 1 s, and
on the synthetic 1,000-trial sweep the ranking is the same and every importance is within 0.01
of the defaults'. PED-ANOVA is fast and always sees every trial.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from analysis.store import config_key, read_trials
from btnet_core.errors import StoreError

logger = logging.getLogger(__name__)

EVALUATORS = ("fanova", "pedanova")
_LOG_MEDIAN_SHARE = 0.1
#: fANOVA runs on at most this many trials (a seeded random subset of larger sweeps).
FANOVA_MAX_TRIALS = 500
#: PED-ANOVA (and the rebuilt study) sees at most this many completed trials.
MAX_TRIALS = 2000
FANOVA_TREES = 16
FANOVA_DEPTH = 8
_LOG_SPAN = 100.0


def looks_log_scaled(values: Sequence[float] | np.ndarray) -> bool:
    """Whether numeric values look sampled on a log scale.

    Positive, spanning at least two decades, and with a median under a tenth of the largest
    value: a log-uniform sample over [1e-4, 1e-1] has its median near 3e-3; a uniform sample
    over [0.001, 2] has its median near 1.
    """
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size < 2 or arr.min() <= 0:
        return False
    high = float(arr.max())
    return (
        high / float(arr.min()) >= _LOG_SPAN and float(np.median(arr)) < _LOG_MEDIAN_SHARE * high
    )


def varying_config_columns(trials: pd.DataFrame) -> list[str]:
    """``cfg_`` columns with more than one distinct value and no missing value."""
    out = []
    for col in trials.columns:
        if not col.startswith("cfg_"):
            continue
        values = trials[col]
        if values.isna().any():
            if values.notna().any() and values.dropna().nunique() > 1:
                logger.info("importance leaves out %s: missing in some trials", config_key(col))
            continue
        if values.nunique() > 1:
            out.append(col)
    return out


def infer_distribution(values: pd.Series) -> BaseDistribution:
    """Optuna distribution of one parameter from the values the sweep tried.

    Args:
        values: Non-missing values of one ``cfg_`` column.

    Returns:
        Categorical for bool/str, Int for integers, Float otherwise (log when
        :func:`looks_log_scaled`).
    """
    items = values.tolist()
    if all(isinstance(v, (bool, np.bool_)) for v in items) or not all(
        isinstance(v, (int, float, np.integer, np.floating)) for v in items
    ):
        choices: tuple[Any, ...] = tuple(
            sorted({_plain(v) for v in items}, key=lambda v: (str(type(v)), v))
        )
        return CategoricalDistribution(choices)
    arr = np.asarray(items, dtype=float)
    low, high = float(arr.min()), float(arr.max())
    log = looks_log_scaled(arr)
    if all(isinstance(v, (int, np.integer)) for v in items):
        return IntDistribution(int(low), int(high), log=log and low >= 1)
    return FloatDistribution(low, high, log=log)


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def build_study(
    trials: pd.DataFrame, objective: str | None = None, mode: str | None = None
) -> tuple[optuna.Study, dict[str, str]]:
    """An in-memory Optuna study holding the sweep's completed trials.

    Args:
        trials: Trials of one sweep (``cfg_*``, ``status``, ``metric``, ``mode``, ``final_*``).
        objective: Metric name (default: the study's ``metric`` column).
        mode: ``"max"`` or ``"min"`` (default: the study's ``mode`` column).

    Returns:
        The study and ``{parameter name: cfg column}``; parameter names are dotted config keys.

    Raises:
        StoreError: No objective, fewer than two usable trials, or no varying parameter.
    """
    objective = objective or _most_common(trials, "metric")
    mode = mode or _most_common(trials, "mode") or "max"
    if not objective:
        raise StoreError("the study names no objective metric; pass one")
    col = objective if objective.startswith("final_") else f"final_{objective}"
    if col not in trials.columns:
        raise StoreError(f"the study has no column {col} for objective {objective!r}")
    done = trials[(trials["status"] == "completed") & trials[col].notna()]
    done = done[np.isfinite(done[col].astype(float))]
    if len(done) < 2:
        raise StoreError(
            f"importance needs at least 2 completed trials, the study has {len(done)}"
        )
    columns = varying_config_columns(done)
    if not columns:
        raise StoreError("no config column varies across the completed trials")
    dists = {config_key(c): infer_distribution(done[c]) for c in columns}
    names = {config_key(c): c for c in columns}
    casts = {name: (int if isinstance(dists[name], IntDistribution) else _plain) for name in names}
    columns_values = {name: done[c].tolist() for name, c in names.items()}
    objective_values = done[col].astype(float).tolist()
    frozen = [
        optuna.trial.create_trial(
            params={name: casts[name](columns_values[name][i]) for name in names},
            distributions=dists,
            value=value,
        )
        for i, value in enumerate(objective_values)
    ]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
        study.add_trials(frozen)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return study, names


def _most_common(trials: pd.DataFrame, column: str) -> str | None:
    if column not in trials.columns or trials[column].dropna().empty:
        return None
    return str(trials[column].dropna().mode().iloc[0])


def param_importances(
    trials: pd.DataFrame,
    evaluators: Sequence[str] = EVALUATORS,
    objective: str | None = None,
    seed: int = 0,
    max_trials: int = MAX_TRIALS,
) -> pd.DataFrame:
    """Importance of each varying parameter, per evaluator.

    Args:
        trials: Trials of one sweep.
        evaluators: ``"fanova"`` and/or ``"pedanova"``.
        objective: Metric name (default: the study's).
        seed: Seed of fANOVA's random forest and of the subsets.
        max_trials: Completed trials used at most (a seeded random subset beyond that:
            rebuilding an Optuna trial costs about 0.4 ms, so 10,000 trials would take 4 s
            before any evaluator runs; fANOVA sees at most :data:`FANOVA_MAX_TRIALS`).

    Returns:
        Columns evaluator, param (dotted key), column (``cfg_`` name), importance
        (normalised to sum to 1 per evaluator), sorted by evaluator and importance.
        An evaluator that cannot run (scikit-learn missing, too few trials) is logged and
        left out.

    Raises:
        StoreError: As :func:`build_study`, or an unknown evaluator.
    """
    done = trials[trials["status"] == "completed"]
    if len(done) > max_trials:
        logger.info("importance uses %d of %d completed trials", max_trials, len(done))
        done = done.sample(n=max_trials, random_state=seed)
    study, names = build_study(done, objective)
    rows = []
    for name in evaluators:
        if name not in EVALUATORS:
            raise StoreError(f"unknown importance evaluator {name!r}; allowed: fanova, pedanova")
        try:
            if name == "fanova":
                evaluator: optuna.importance.BaseImportanceEvaluator = (
                    optuna.importance.FanovaImportanceEvaluator(
                        seed=seed, n_trees=FANOVA_TREES, max_depth=FANOVA_DEPTH
                    )
                )
                target = _subsample(study, FANOVA_MAX_TRIALS, seed)
            else:
                evaluator = optuna.importance.PedAnovaImportanceEvaluator()
                target = study
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PED-ANOVA is marked experimental
                result = optuna.importance.get_param_importances(target, evaluator=evaluator)
        except (ImportError, ValueError, RuntimeError) as exc:
            # fANOVA without scikit-learn, or too few trials for an evaluator.
            logger.warning("importance evaluator %s could not run: %s", name, exc)
            continue
        for param, value in result.items():
            rows.append(
                {
                    "evaluator": name,
                    "param": param,
                    "column": names[param],
                    "importance": float(value) if math.isfinite(value) else math.nan,
                }
            )
    out = pd.DataFrame(rows, columns=["evaluator", "param", "column", "importance"])
    return out.sort_values(["evaluator", "importance"], ascending=[True, False]).reset_index(
        drop=True
    )


def _subsample(study: optuna.Study, limit: int, seed: int) -> optuna.Study:
    """The study itself, or a copy holding ``limit`` of its trials chosen at random."""
    frozen = study.get_trials(deepcopy=False)
    if len(frozen) <= limit:
        return study
    pick = np.random.default_rng(seed).choice(len(frozen), size=limit, replace=False)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        sub = optuna.create_study(direction=study.direction)
        sub.add_trials([frozen[i] for i in sorted(pick)])
    finally:
        optuna.logging.set_verbosity(verbosity)
    logger.info("fANOVA runs on %d of %d trials", limit, len(frozen))
    return sub


def study_importances(
    root: str | os.PathLike[str], study: str, evaluators: Sequence[str] = EVALUATORS
) -> pd.DataFrame:
    """:func:`param_importances` of a study read from the store."""
    return param_importances(read_trials(root, study), evaluators)
