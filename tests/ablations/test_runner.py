"""A study end to end on a local Ray (with a stand-in for the training core): every trial is
a row of the store, shared trunks are trained once, failures are recorded and the study goes
on, retries continue from the last checkpoint, and a study resumes after its driver is killed
without running a finished trial again or losing or duplicating a row."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from ablations_support import FakeCore

from ablations.runner import run_study
from ablations.storage import StudyStorage
from ablations.study import parse_study, plan_trials
from analysis.store import finished_trial_ids, read_curves, read_trials, write_trial
from btnet_core.config import config_hash
from btnet_core.errors import ConfigError, StoreError

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent

TINY_BASE = """base:
  model: {width: 0.0625, resolutions: [7]}
  data: {identities: 8, images_per_identity: 4}
  stage1: {epochs: 1, batch_size: 8}
  stage2: {epochs: 3, batch_size: 8}
  eval: {pairs: 40, resolutions: [7, 112]}
"""


def ablation(name: str, variants: str, seeds: str = "[0, 1]", extra: str = "") -> str:
    return (
        f"name: {name}\nkind: ablation\nmetric: acc_112_7\nmode: max\nseeds: {seeds}\n"
        f"concurrency: 2\nbaseline: btnet\n{TINY_BASE}variants:\n{variants}{extra}"
    )


@pytest.fixture(scope="module")
def ablation_run(ray_session, tmp_path_factory):
    """One ablation run shared by the tests below (each Tune run costs seconds of start-up):
    the baseline, no_bct, a flaky variant that dies once at epoch 3, one that raises every
    time and one whose loss turns NaN; four trials at a time on half a CPU each, all sharing
    one trunk."""
    variants = (
        "  no_bct: {compat.type: none}\n  flaky: {stage2.lr: 0.3}\n"
        "  crash: {stage2.lr: 0.5}\n  nan: {stage2.lr: 0.7}\n"
    )
    extra = "retries: 1\nresources: {cpus: 0.5}\n"
    text = ablation("abl", variants, seeds="[0]", extra=extra)
    study = parse_study(text.replace("concurrency: 2", "concurrency: 4"), "abl.yaml")
    root = tmp_path_factory.mktemp("abl")
    core = FakeCore(root / "log", trunk_s=1.5, fail_lr=0.5, diverge_lr=0.7, fail_once_lr=0.3)
    outcome = run_study(study, storage=str(root / "store"), core=core)
    rows = read_trials(str(root / "store"), "abl")
    return study, core, outcome, rows, str(root / "store")


def test_ablation_rows_hold_every_trial_with_final_and_best_metrics(ablation_run):
    """Every variant is one row with its config, final/best metrics and costs."""
    study, _core, outcome, rows, _store = ablation_run
    assert sorted(rows.variant) == ["btnet", "crash", "flaky", "nan", "no_bct"]
    assert set(rows.trial_id) == {s.trial_id for s in plan_trials(study)}
    assert outcome.complete and len(outcome.recorded_ids) == 5
    ok = rows[rows.variant.isin(["btnet", "no_bct", "flaky"])]
    assert (ok.status == "completed").all() and ok.error.isna().all()
    assert (ok.kind == "ablation").all() and (ok.metric == "acc_112_7").all()
    assert (ok.iterations == 30).all() and (ok.macs_7 == 1000).all() and (ok.seed == 0).all()
    specs = {s.trial_id: s for s in plan_trials(study)}
    for _, r in ok.iterrows():
        cfg = study.trial_config(specs[r.trial_id])
        assert r.cfg_compat__type == cfg["compat"]["type"]
        expected = FakeCore.metrics(cfg, 3)["acc_112_7"]
        assert r.final_acc_112_7 == pytest.approx(expected)
        assert r.best_acc_112_7 == pytest.approx(expected)  # it grows every epoch
        assert r.best_loss == pytest.approx(1 / 3) and r.wall_time_s > 0
        assert r.cpu_hours == pytest.approx(0.5 * r.wall_time_s / 3600)
        assert r.protocol == "verification/test" and r.config_hash


def test_ablation_curves_hold_every_report(ablation_run):
    """Each completed trial has every metric at every evaluation interval, once."""
    _study, _core, _outcome, rows, store = ablation_run
    curves = read_curves(store, "abl")
    done = set(rows[rows.status == "completed"].trial_id)
    acc = curves[(curves.metric == "acc_112_7") & curves.trial_id.isin(done)]
    per_trial = acc.groupby("trial_id").iteration.apply(sorted)
    assert len(per_trial) == len(done) and all(its == [10, 20, 30] for its in per_trial)
    assert {"loss", "acc_7_7", "macs_7"} <= set(curves.metric)


def test_shared_trunk_is_trained_once_for_concurrent_trials(ablation_run):
    """Five trials that share a trunk start four at a time; it is trained exactly once."""
    _study, core, _outcome, rows, store = ablation_run
    assert len(core.lines("trunks.log")) == 1
    assert rows.trunk_key.nunique() == 1
    # Whichever trial got the lease trained it (the crashing one may have: it never reported,
    # so its row cannot say); every other trial reused it.
    known = rows[rows.trunk_cache_hit.notna()]
    assert len(known) >= 4 and known.trunk_cache_hit.astype(bool).sum() >= len(known) - 1
    assert Path(StudyStorage(store, "abl").trunk_path(rows.trunk_key[0], "trunk.pt")).is_file()


def test_failed_and_diverged_trials_are_recorded_and_the_study_goes_on(ablation_run):
    """A trial that raises (after its retry) is an 'error' row with its message, a NaN loss a
    'diverged' row; Tune counts only the raising one as an error."""
    _study, _core, outcome, rows, _store = ablation_run
    by = rows.set_index("variant")
    assert by.loc["crash", "status"] == "error"
    assert by.loc["crash", "error"] == "RuntimeError: boom at epoch 0"
    assert by.loc["nan", "status"] == "diverged"
    assert "loss is nan" in by.loc["nan", "error"]
    assert by.loc["nan", "best_acc_112_7"] > 0  # what it reached before diverging
    assert by.loc["crash", "trunk_key"] == by.loc["btnet", "trunk_key"]
    assert (outcome.completed, outcome.errored, outcome.diverged) == (3, 1, 1)
    assert outcome.tune_errors == 1


def test_retry_continues_from_the_last_checkpoint(ablation_run):
    """The flaky trial dies at epoch 3 once and restarts from its epoch-2 checkpoint."""
    study, core, _outcome, rows, _store = ablation_run
    for spec in plan_trials(study):
        if spec.variant != "flaky":
            continue
        digest = config_hash(study.trial_config(spec))
        epochs = Counter(
            line.split()[1] for line in core.lines("epochs.log") if line.startswith(digest)
        )
        assert epochs == {"0": 1, "1": 1, "2": 2}  # nothing before the failure ran twice
        assert rows.set_index("trial_id").loc[spec.trial_id, "status"] == "completed"


def test_small_sweep_end_to_end(ray_session, workdir):
    """A TPE sweep under ASHA: every point at every seed, rows without a variant, each trial
    ended at one of ASHA's rungs or at the last epoch, and no errors."""
    text = (
        "name: swp\nkind: sweep\nmetric: acc_112_7\nmode: max\nseeds: [0, 1]\nconcurrency: 2\n"
        "scheduler: {type: asha, grace_period: 1, reduction_factor: 2}\n"
        f"{TINY_BASE}search: {{algorithm: tpe, seed: 1}}\nsamples: 3\nspace:\n"
        "  compat.type: {choice: [bct, l2]}\n"
        "  compat.weight: {uniform: [0.5, 2.0], when: {compat.type: l2}}\n"
        "  stage2.lr: {loguniform: [0.01, 0.1]}\n"
    )
    study = parse_study(text, "swp.yaml")
    outcome = run_study(study, storage=f"{workdir}/store", core=FakeCore(Path(workdir) / "l"))

    assert outcome.tune_errors == 0 and outcome.completed == 6 and outcome.complete
    rows = read_trials(f"{workdir}/store", "swp")
    assert len(rows) == 6 and rows.variant.isna().all() and (rows.kind == "sweep").all()
    assert sorted(Counter(rows.cfg_stage2__lr).values()) == [2, 2, 2]  # each point, 2 seeds
    assert rows.final_acc_112_7.notna().all()
    assert set(rows.iterations) <= {10, 20, 30}  # rungs at epochs 1 and 2, or the end


