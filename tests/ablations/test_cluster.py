"""A study on an existing two-node Ray cluster (``--address``) with its store given as a
filesystem URI: trials run on both nodes, trunks are still trained once (the coordinator is a
named actor, not a local lock), and every trial is a row of the store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ablations_support import FakeCore, ray_temp_dir

from ablations.runner import run_study
from ablations.study import parse_study
from analysis.store import read_trials

pytestmark = pytest.mark.slow

STUDY = """name: two_nodes
kind: ablation
metric: acc_112_7
mode: max
seeds: [0, 1]
concurrency: 2
resources: {cpus: 1}
base:
  model: {width: 0.0625, resolutions: [7]}
  stage2: {epochs: 2}
  eval: {pairs: 40, resolutions: [7, 112]}
variants:
  no_bct: {compat.type: none}
"""


@pytest.fixture
def two_node_cluster():
    """A head and a worker node of one CPU each, on this machine."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    temp = ray_temp_dir()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "object_store_memory": 80 * 1024**2,
            "temp_dir": temp,
        },
    )
    cluster.add_node(num_cpus=1, object_store_memory=80 * 1024**2)
    cluster.wait_for_nodes()
    yield cluster
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def test_study_runs_on_a_two_node_cluster(two_node_cluster, workdir):
    """Joined by address, the study uses both nodes and records every trial once."""
    import ray

    study = parse_study(STUDY, "two_nodes.yaml")
    core = FakeCore(Path(workdir) / "log", trunk_s=1.0, step_s=0.3)
    store = f"file://{workdir}/store"
    outcome = run_study(study, storage=store, address=two_node_cluster.address, core=core)

    assert not ray.is_initialized()  # the runner let go of the cluster it joined
    assert outcome.complete and outcome.tune_errors == 0 and outcome.completed == 4
    assert len(set(core.lines("nodes.log"))) == 2
    assert len(core.lines("trunks.log")) == 2  # one per seed, whichever node trained it
    rows = read_trials(store, "two_nodes")
    assert sorted(zip(rows.variant, rows.seed, strict=True)) == [
        ("baseline", 0),
        ("baseline", 1),
        ("no_bct", 0),
        ("no_bct", 1),
    ]
