"""A sweep under faults, on a local Ray with a stand-in training core: a trial's worker process
killed with SIGKILL (OOM killer, pre-empted node) is retried from its last checkpoint, a trunk
whose training was killed is trained again (never a half-written one reused), and every trial
ends exactly once in the store; two whole studies writing to one store at once both complete,
nothing lost.

tests/ablations/test_runner.py covers a retry after a trial *raises* and a killed driver;
tests/ablations/test_trunk_cache.py a trunk training that raises; here the Ray worker process
itself dies, so nothing in it gets to clean up, release its lease or report.
tests/analysis/test_store_durability.py covers concurrent *writers* of the store; the
concurrent-studies test is the same situation one level up, with the runner's resume
bookkeeping, Tune's experiment folders (STORE/_ray/<study>) and the trunk cache
(STORE/_trunks) shared as well. The tests share one Ray session (each start costs seconds).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from ablations_support import FakeCore
from reliability_support import KillingCore

from ablations.runner import run_study
from ablations.storage import StudyStorage
from ablations.study import parse_study, plan_trials
from analysis.store import list_studies, read_curves, read_trials
from btnet_core.config import config_hash, trunk_key

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

STUDY = """name: killed_worker
kind: ablation
metric: acc_112_7
mode: max
seeds: [0]
concurrency: 3
retries: 1
resources: {cpus: 0.5}
baseline: btnet
base:
  model: {width: 0.0625, resolutions: [7]}
  data: {identities: 8, images_per_identity: 4}
  stage1: {epochs: 1, batch_size: 8}
  stage2: {epochs: 4, batch_size: 8}
  eval: {pairs: 40, resolutions: [7, 112]}
variants:
  killed_in_stage2: {stage2.lr: 0.3}
  own_trunk: {stage1.lr: 0.05}
"""
KILL_EPOCH_LR = 0.3


@pytest.fixture(scope="module")
def killed_run(ray_session):
    """One study whose workers die twice: killed_in_stage2 after its epoch-2 checkpoint,
    own_trunk (which has a trunk of its own) while training that trunk."""
    root = Path(tempfile.mkdtemp(prefix="btnet_rk_"))
    study = parse_study(STUDY, "killed_worker.yaml")
    own = study.trial_config(next(s for s in plan_trials(study) if s.variant == "own_trunk"))
    core = KillingCore(
        root / "log",
        kill_trunk_key=trunk_key(own),
        kill_epoch_lr=KILL_EPOCH_LR,
        trunk_s=0.3,
        step_s=0.05,
    )
    outcome = run_study(study, storage=str(root / "store"), core=core, trunk_lease_ttl_s=5.0)
    rows = read_trials(str(root / "store"), "killed_worker")
    yield study, core, outcome, rows, str(root / "store")
    shutil.rmtree(root, ignore_errors=True)


def test_every_trial_ends_exactly_once_after_workers_are_killed(killed_run):
    """Both killed trials complete on their retry; each trial is one completed row."""
    study, core, outcome, rows, _store = killed_run
    assert (Path(core.log_dir) / "killed-trunk").exists()  # the kills did happen
    assert len(list(Path(core.log_dir).glob("killed-*"))) == 2
    assert outcome.complete and outcome.tune_errors == 0
    assert sorted(rows.trial_id) == sorted(s.trial_id for s in plan_trials(study))
    assert rows.trial_id.is_unique
    assert (rows.status == "completed").all() and rows.error.isna().all()


def test_worker_killed_mid_trial_continues_from_its_last_checkpoint(killed_run):
    """Epochs 0-1 (in the checkpoint) ran once; epoch 2, cut short by the kill, ran twice."""
    study, core, _outcome, rows, _store = killed_run
    spec = next(s for s in plan_trials(study) if s.variant == "killed_in_stage2")
    cfg = study.trial_config(spec)
    digest = config_hash(cfg)
    epochs = Counter(
        line.split()[1] for line in core.lines("epochs.log") if line.startswith(digest)
    )
    assert epochs == {"0": 1, "1": 1, "2": 2, "3": 1}
    row = rows.set_index("trial_id").loc[spec.trial_id]
    assert row.final_acc_112_7 == pytest.approx(core.metrics(cfg, 4)["acc_112_7"])


def test_trunk_whose_training_was_killed_is_trained_again_not_reused(killed_run):
    """The killed trunk training is redone; the stored trunk is the complete one."""
    study, core, _outcome, rows, store = killed_run
    spec = next(s for s in plan_trials(study) if s.variant == "own_trunk")
    key = trunk_key(study.trial_config(spec))
    assert Counter(core.lines("trunks.log"))[key] == 2  # killed once, trained again
    stored = StudyStorage(store, "killed_worker").trunk_path(key, "trunk.pt")
    assert json.loads(Path(stored).read_text()) == {"key": key}
    assert rows.set_index("trial_id").loc[spec.trial_id, "trunk_key"] == key
    # The baseline's trunk (shared with killed_in_stage2) was trained exactly once.
    assert len(set(core.lines("trunks.log"))) == 2 and len(core.lines("trunks.log")) == 3


def study_text(name: str) -> str:
    """An ablation of three variants at two seeds, all sharing one trunk."""
    return f"""name: {name}