def test_existing_study_needs_resume(workdir):
    """Running a study the store already holds is refused (nothing is overwritten)."""
    study = parse_study(ablation("held", "  no_bct: {compat.type: none}\n"), "held.yaml")
    write_trial(
        f"{workdir}/store",
        {
            "study": "held",
            "kind": "ablation",
            "trial_id": "x",
            "variant": "btnet",
            "status": "completed",
        },
    )
    with pytest.raises(StoreError, match="already has 1 finished trial.*--resume"):
        run_study(study, storage=f"{workdir}/store", core=FakeCore(Path(workdir) / "log"))


def test_resume_after_the_driver_is_killed(ray_session, workdir):
    """SIGKILL the driver mid-study, then --resume: finished trials are not run again, an
    interrupted trial continues from its checkpoint, and every trial has exactly one row."""
    variants = "  no_bct: {compat.type: none}\n  l2: {compat.type: l2}\n"
    text = ablation("killed", variants).replace("stage2: {epochs: 3", "stage2: {epochs: 4")
    study_file = Path(workdir) / "killed.yaml"
    study_file.write_text(text)
    store, log_dir = f"{workdir}/store", Path(workdir) / "log"
    storage = StudyStorage(store, "killed")
    temp = f"/tmp/ray_btnet_k{os.getpid() % 10000}"
    driver = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "killable_driver.py"),
            str(study_file),
            store,
            str(log_dir),
            temp,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = finished_trial_ids(store, "killed")
            records = storage.list_json(storage.path("_ray", "killed", "trials"))
            in_flight = [r for r in records if r["trial_id"] not in done and r["checkpoint"]]
            if len(done) >= 2 and in_flight:
                break
            assert driver.poll() is None, "the driver ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("the study did not get far enough to be killed")
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        # The driver's Ray dies with it; its helper processes are in the driver's session.
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(temp, ignore_errors=True)
    before = read_trials(store, "killed").set_index("trial_id")
    records = {
        r["trial_id"]: r for r in storage.list_json(storage.path("_ray", "killed", "trials"))
    }
    core = FakeCore(log_dir, trunk_s=0.3, step_s=0.05)
    epochs_before = Counter(core.lines("epochs.log"))
    study = parse_study(text, str(study_file))

    outcome = run_study(study, storage=store, resume=True, core=core)

    assert outcome.complete and outcome.tune_errors == 0
    after = read_trials(store, "killed").set_index("trial_id")
    assert sorted(after.index) == sorted(s.trial_id for s in plan_trials(study))
    assert set(outcome.recorded_ids).isdisjoint(before.index)  # finished ones not re-run
    for tid in before.index:  # and their rows not rewritten
        assert after.loc[tid, "written_at"] == before.loc[tid, "written_at"]
    epochs_after = Counter(core.lines("epochs.log"))
    hashes = {s.trial_id: config_hash(study.trial_config(s)) for s in plan_trials(study)}
    for tid in before.index:
        new = [
            k
            for k in epochs_after
            if k.startswith(hashes[tid]) and epochs_after[k] != epochs_before.get(k, 0)
        ]
        assert not new, f"finished trial {tid} ran again: {new}"
    for tid, rec in records.items():
        if tid in before.index or not rec["checkpoint"]:
            continue
        reported = int(rec["checkpoint"].rsplit("_", 1)[1]) + 1  # epochs in its checkpoint
        for epoch in range(reported):
            assert epochs_after[f"{hashes[tid]} {epoch}"] == 1, (tid, epoch)
    assert len(after.index) == len(set(after.index))
    # Each trial's results equal those of an uninterrupted run with the same seed (the stand-in
    # core is deterministic: its metrics after the last epoch, from config and seed alone).
    specs = {s.trial_id: s for s in plan_trials(study)}
    for tid, row in after.iterrows():
        expected = FakeCore.metrics(study.trial_config(specs[tid]), 4)
        assert row.status == "completed" and row.final_acc_112_7 == pytest.approx(
            expected["acc_112_7"]
        ), tid


