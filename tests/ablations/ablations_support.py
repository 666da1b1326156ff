"""Support for the ablations and reliability tests: a short Ray temp dir, the shared fixtures
(a Ray session per module, a short scratch folder per test; each test folder's conftest imports
them) and a stand-in for btnet_core.train with the same four functions, for fast Ray plumbing
tests.

It trains nothing: a "trunk" is a small file written after ``trunk_s`` seconds, stage 2 is a
loop of ``stage2.epochs`` steps of ``step_s`` seconds, each reporting metrics computed from the
config. Every trunk training and every stage-2 epoch appends a line to a log in ``log_dir``,
so tests can count how often things ran. ``stage2.lr`` selects failures: ``fail_lr`` raises
an error at the first epoch, ``diverge_lr`` a DivergedError at the second. The real
``train_trunk`` and ``train_branches`` are exercised by the demo test and tests/btnet_core.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ray import cloudpickle

from btnet_core.config import Config, config_hash, trunk_key
from btnet_core.errors import DivergedError

# Ray workers cannot import this test module by name: ship its code with the pickle.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def ray_temp_dir() -> str:
    """A short temp dir: Ray's socket paths must stay under the OS limit (107 bytes)."""
    return f"/tmp/ray_btnet_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def ray_session() -> Iterator[Any]:
    """One local 2-CPU Ray for all tests of a module; shut down after them."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    temp = ray_temp_dir()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=80 * 1024**2,
        _temp_dir=temp,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def workdir() -> Iterator[str]:
    """A fresh short folder for a test's store and logs (Ray socket paths must stay short)."""
    path = tempfile.mkdtemp(prefix="btnet_t_")
    yield path
    shutil.rmtree(path, ignore_errors=True)


class FakeCore:
    """See the module docstring."""

    def __init__(
        self,
        log_dir: Path,
        trunk_s: float = 0.5,
        step_s: float = 0.05,
        fail_lr: float | None = None,
        diverge_lr: float | None = None,
        fail_once_lr: float | None = None,
    ):
        self.log_dir = str(log_dir)
        self.trunk_s = trunk_s
        self.step_s = step_s
        self.fail_lr = fail_lr
        self.diverge_lr = diverge_lr
        self.fail_once_lr = fail_once_lr

    # The four functions the trainable uses -------------------------------------------------
    def trunk_resolutions(self, cfg: Config) -> list[int | None]:
        if cfg["method"] == "separate":
            return [r for r in cfg["eval"]["resolutions"] if r != 112] + [None]
        return [None]

    def trunk_file(self, resolution: int | None = None) -> str:
        return "trunk.pt" if resolution is None else f"trunk_r{resolution}.pt"

    def train_trunk(
        self,
        cfg: Config,
        out_dir: Path,
        resolution: int | None = None,
        callback: Callable[[dict], None] | None = None,
    ) -> Path:
        out_dir = Path(out_dir)
        final = out_dir / self.trunk_file(resolution)
        if final.exists():
            return final
        out_dir.mkdir(parents=True, exist_ok=True)
        self._log("trunks.log", trunk_key(cfg, resolution))
        time.sleep(self.trunk_s)
        if callback is not None:
            callback({"epoch": 1, "loss": 1.0, "images_per_s": 100.0})
        tmp = final.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": trunk_key(cfg, resolution)}))
        os.replace(tmp, final)
        return final

    def train_branches(
        self,
        cfg: Config,
        out_dir: Path,
        trunks: dict[int | None, Path],
        callback: Callable[[dict, Path], None] | None = None,
        resume_from: Path | None = None,
    ) -> dict[str, Any]:
        for path in trunks.values():
            assert Path(path).is_file(), f"trunk {path} missing"
        out_dir = Path(out_dir)
        state_dir = out_dir / "stage2"
        state_dir.mkdir(parents=True, exist_ok=True)
        start = 0
        if resume_from is not None:
            start = json.loads((Path(resume_from) / "state.json").read_text())["epoch"]
        lr = cfg["stage2"]["lr"]
        self._log("nodes.log", _node_id())
        metrics: dict[str, Any] = {}
        for epoch in range(start, cfg["stage2"]["epochs"]):
            time.sleep(self.step_s)
            self._log("epochs.log", f"{config_hash(cfg)} {epoch}")
            if self.fail_lr is not None and lr == self.fail_lr:
                raise RuntimeError(f"boom at epoch {epoch}")
            once = Path(self.log_dir) / f"failed-once-{config_hash(cfg)}"
            if (
                self.fail_once_lr is not None
                and lr == self.fail_once_lr
                and epoch == 2
                and (not once.exists())
            ):
                once.write_text("x")
                raise RuntimeError("worker lost at epoch 2")
            if self.diverge_lr is not None and lr == self.diverge_lr and epoch >= 1:
                raise DivergedError(f"stage2: loss is nan at epoch {epoch + 1}")
            metrics = self.metrics(cfg, epoch + 1)
            (state_dir / "state.json").write_text(json.dumps({"epoch": epoch + 1}))
            if callback is not None:
                callback(metrics, state_dir)
        if not metrics:
            metrics = self.metrics(cfg, cfg["stage2"]["epochs"])
        (out_dir / "final_metrics.json").write_text(json.dumps(metrics))
        return metrics

    # Helpers -------------------------------------------------------------------------------
    @staticmethod
    def metrics(cfg: Config, epoch: int) -> dict[str, Any]:
        """Deterministic metrics that depend on the config and grow with the epoch."""
        bonus = {"bct": 0.05, "l2": 0.03, "cosine": 0.02, "none": 0.0}[cfg["compat"]["type"]]
        acc = 0.5 + bonus + 0.01 * cfg["seed"] + 0.02 * epoch + 0.1 * cfg["stage2"]["lr"]
        return {
            "stage": "stage2",
            "epoch": epoch,
            "iteration": 10 * epoch,
            "loss": 1.0 / epoch,
            "acc_112_7": acc,
            "acc_7_7": acc - 0.1,
            "acc_112_7_branch": acc,
            "macs_7": 1000 + 100 * cfg["model"]["insertion_depth"],
            "params_7": 50,
            "branch_params_7": 5,
            "protocol": "verification/test",
        }

    def _log(self, name: str, line: str) -> None:
        Path(self.log_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(os.path.join(self.log_dir, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def lines(self, name: str) -> list[str]:
        """The lines of one of the logs (empty when nothing was logged)."""
        path = Path(self.log_dir) / name
        return path.read_text().splitlines() if path.exists() else []


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray
        return "local"
