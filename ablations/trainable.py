"""The Ray Tune trainable: one trial of a study, wrapping btnet_core's two training stages.

A trial (1) restores its state from ``tune.get_checkpoint()`` when Tune retries or resumes it,
(2) gets its trunk(s) from the study's trunk cache, training one only if no other trial has,
(3) runs stage 2 and evaluation through ``btnet_core.train.train_branches``, whose callback
reports every evaluation interval to Tune with ``ray.tune.report`` and a checkpoint, and
(4) reports a last ``done`` result that carries the final metrics and artifacts.

Every checkpoint holds ``btnet_trial.json`` (what the trial reported so far, when it started,
how long it ran, which trunk it used) next to the core's resume state (``state/``) or, at the
end, the trial's artifacts (``final/``: branch weights and final metrics). The driver reads
that file when the trial ends to write its row and curves to the result store.

A NaN or infinite loss (``DivergedError``) ends the trial as ``diverged``: it is reported,
not raised, because a retry from the last checkpoint would diverge the same way.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ablations.storage import StudyStorage
from ablations.trials import Study, TrialSpec
from ablations.trunk_cache import Leases, LeaseTable, RayLeases, TrunkCache
from btnet_core.config import Config
from btnet_core.errors import DivergedError

log = logging.getLogger(__name__)

TRIAL_FILE = "btnet_trial.json"
STATE_DIR = "state"
FINAL_DIR = "final"
# Keys the trainable adds to every reported result (next to the core's metrics).
DONE = "btnet_done"
STATUS = "btnet_status"
ERROR = "btnet_error"
TRIAL_ID = "btnet_trial_id"


@dataclasses.dataclass
class TrialState:
    """What a trial carries from one attempt to the next, inside its checkpoints."""

    trial_id: str
    started_at: str
    elapsed_s: float = 0.0
    attempts: int = 0
    trunk_keys: list[str] = dataclasses.field(default_factory=list)
    trunk_hit: bool | None = None
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    status: str = "running"
    error: str | None = None
    final: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=_json_default)

    @classmethod
    def from_json(cls, text: str) -> TrialState:
        data = json.loads(text)
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})

    def record(self, metrics: Mapping[str, Any]) -> None:
        """Append a report to the history (one entry per iteration)."""
        clean = clean_metrics(metrics)
        if self.history and self.history[-1].get("iteration") == clean.get("iteration"):
            self.history[-1] = clean
        else:
            self.history.append(clean)


def make_trainable(
    study: Study,
    storage_root: str,
    coordinator: str | None,
    core: Any = None,
    resume_points: Mapping[str, str] | None = None,
) -> Callable[[dict], None]:
    """The function trainable Tune runs for each trial of ``study``.

    Args:
        study: The validated study.
        storage_root: The store root (path or URI).
        coordinator: Name of the trunk coordinator actor (None: a process-local lease table,
            for running a trial outside a Ray cluster).
        core: The training backend; None imports ``btnet_core.train`` in the worker. Tests
            pass a small stand-in with the same four functions.
        resume_points: trial id -> path (on the store's filesystem) of the latest checkpoint
            of an earlier, interrupted run of the study.
    """
    points = dict(resume_points or {})

    def btnet_trial(config: dict) -> None:
        run_trial(study, storage_root, coordinator, core, points, config)

    return btnet_trial


def run_trial(
    study: Study,
    storage_root: str,
    coordinator: str | None,
    core: Any,
    resume_points: Mapping[str, str],
    config: Mapping[str, Any],
) -> None:
    """Body of the trainable; see the module docstring."""
    from ray import tune

    core = core if core is not None else importlib.import_module("btnet_core.train")
    spec = TrialSpec.from_tune(config)
    # The driver resolved and validated the config (the searcher sends it along); resolving it
    # again here would import torch for nothing in a worker whose core does not need it.
    cfg = Config(config["config"]) if "config" in config else study.trial_config(spec)
    _configure_worker(study)
    storage = StudyStorage(storage_root, study.name)
    work = Path(tempfile.mkdtemp(prefix=f"btnet-{spec.trial_id[:40]}-"))
    attempt_start = time.monotonic()
    try:
        state, resume_from = _restore(spec, storage, resume_points, work)
        state.attempts += 1
        reporter = _Reporter(state, work, attempt_start, tune)
        if state.final is not None:
            # The trial had finished when the driver stopped; only its row was missing.
            reporter.done(state.final, None)
            return
        leases: Leases = RayLeases(coordinator) if coordinator else LeaseTable()
        cache = TrunkCache(storage, leases, owner=spec.trial_id)
        try:
            trunks = _trunks(cfg, core, cache, state)
            final = core.train_branches(
                cfg, work / "run", trunks, reporter.interval, resume_from=resume_from
            )
        except DivergedError as exc:  # in stage 1 (the shared trunk) or stage 2
            reporter.diverged(str(exc), study.metrics)
            return
        reporter.done(final, work / "run")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _trunks(
    cfg: Config, core: Any, cache: TrunkCache, state: TrialState
) -> dict[int | None, Path]:
    """The trial's trunk(s) from the cache (trained here if no trial has yet)."""
    trunks: dict[int | None, Path] = {}
    hits, keys = [], []
    for r in core.trunk_resolutions(cfg):
        trunk = cache.obtain(
            cfg,
            r,
            core.train_trunk,
            core.trunk_file(r),
            callback=_stage1_logger(state.trial_id, r),
        )
        trunks[r] = trunk.path
        hits.append(trunk.hit)
        keys.append(trunk.key)
    state.trunk_keys = keys
    if state.trunk_hit is None:  # the first attempt decides whether this trial trained
        state.trunk_hit = all(hits)
    return trunks


class _Reporter:
    """Reports to Tune with a checkpoint that carries the trial's state."""

    def __init__(self, state: TrialState, work: Path, attempt_start: float, tune: Any) -> None:
        self.state = state
        self.work = work
        self.elapsed_before = state.elapsed_s
        self.attempt_start = attempt_start
        self.tune = tune
        self.n = 0

    def interval(self, metrics: dict[str, Any], checkpoint_dir: Path) -> None:
        """The core's callback: one evaluation interval."""
        self.state.record(metrics)
        staging = self._stage()
        shutil.copytree(checkpoint_dir, staging / STATE_DIR)
        self._report(metrics, staging)

    def done(self, final: Mapping[str, Any], run_dir: Path | None) -> None:
        """The last report: final metrics and the run's artifacts."""
        if self.state.final is None:
            self.state.record(final)
            self.state.status = "completed"
            self.state.final = clean_metrics(final)
        staging = self._stage()
        target = staging / FINAL_DIR
        target.mkdir()
        if run_dir is not None and run_dir.is_dir():
            for item in run_dir.iterdir():
                if item.is_file() and item.suffix in (".pt", ".json", ".jsonl", ".yaml"):
                    shutil.copy2(item, target / item.name)
        self._report(self.state.final, staging, done=True)

    def diverged(self, message: str, metrics: tuple[str, ...]) -> None:
        """A NaN/inf loss: the trial ends with status ``diverged`` and NaN metrics."""
        log.warning("trial %s diverged: %s", self.state.trial_id, message)
        self.state.status = "diverged"
        self.state.error = message
        last = dict(self.state.history[-1]) if self.state.history else {}
        last.update({m: math.nan for m in metrics})
        self.state.final = clean_metrics(last)
        staging = self._stage()
        (staging / FINAL_DIR).mkdir()
        self._report(self.state.final, staging, done=True)

    def _stage(self) -> Path:
        self.n += 1
        staging = self.work / f"checkpoint-{self.n}"
        staging.mkdir()
        return staging

    def _report(self, metrics: Mapping[str, Any], staging: Path, done: bool = False) -> None:
        self.state.elapsed_s = self.elapsed_before + time.monotonic() - self.attempt_start
        (staging / TRIAL_FILE).write_text(self.state.to_json())
        result = {k: v for k, v in clean_metrics(metrics).items() if v is not None}
        result.update(
            {
                DONE: int(done),
                STATUS: self.state.status,
                ERROR: self.state.error or "",
                TRIAL_ID: self.state.trial_id,
                "btnet_trunk_hit": int(bool(self.state.trunk_hit)),
                "btnet_elapsed_s": self.state.elapsed_s,
            }
        )
        checkpoint = self.tune.Checkpoint.from_directory(str(staging))
        # Tune copies the checkpoint to the study's storage inside report().
        self.tune.report(result, checkpoint=checkpoint)
        shutil.rmtree(staging, ignore_errors=True)


def _restore(
    spec: TrialSpec, storage: StudyStorage, resume_points: Mapping[str, str], work: Path
) -> tuple[TrialState, Path | None]:
    """The trial's state and the core's resume folder, from the latest checkpoint if any."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None and spec.trial_id in resume_points:
        checkpoint = tune.Checkpoint(resume_points[spec.trial_id], filesystem=storage.fs)
        log.info("trial %s: resuming from %s", spec.trial_id, checkpoint.path)
    fresh = TrialState(trial_id=spec.trial_id, started_at=_now())
    if checkpoint is None:
        return fresh, None
    local = work / "restored"
    try:
        checkpoint.to_directory(str(local))
        state = TrialState.from_json((local / TRIAL_FILE).read_text())
    except (OSError, ValueError, TypeError) as exc:
        # A checkpoint of another version or a half-copied one: start the trial afresh.
        log.warning(
            "trial %s: cannot resume from %s (%s); starting afresh",
            spec.trial_id,
            checkpoint.path,
            exc,
        )
        return fresh, None
    state_dir = local / STATE_DIR
    return state, state_dir if state_dir.is_dir() else None


def _stage1_logger(trial_id: str, resolution: int | None) -> Callable[[dict], None]:
    def log_trunk(metrics: dict) -> None:
        what = "trunk" if resolution is None else f"trunk for {resolution}x{resolution}"
        log.info(
            "trial %s: %s epoch %s loss %.4f (%.0f img/s)",
            trial_id,
            what,
            metrics.get("epoch"),
            float(metrics.get("loss", math.nan)),
            float(metrics.get("images_per_s", 0.0)),
        )

    return log_trunk


def _configure_worker(study: Study) -> None:
    """Threads per trial from its CPUs, and log lines a person can follow."""
    torch = sys.modules.get("torch")  # the core imported it; a stand-in core may not
    if torch is not None:
        torch.set_num_threads(max(1, int(study.resources.cpus)))
    # Tune logs every checkpoint it copies at INFO; one line per trial report is noise.
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    for name, level in (("ablations", logging.INFO), ("btnet_core", logging.WARNING)):
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            logger.setLevel(level)
            logger.propagate = False


def clean_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Plain Python values: floats, ints and strings (numpy scalars converted)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            out[key] = int(value)
        elif isinstance(value, (int, float, str)) or value is None:
            out[key] = value
        elif hasattr(value, "item"):
            out[key] = value.item()
        else:
            out[key] = str(value)
    return out


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