REAL_BASE = """base:
  model: {width: 0.0625, embedding_size: 32, resolutions: [7, 14]}
  data: {identities: 12, images_per_identity: 6, held_out: 4}
  stage1: {epochs: 2, batch_size: 16}
  stage2: {epochs: 2, batch_size: 16}
  eval: {pairs: 40, folds: 4, resolutions: [7, 14, 112], flip: false}
"""


def test_real_core_ablation_end_to_end(ray_session, workdir):
    """btnet_core itself behind the trainable: a tiny BTNet against the upsample baseline
    shares one trunk, reports real accuracies and costs, and keeps its branch weights."""
    text = (
        "name: real\nkind: ablation\nmetric: acc_112_7\nmode: max\nseeds: [0]\n"
        f"concurrency: 2\nbaseline: btnet\n{REAL_BASE}"
        "variants:\n  upsample: {method: upsample}\n"
    )
    study = parse_study(text, "real.yaml")
    outcome = run_study(study, storage=f"{workdir}/store")

    assert outcome.tune_errors == 0 and outcome.completed == 2 and outcome.complete
    rows = read_trials(f"{workdir}/store", "real").set_index("variant")
    assert rows.final_acc_112_7.between(0, 1).all() and rows.final_acc_7_7.between(0, 1).all()
    # The 7x7 branch path costs less than the HR trunk the upsample baseline runs.
    assert rows.loc["btnet", "macs_7"] < rows.loc["upsample", "macs_7"]
    assert rows.loc["btnet", "branch_params_7"] > 0
    assert sorted(rows.trunk_cache_hit) == [False, True]
    assert rows.loc["btnet", "iterations"] > 0 and rows.loc["btnet", "best_loss"] > 0
    curves = read_curves(f"{workdir}/store", "real")
    btnet = curves[
        (curves.trial_id == rows.loc["btnet", "trial_id"]) & (curves.metric == "acc_112_7")
    ]
    assert len(btnet) == 2  # one point per stage-2 epoch
    storage = StudyStorage(f"{workdir}/store", "real")
    record = storage.read_json(storage.trial_record_path(rows.loc["btnet", "trial_id"]))
    assert Path(record["checkpoint"], "final", "branch_7.pt").is_file()


