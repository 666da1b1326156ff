"""Two-stage training: the trunk stays bit-for-bit unchanged, branch checkpoints hold only the
branch, runs resume exactly, divergence is caught, and real faces are learnt."""

from pathlib import Path

import pytest
import torch

from btnet_core import checkpoints
from btnet_core.config import resolve_config
from btnet_core.errors import DivergedError
from btnet_core.faces import split_faces
from btnet_core.model import build_btnet
from btnet_core.train import train, train_branches, train_trunk

ORL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "orl"

TINY = {
    "model": {"width": 0.0625, "embedding_size": 32, "resolutions": [7, 14]},
    "data": {"identities": 12, "images_per_identity": 6, "held_out": 4},
    "stage1": {"epochs": 2, "batch_size": 16},
    "stage2": {"epochs": 2, "batch_size": 16},
    "eval": {"pairs": 40, "folds": 4, "resolutions": [7, 14, 112], "flip": False},
}


def tiny(**overrides):
    return resolve_config(TINY).replace(overrides)


@pytest.fixture(scope="module")
def trunk_dir(tmp_path_factory):
    cfg = tiny()
    out = tmp_path_factory.mktemp("trunk")
    train_trunk(cfg, out)
    return out


def state_copy(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_trunk_weights_and_bn_statistics_unchanged_by_branch_training(trunk_dir, tmp_path):
    cfg = tiny()
    before = checkpoints.load(trunk_dir / "trunk.pt")["trunk"]
    seen = []
    train_branches(
        cfg, tmp_path, {None: trunk_dir / "trunk.pt"}, callback=lambda m, d: seen.append(m)
    )
    # Rebuild the model the way stage 2 does and compare every trunk tensor, buffers included.
    split = split_faces(cfg)
    trunk, _ = checkpoints.load_trunk(
        trunk_dir / "trunk.pt", cfg, split.num_classes, torch.device("cpu")
    )
    for key, value in trunk.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert len(seen) == 2 and seen[-1]["epoch"] == 2
    assert {
        "acc_112_7",
        "acc_112_7_branch",
        "acc_112_7_upsample",
        "macs_7_branch",
        "images_per_s",
        "achieved_flops",
        "loss",
    } <= seen[-1].keys()


def test_authors_trainable_bn_option_does_change_trunk_statistics(trunk_dir, tmp_path):
    cfg = tiny(**{"model.trunk_bn": "trainable"})
    train_branches(cfg, tmp_path, {None: trunk_dir / "trunk.pt"})
    before = checkpoints.load(trunk_dir / "trunk.pt")["trunk"]
    after = checkpoints.load(tmp_path / "trunk_modified.pt")["trunk"]
    changed = [k for k in before if "running_mean" in k and not torch.equal(before[k], after[k])]
    assert changed


def test_branch_checkpoint_holds_only_that_branch(trunk_dir, tmp_path):
    cfg = tiny()
    train_branches(cfg, tmp_path, {None: trunk_dir / "trunk.pt"})
    model = build_btnet(cfg["model"])
    for r in (7, 14):
        obj = checkpoints.load(tmp_path / f"branch_{r}.pt")
        assert obj["meta"]["resolution"] == r
        state = obj["branch"]
        assert set(state) == set(model.branch(r).state_dict())
        n_params = sum(
            v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k
        )
        assert n_params == sum(p.numel() for p in model.branch(r).parameters())
        assert not any(k.startswith(("head.", "trunk.", "layer")) for k in state)
    assert checkpoints.load_branch(tmp_path / "branch_7.pt", model, cfg) == 7


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    cfg = tiny(**{"stage1.epochs": 3})
    whole = tmp_path / "whole"
    train_trunk(cfg, whole)

    class Stop(Exception):
        pass

    def stop_after_first(metrics):
        if metrics["epoch"] == 1:
            raise Stop

    broken = tmp_path / "broken"
    with pytest.raises(Stop):
        train_trunk(cfg, broken, callback=stop_after_first)
    assert not (broken / "trunk.pt").exists()
    train_trunk(cfg, broken)
    a = checkpoints.load(whole / "trunk.pt")["trunk"]
    b = checkpoints.load(broken / "trunk.pt")["trunk"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_raises_diverged(tmp_path, monkeypatch):
    from btnet_core import heads

    monkeypatch.setattr(heads.ArcFace, "forward", lambda self, e, y: e.sum() * float("nan"))
    with pytest.raises(DivergedError, match="diverged"):
        train_trunk(tiny(), tmp_path)
    assert not (tmp_path / "trunk.pt").exists()


def test_checkpoint_of_another_network_is_refused(trunk_dir):
    from btnet_core.errors import CheckpointError

    cfg = tiny(**{"model.network": "r34"})
    with pytest.raises(CheckpointError, match="network='r18'"):
        checkpoints.load_trunk(trunk_dir / "trunk.pt", cfg, 8, torch.device("cpu"))


@pytest.mark.slow
@pytest.mark.skipif(not ORL.is_dir(), reason="ORL faces not found at ../shared/data/orl")
def test_orl_training_verifies_held_out_people_well_above_chance(tmp_path):
    cfg = resolve_config(
        {
            "model": {"width": 0.0625, "embedding_size": 64, "resolutions": [14]},
            "data": {"source": "folder", "path": str(ORL), "held_out": 10},
            "head": {"type": "cosface", "scale": 32.0},
            "stage1": {"epochs": 10, "batch_size": 30, "lr": 0.1},
            "stage2": {"epochs": 2, "batch_size": 30},
            "eval": {"pairs": 300, "resolutions": [14, 112], "every": 10},
        }
    )
    metrics = train(cfg, tmp_path)
    # 10 held-out people never seen in training; chance is 0.5.
    assert metrics["acc_112_112"] > 0.75, metrics
    assert (tmp_path / "final_metrics.json").exists()