kind: ablation
metric: acc_112_7
mode: max
seeds: [0, 1]
concurrency: 2
resources: {{cpus: 0.5}}
baseline: btnet
base:
  model: {{width: 0.0625, resolutions: [7]}}
  data: {{identities: 8, images_per_identity: 4}}
  stage1: {{epochs: 1, batch_size: 8}}
  stage2: {{epochs: 3, batch_size: 8}}
  eval: {{pairs: 40, resolutions: [7, 112]}}
variants:
  no_bct: {{compat.type: none}}
  l2: {{compat.type: l2}}
"""


def test_two_studies_on_one_store_at_once_both_complete(ray_session, workdir):
    """Study A runs in a second driver process while study B runs here; afterwards each holds
    every one of its trials exactly once, with the metrics its trials produced."""
    store = f"{workdir}/store"
    (Path(workdir) / "a.yaml").write_text(study_text("concurrent_a"))
    address = ray_session.get_runtime_context().gcs_address
    other = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "study_driver.py"),
            str(Path(workdir) / "a.yaml"),
            store,
            str(Path(workdir) / "log_a"),
            address,
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        study_b = parse_study(study_text("concurrent_b"), "b.yaml")
        outcome = run_study(study_b, storage=store, core=FakeCore(Path(workdir) / "log_b"))
        _, err = other.communicate(timeout=240)
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
    assert other.returncode == 0, err[-2000:]
    assert outcome.complete and outcome.tune_errors == 0
    assert set(list_studies(store).study) >= {"concurrent_a", "concurrent_b"}
    a, b = read_trials(store, "concurrent_a"), read_trials(store, "concurrent_b")
    # The two studies really ran at the same time (each started before the other ended).
    assert a.start_time.min() < b.end_time.max() and b.start_time.min() < a.end_time.max()
    for name in ("concurrent_a", "concurrent_b"):
        study = parse_study(study_text(name), f"{name}.yaml")
        specs = {s.trial_id: s for s in plan_trials(study)}
        rows = read_trials(store, name)
        assert sorted(rows.trial_id) == sorted(specs) and rows.trial_id.is_unique
        assert (rows.status == "completed").all()
        for _, row in rows.iterrows():
            expected = FakeCore.metrics(study.trial_config(specs[row.trial_id]), 3)
            assert row.final_acc_112_7 == pytest.approx(expected["acc_112_7"])
        curves = read_curves(store, name, metrics=["acc_112_7"])
        assert len(curves) == 3 * len(specs)  # three evaluations per trial, each once
    # The trunk both studies share is stored once, complete.
    cfg = study_b.trial_config(plan_trials(study_b)[0])
    stored = StudyStorage(store, "concurrent_b").trunk_path(trunk_key(cfg), "trunk.pt")
    assert json.loads(Path(stored).read_text()) == {"key": trunk_key(cfg)}
