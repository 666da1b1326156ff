"""A finished trial as a row (and curves) of the result store.

The row says what ran (study, variant, seed, the flattened config, trunk key and whether the
trunk was reused, code version), how it ended (status and error), what it achieved
(``final_<m>`` and ``best_<m>`` for every metric it reported, cost columns ``macs_*`` and
``params_*``), and what it cost (wall time, CPU and GPU hours). The curves are every reported
metric at every evaluation interval, keyed by the training iteration.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ablations.trainable import TrialState
from ablations.trials import Study, TrialSpec, metric_is_loss_like
from btnet_core.config import Config, config_hash

DEFAULT_PROTOCOL = "verification/insightface-10fold"
# Counters of the training loop: they are the x of a curve, not something to maximise.
_COUNTERS = ("iteration", "epoch")


@dataclass(frozen=True)
class CodeVersion:
    """What code produced a row."""

    git_commit: str | None
    package_version: str | None


@functools.lru_cache(maxsize=1)
def code_version() -> CodeVersion:
    """The git commit of the package's checkout (None outside one) and the package version."""
    repo = Path(__file__).resolve().parent.parent
    commit: str | None = None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if out.returncode == 0 and out.stdout.strip():
            commit = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    try:
        version: str | None = importlib.metadata.version("btnet-lab")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return CodeVersion(commit, version)


def trial_row(
    study: Study,
    spec: TrialSpec,
    cfg: Config,
    state: TrialState | None,
    status: str,
    error: str | None,
    end_time: datetime | None = None,
    fallback_metrics: Mapping[str, Any] | None = None,
    fallback_wall_s: float | None = None,
    fallback_trunk_keys: Sequence[str] = (),
) -> tuple[dict[str, Any], list[dict]]:
    """The store row and curve rows of one finished trial.

    Args:
        study: The study.
        spec: The trial.
        cfg: Its resolved config.
        state: What the trial's last checkpoint holds (None when it never reported).
        status: ``completed``, ``error`` or ``diverged``.
        error: One line saying what went wrong (None when completed).
        end_time: When it ended (now by default).
        fallback_metrics: Tune's last result, used when the trial left no checkpoint.
        fallback_wall_s: Tune's running time, likewise.
        fallback_trunk_keys: The trial's trunk keys, likewise.
    """
    from analysis.store import flatten_config

    end_time = end_time or datetime.now(timezone.utc)
    history = list(state.history) if state else []
    if not history and fallback_metrics:
        history = [{k: v for k, v in fallback_metrics.items() if _is_core_metric(k, v)}]
    final = dict(state.final) if state and state.final else (dict(history[-1]) if history else {})
    wall = state.elapsed_s if state else (fallback_wall_s or 0.0)
    start = _parse_time(state.started_at) if state else None
    if start is None:
        start = datetime.fromtimestamp(end_time.timestamp() - wall, tz=timezone.utc)
    keys = list(state.trunk_keys) if state and state.trunk_keys else list(fallback_trunk_keys)
    row: dict[str, Any] = {
        "study": study.name,
        "kind": study.kind,
        "trial_id": spec.trial_id,
        "variant": spec.variant,
        "baseline": study.baseline if study.kind == "ablation" else None,
        "seed": spec.seed,
        "status": status,
        "error": error,
        "iterations": int(final.get("iteration") or 0) if _finite(final.get("iteration")) else 0,
        # The store's metric/mode columns hold one objective; a multi-objective study records
        # its first (its other objectives are final_/best_ columns like every metric).
        "metric": study.metrics[0],
        "mode": study.modes[0],
        "wall_time_s": float(wall),
        "cpu_hours": study.resources.cpus * wall / 3600.0,
        "gpu_hours": study.resources.gpus * wall / 3600.0,
        # Unknown (None) when the trial failed before its first report.
        "trunk_cache_hit": bool(state.trunk_hit)
        if state and state.trunk_hit is not None
        else None,
        "trunk_key": ",".join(keys) if keys else None,
        "git_commit": code_version().git_commit,
        "config_hash": config_hash(cfg),
        "package_version": code_version().package_version,
        "start_time": start,
        "end_time": end_time,
        "protocol": str(final.get("protocol") or _first(history, "protocol") or DEFAULT_PROTOCOL),
    }
    row.update(flatten_config(cfg.to_dict()))
    names = _metric_names(history, final)
    for m in names:
        row[f"final_{m}"] = _as_float(final.get(m))
        row[f"best_{m}"] = _best(study, m, [h.get(m) for h in history] + [final.get(m)])
    for m in names:
        # Cost columns (counts) under their own names, as the store's macs_/params_ families.
        if m.startswith(("macs_", "params_", "branch_params_")) and _finite(final.get(m)):
            row[m] = int(final[m])
    curves = [
        {
            "iteration": int(h.get("iteration") or 0) if _finite(h.get("iteration")) else i,
            "metric": m,
            "value": float(h[m]),
        }
        for i, h in enumerate(history)
        for m in names
        if m in h and _is_number(h[m])
    ]
    return row, curves


def error_line(text: str | None, limit: int = 500) -> str:
    """The one line of a Tune error trace that says what happened (``ValueError: ...``)."""
    if not text:
        return "the trial failed without an error message"
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Failure #")]
    for ln in reversed(lines):
        head = ln.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "Interrupt")) or "Error(" in head:
            return ln[:limit]
    return (lines[-1] if lines else str(text))[:limit]


def _metric_names(history: Sequence[Mapping[str, Any]], final: Mapping[str, Any]) -> list[str]:
    names: dict[str, None] = {}
    for h in [*history, final]:
        for k, v in h.items():
            if _is_core_metric(k, v) and k not in _COUNTERS[:1]:
                names[k] = None
    return list(names)


def _is_core_metric(key: str, value: Any) -> bool:
    return (
        _is_number(value)
        and not key.startswith(("btnet_", "time_", "timestamp"))
        and key
        not in (
            "training_iteration",
            "pid",
            "done",
            "iterations_since_restore",
            "checkpoint_dir_name",
            "trial_id",
            "date",
            "hostname",
            "node_ip",
            "config",
        )
    )


def _best(study: Study, metric: str, values: Sequence[Any]) -> float | None:
    finite = [float(v) for v in values if _finite(v)]
    if not finite:
        return None
    if metric in study.metrics:
        mode = study.modes[study.metrics.index(metric)]
    elif metric_is_loss_like(metric):
        mode = "min"
    elif metric.startswith("acc_"):
        # Accuracy is better higher; a study that maximises an accuracy says so, one that
        # minimises a cost (macs) still wants the best accuracy it saw.
        pairs = zip(study.metrics, study.modes, strict=True)
        acc_modes = [md for m, md in pairs if m.startswith("acc_")]
        mode = acc_modes[0] if acc_modes else "max"
    else:
        mode = "max"
    return max(finite) if mode == "max" else min(finite)


def _first(history: Sequence[Mapping[str, Any]], key: str) -> Any:
    for h in history:
        if h.get(key):
            return h[key]
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)


def _as_float(v: Any) -> float | None:
    return float(v) if _is_number(v) else None


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