def test_gpus_the_cluster_lacks_are_refused_before_any_trial(ray_session, workdir):
    """Asking for GPUs on a CPU-only cluster is one clear error instead of a study that
    waits forever for resources; nothing is written."""
    study = parse_study(
        ablation(
            "gpu", "  no_bct: {compat.type: none}\n", extra="resources: {cpus: 1, gpus: 0.5}\n"
        ),
        "gpu.yaml",
    )
    with pytest.raises(
        ConfigError,
        match=r"resources\.gpus: 0\.5 per trial, but the Ray "
        r"cluster has 0 GPU",
    ):
        run_study(study, storage=f"{workdir}/store", core=FakeCore(Path(workdir) / "log"))
    assert not Path(f"{workdir}/store").exists()


def test_multi_objective_sweep_end_to_end(ray_session, workdir):
    """NSGA-II over accuracy (max) and MACs (min): every point is a row holding both
    objectives; the row's metric/mode columns name the first objective."""
    text = (
        "name: mo\nkind: sweep\nmetric: [acc_112_7, macs_7]\nmode: [max, min]\nseeds: [0]\n"
        f"concurrency: 2\n{TINY_BASE}search: {{algorithm: nsga2, seed: 0}}\nsamples: 4\n"
        "space:\n  model.insertion_depth: {randint: [0, 1]}\n"
        "  compat.type: {choice: [bct, l2, none]}\n  stage2.lr: {loguniform: [0.01, 0.1]}\n"
    )
    study = parse_study(text, "mo.yaml")
    outcome = run_study(study, storage=f"{workdir}/store", core=FakeCore(Path(workdir) / "l"))

    assert outcome.tune_errors == 0 and outcome.complete
    rows = read_trials(f"{workdir}/store", "mo")
    assert len(rows) == outcome.completed >= 1  # NSGA-II may propose a point twice
    assert rows.final_acc_112_7.notna().all() and rows.final_macs_7.notna().all()
    assert (rows["metric"] == "acc_112_7").all() and (rows["mode"] == "max").all()
