"""Run a study on Ray Tune and record every trial in the result store.

:func:`run_study` is the whole job of ``btnet-lab sweep``:

1. look at the store: a study that already has trials there only runs with ``resume=True``,
   and then only the trials the store does not hold (the searcher leaves the others out);
2. start or join Ray (``address``), check the cluster can hold one trial, and start the trunk
   coordinator (:mod:`ablations.trunk_cache`);
3. run the trials with ``tune.Tuner``; :class:`StoreCallback` writes each trial's row and
   curves to the store the moment it ends, keeps each trial's record (what it is and where
   its latest checkpoint is) for a later resume, and logs one progress line per trial;
4. summarise: how many trials completed, diverged or failed, and the best so far.

Why resume does not use ``Tuner.restore``: Tune's experiment state is a pickle written every
few seconds, so after a SIGKILL it can lag behind the store (a finished trial shown as
running, run again and recorded twice) and unpickling it runs whatever it holds. The store,
written atomically per trial, is the record of what finished; the trial records (JSON) say
where each unfinished trial's latest checkpoint is, and a resumed trial continues from it.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune import Callback

from ablations.rows import error_line, trial_row
from ablations.searcher import FinishedTrial, StudySearcher
from ablations.storage import StudyStorage
from ablations.summary import pareto_indices, summary_lines
from ablations.trainable import STATUS, TRIAL_FILE, TrialState, make_trainable
from ablations.trials import Study, TrialSpec
from ablations.trunk_cache import coordinator_name, start_coordinator
from btnet_core.config import trunk_key
from btnet_core.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "results"


@dataclass
class StudyOutcome:
    """How a run of a study ended.

    Attributes:
        study: The study's name.
        storage: The store root.
        planned: Trials of the whole study.
        already_done: Trials the store held before this run.
        completed: Trials of this run that completed.
        diverged: Trials of this run that diverged (NaN/inf loss).
        errored: Trials of this run that raised (after their retries).
        unrecorded: Trials that ended but whose row could not be written.
        wall_s: Seconds this run took.
        cpu_hours: CPU hours of this run's trials (resources x wall time).
        gpu_hours: GPU hours likewise.
        best: The best completed trial so far: trial id, variant, seed, metric values.
        tune_errors: ``ResultGrid.num_errors`` of this run (trials that raised).
        recorded_ids: Trials of this run written to the store.
    """

    study: str
    storage: str
    planned: int
    already_done: int = 0
    completed: int = 0
    diverged: int = 0
    errored: int = 0
    unrecorded: int = 0
    wall_s: float = 0.0
    cpu_hours: float = 0.0
    gpu_hours: float = 0.0
    best: dict[str, Any] | None = None
    tune_errors: int = 0
    recorded_ids: list[str] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return self.already_done + len(self.recorded_ids)

    @property
    def complete(self) -> bool:
        """Every planned trial is in the store."""
        return self.finished >= self.planned and self.unrecorded == 0

    @property
    def failed(self) -> int:
        return self.errored + self.diverged


def run_study(
    study: Study,
    storage: str | None = None,
    address: str | None = None,
    resume: bool = False,
    *,
    core: Any = None,
    ray_init: Mapping[str, Any] | None = None,
    trunk_lease_ttl_s: float = 120.0,
) -> StudyOutcome:
    """Run (or resume) a study; return how it went.

    Args:
        study: A validated study (:func:`ablations.study.load_study`).
        storage: The store root (path or pyarrow URI); default the study's ``storage`` key,
            else ``./results``.
        address: A Ray cluster to join (``auto``, ``ray://host:port``); None starts a local
            Ray unless one is already running in this process.
        resume: Finish a study the store already holds trials of.
        core: Training backend for tests (see :func:`ablations.trainable.make_trainable`).
        ray_init: Extra ``ray.init`` arguments for a local Ray (``num_cpus`` ...).
        trunk_lease_ttl_s: Seconds before a silent trunk trainer's lease expires.

    Raises:
        StoreError: The store already holds the study and ``resume`` is False.
        ConfigError: The cluster cannot hold one trial's resources.
    """
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's own tables repeat what the progress lines say; keep its classic, quiet output.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    check_data(study, strict=not address)
    root = storage or study.storage or DEFAULT_STORAGE
    store = StudyStorage(root, study.name)
    finished_ids = _finished_ids(store.root, study.name)
    records = _TrialRecords(store)
    finished = _finished_trials(store.root, study, finished_ids, records)
    searcher = StudySearcher(study, finished, on_new_trial=records.new_trial)
    if (finished_ids or records.data) and not resume:
        if finished_ids and searcher.total_remaining == 0:
            # Running a finished study again (the README's `make demo` twice) is no mistake:
            # there is nothing to do, and the results are shown again.
            log.info(
                "study %s is already complete in %s (%d trials); nothing to run. To run it "
                "again, choose another --storage or study name",
                study.name,
                store.root,
                len(finished_ids),
            )
            _log_summary(study, store.root)
            return StudyOutcome(
                study.name,
                store.root,
                planned=searcher.planned_total,
                already_done=len(finished_ids),
            )
        held = f"{len(finished_ids)} finished trial(s)" if finished_ids else "an unfinished run"
        raise StoreError(
            f"{store.root}: study '{study.name}' already has {held} there; pass --resume to "
            "finish it, or choose another --storage (or study name) to start afresh"
        )
    if searcher.plan_ids is not None and finished_ids - searcher.plan_ids:
        log.warning(
            "study %s: %d trial(s) in the store are not part of the study as written now (was "
            "the file edited?); they stay in the store and do not count towards this study",
            study.name,
            len(finished_ids - searcher.plan_ids),
        )
        finished_ids = finished_ids & searcher.plan_ids
    outcome = StudyOutcome(
        study.name, store.root, planned=searcher.planned_total, already_done=len(finished_ids)
    )
    _log_plan(study, store, searcher, finished_ids, records)
    if searcher.total_remaining == 0:
        log.info("study %s: every trial is already in the store; nothing to run", study.name)
        _log_summary(study, store.root)
        return outcome

    resume_points = {
        tid: rec["checkpoint"]
        for tid, rec in records.data.items()
        if tid not in finished_ids and rec.get("checkpoint")
    }
    started_ray = False
    coordinator = None
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if address:
            kwargs["address"] = address
        else:
            # A local Ray for one study: trials pass checkpoints by path, not through the
            # object store, so a small one leaves the memory to training.
            kwargs["object_store_memory"] = 256 * 1024**2
            kwargs.update(ray_init or {})
        ray.init(**kwargs)
        started_ray = True
    try:
        _check_resources(study, ray.cluster_resources(), strict=not address)
        name = coordinator_name(store)
        coordinator = start_coordinator(name, ttl_s=trunk_lease_ttl_s)
        callback = StoreCallback(study, store, records, outcome, core=core)
        trainable = make_trainable(study, store.root, name, core=core, resume_points=resume_points)
        tuner = tune.Tuner(
            tune.with_resources(trainable, study.resources.to_ray()),
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=_scheduler(study),
                num_samples=searcher.total_remaining,
                max_concurrent_trials=study.concurrency,
                reuse_actors=True,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
                **(
                    {}
                    if study.multi_objective
                    else {"metric": study.metrics[0], "mode": study.modes[0]}
                ),
            ),
            run_config=tune.RunConfig(
                name=f"run-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}",
                storage_path=store.ray_dir,
                callbacks=[callback],
                failure_config=tune.FailureConfig(max_failures=study.retries),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                verbose=0,
            ),
        )
        grid = tuner.fit()
        # An Optuna search can find fewer distinct points than samples asked for.
        outcome.planned = searcher.planned_total
        outcome.wall_s = time.monotonic() - callback.started
        outcome.tune_errors = grid.num_errors
        if grid.num_errors != outcome.errored:
            log.warning(
                "study %s: Tune counts %d errored trial(s), the store %d",
                study.name,
                grid.num_errors,
                outcome.errored,
            )
    finally:
        if coordinator is not None:
            ray.kill(coordinator)  # its leases mean nothing once the trials are gone
        if started_ray:
            ray.shutdown()
    _log_summary(study, store.root)
    _log_end(study, outcome)
    return outcome


class StoreCallback(Callback):
    """Tune callback: a store row per finished trial, trial records, progress lines."""

    def __init__(
        self,
        study: Study,
        store: StudyStorage,
        records: _TrialRecords,
        outcome: StudyOutcome,
        core: Any = None,
    ) -> None:
        self.study = study
        self.store = store
        self.records = records
        self.outcome = outcome
        self.core = core
        self.started = time.monotonic()
        self._trial_start: dict[str, float] = {}
        self._completed_values: list[list[float]] = []

    # Tune hooks ---------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trial_start.setdefault(trial.trial_id, time.monotonic())

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        spec = TrialSpec.from_tune(trial.config)
        self.records.checkpoint(spec, checkpoint.path)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        state = self._state(trial)
        result = trial.last_result or {}
        if state is not None and state.status in ("completed", "diverged"):
            status = state.status
        elif result.get(STATUS) == "diverged":
            status = "diverged"
        else:
            # Finished, or stopped early by the scheduler (ASHA): a finished trial either way,
            # whose iterations column says how far it got.
            status = "completed"
        error = (state.error if state else None) if status == "diverged" else None
        self._record(trial, trials, state, status, error or result.get("btnet_error") or None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        text = None
        if trial.error_file and Path(trial.error_file).is_file():
            text = Path(trial.error_file).read_text(errors="replace")
        elif hasattr(trial, "get_error"):
            text = trial.get_error()
        self._record(trial, trials, self._state(trial), "error", error_line(text))

    # helpers ------------------------------------------------------------------------------
    def _state(self, trial: Any) -> TrialState | None:
        checkpoint = trial.checkpoint
        if checkpoint is None:
            return None
        try:
            with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{TRIAL_FILE}") as f:
                return TrialState.from_json(f.read().decode())
        except (OSError, ValueError, TypeError) as exc:
            log.warning("trial %s: cannot read its last checkpoint (%s)", trial.trial_id, exc)
            return None

    def _record(
        self, trial: Any, trials: list, state: TrialState | None, status: str, error: str | None
    ) -> None:
        from analysis.store import write_trial

        spec = TrialSpec.from_tune(trial.config)
        cfg = self.study.trial_config(spec)
        result = trial.last_result or {}
        started = self._trial_start.pop(trial.trial_id, None)
        core = self.core or importlib.import_module("btnet_core.train")
        row, curves = trial_row(
            self.study,
            spec,
            cfg,
            state,
            status,
            error,
            fallback_metrics=result,
            fallback_wall_s=time.monotonic() - started if started is not None else None,
            fallback_trunk_keys=[trunk_key(cfg, r) for r in core.trunk_resolutions(cfg)],
        )
        # Tune calls its callbacks from the driver's one event loop: no two run at once.
        try:
            write_trial(self.store.root, row, curves)
        except StoreError as exc:  # the study goes on; the outcome says it is incomplete
            self.outcome.unrecorded += 1
            log.error("trial %s: its row was not stored: %s", spec.trial_id, exc)
            return
        o = self.outcome
        o.recorded_ids.append(spec.trial_id)
        o.cpu_hours += row["cpu_hours"]
        o.gpu_hours += row["gpu_hours"]
        if status == "completed":
            o.completed += 1
            self._update_best(spec, row)
            values = [row.get(f"final_{m}") for m in self.study.metrics]
            if all(v is not None and math.isfinite(v) for v in values):
                self._completed_values.append(values)
        elif status == "diverged":
            o.diverged += 1
        else:
            o.errored += 1
        running = sum(1 for t in trials if t.status == "RUNNING" and t is not trial)
        log.info("%s", self._progress_line(spec, row, status, error, running))

    def _update_best(self, spec: TrialSpec, row: Mapping[str, Any]) -> None:
        m, mode = self.study.metrics[0], self.study.modes[0]
        value = row.get(f"final_{m}")
        if value is None or not math.isfinite(value):
            return
        best = self.outcome.best
        if best is None or (value > best[m] if mode == "max" else value < best[m]):
            self.outcome.best = {
                "trial_id": spec.trial_id,
                "variant": spec.variant,
                "seed": spec.seed,
                **{k: row.get(f"final_{k}") for k in self.study.metrics},
            }

    def _progress_line(
        self, spec: TrialSpec, row: Mapping[str, Any], status: str, error: str | None, running: int
    ) -> str:
        o, study = self.outcome, self.study
        who = f"{spec.variant} seed {spec.seed}" if spec.variant else spec.trial_id
        values = " ".join(f"{m}={_fmt(row.get(f'final_{m}'))}" for m in study.metrics)
        if status == "completed":
            reuse = "trunk reused" if row.get("trunk_cache_hit") else "trained its trunk"
            what = f"{values} in {_duration(row['wall_time_s'])}, {reuse}"
        else:
            what = f"{status.upper()}: {error}"
        best = ""
        if study.multi_objective:
            front = len(pareto_indices(self._completed_values, study.modes))
            best = f" | Pareto front {front} trial(s)" if front else ""
        elif o.best is not None:
            b = o.best
            name = f"{b['variant']} s{b['seed']}" if b.get("variant") else b["trial_id"]
            best = f" | best {study.metrics[0]}={_fmt(b.get(study.metrics[0]))} ({name})"
        elapsed = time.monotonic() - self.started
        return (
            f"[{study.name}] {o.finished}/{o.planned} {who}: {what} | done "
            f"{o.finished}, running {running}, failed {o.failed}{best} | "
            f"{_duration(elapsed)} elapsed, {o.cpu_hours:.2f} CPU-h, "
            f"{o.gpu_hours:.2f} GPU-h"
        )


class _TrialRecords:
    """Per-trial JSON records in the study's storage: what the trial is and where its latest
    checkpoint lies (the resume point of an interrupted run)."""

    def __init__(self, store: StudyStorage) -> None:
        self.store = store
        self.data: dict[str, dict[str, Any]] = {}
        for rec in store.list_json(store.path("_ray", store.study, "trials")):
            if isinstance(rec, dict) and isinstance(rec.get("trial_id"), str):
                self.data[rec["trial_id"]] = rec

    def new_trial(self, spec: TrialSpec) -> None:
        rec = dict(self.data.get(spec.trial_id, {}))
        rec.update(
            {
                "trial_id": spec.trial_id,
                "group": spec.group,
                "variant": spec.variant,
                "seed": spec.seed,
                "overrides": spec.overrides,
            }
        )
        rec.setdefault("checkpoint", None)
        self._write(rec)

    def checkpoint(self, spec: TrialSpec, path: str) -> None:
        rec = dict(self.data.get(spec.trial_id, {})) or {
            "trial_id": spec.trial_id,
            "group": spec.group,
            "variant": spec.variant,
            "seed": spec.seed,
            "overrides": spec.overrides,
        }
        rec["checkpoint"] = path
        self._write(rec)

    def _write(self, rec: dict[str, Any]) -> None:
        self.data[rec["trial_id"]] = rec
        self.store.write_json(self.store.trial_record_path(rec["trial_id"]), rec)


def _finished_ids(root: str, study: str) -> set[str]:
    from analysis.store import finished_trial_ids

    return set(finished_trial_ids(root, study))


def _finished_trials(
    root: str, study: Study, ids: set[str], records: _TrialRecords
) -> dict[str, FinishedTrial]:
    """What the searcher needs of the trials already in the store."""
    if not ids:
        return {}
    values: dict[str, tuple[float, ...] | None] = {}
    if study.kind == "sweep" and study.algorithm in ("tpe", "nsga2"):
        from analysis.store import read_trials

        # All columns: a metric column is missing while no trial has completed.
        frame = read_trials(root, study=study.name)
        for row in frame.to_dict("records"):
            vals = [row.get(f"final_{m}") for m in study.metrics]
            ok = row.get("status") == "completed" and all(
                isinstance(v, (int, float)) and math.isfinite(v) for v in vals
            )
            values[row["trial_id"]] = tuple(float(v) for v in vals) if ok else None
    out: dict[str, FinishedTrial] = {}
    for tid in ids:
        rec = records.data.get(tid, {})
        out[tid] = FinishedTrial(
            tid, rec.get("group") or tid, dict(rec.get("overrides") or {}), values.get(tid)
        )
    return out


def _check_resources(study: Study, cluster: Mapping[str, float], strict: bool) -> None:
    have_cpu, have_gpu = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    problem = None
    if study.resources.cpus > have_cpu:
        problem = (
            f"resources.cpus: {study.resources.cpus:g} per trial, but the Ray cluster "
            f"has {have_cpu:g} CPU(s)"
        )
    elif study.resources.gpus > have_gpu:
        problem = (
            f"resources.gpus: {study.resources.gpus:g} per trial, but the Ray cluster "
            f"has {have_gpu:g} GPU(s); set resources.gpus: 0 to train on CPUs"
        )
    if problem is None:
        return
    if strict:
        raise ConfigError(f"{study.path}: {problem}")
    log.warning(
        "%s: %s (an autoscaling cluster may add them; trials wait until then)", study.path, problem
    )


def _data_paths(study: Study) -> list[tuple[str, str]]:
    """(where, path) of every local data folder the study's trials read."""
    found = [("base", study.base["data"])]
    found += [
        (f"variants.{name}", {"source": study.base["data"]["source"], "path": o["data.path"]})
        for name, o in (study.variants or {}).items()
        if "data.path" in o
    ]
    return [
        (where, d["path"])
        for where, d in found
        if d["source"] != "synthetic" and d["path"] and "://" not in str(d["path"])
    ]


def check_data(study: Study, strict: bool) -> None:
    """A missing data folder fails the study before any trial starts (on a local Ray), instead
    of failing every trial; on a cluster the folder may exist only on the workers: a warning."""
    for where, path in _data_paths(study):
        if Path(path).exists():
            continue
        problem = f"{where}: data.path {path} does not exist"
        if strict:
            raise ConfigError(f"{study.path}: {problem}")
        log.warning("%s: %s here (the cluster's workers may have it)", study.path, problem)


def _scheduler(study: Study) -> Any:
    if study.scheduler.type != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    s = study.scheduler
    max_t = s.max_t or max(int(study.base["stage2"]["epochs"]), s.grace_period)
    # Epochs, not reports, measure a trial's budget: each report is one evaluation interval.
    return ASHAScheduler(
        time_attr="epoch",
        max_t=max_t,
        grace_period=s.grace_period,
        reduction_factor=s.reduction_factor,
    )


def _trial_name(trial: Any) -> str:
    return str(trial.config.get("trial_id", trial.trial_id))


def _log_plan(
    study: Study,
    store: StudyStorage,
    searcher: StudySearcher,
    finished: set[str],
    records: _TrialRecords,
) -> None:
    r = study.resources
    what = (
        f"ablation of {len(study.variants)} variant(s) against {study.baseline}"
        if study.kind == "ablation"
        else f"{study.algorithm} sweep over {len(study.space)} key(s)"
    )
    log.info(
        "study %s: %s, seeds %s: %d trial(s), %g CPU%s per trial; store %s",
        study.name,
        what,
        list(study.seeds),
        searcher.planned_total,
        r.cpus,
        f" + {r.gpus:g} GPU" if r.gpus else "",
        store.root,
    )
    if finished:
        from_checkpoint = sum(
            1 for t, rec in records.data.items() if t not in finished and rec.get("checkpoint")
        )
        log.info(
            "study %s: resuming: %d trial(s) already in the store, %d to run (%d from "
            "their last checkpoint)",
            study.name,
            len(finished),
            searcher.total_remaining,
            from_checkpoint,
        )


def _log_summary(study: Study, root: str) -> None:
    from analysis.store import read_trials

    try:
        rows = read_trials(root, study.name)
    except StoreError as exc:
        log.warning("[%s] cannot read the store back for a summary: %s", study.name, exc)
        return
    for line in summary_lines(study, rows):
        log.info("%s", line)


def _log_end(study: Study, o: StudyOutcome) -> None:
    state = "finished" if o.complete else "stopped before the end"
    log.info(
        "[%s] %s: %d/%d trials in the store (this run: %d completed, %d diverged, %d "
        "errors) in %s, %.2f CPU-h, %.2f GPU-h; results in %s",
        study.name,
        state,
        o.finished,
        o.planned,
        o.completed,
        o.diverged,
        o.errored,
        _duration(o.wall_s),
        o.cpu_hours,
        o.gpu_hours,
        o.storage,
    )
    if not o.complete:
        log.info("[%s] run the same command with --resume to finish it", study.name)


def _fmt(value: Any) -> str:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return "nan"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
