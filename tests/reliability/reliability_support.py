"""Support for the reliability tests: a stand-in training core whose Ray worker process kills
itself with SIGKILL (as the OOM killer or a pre-empted node would), once per marker.

It extends tests/ablations/ablations_support.FakeCore: the training of the trunk whose key is
``kill_trunk_key`` dies once after writing part of a file, and stage 2 with
``stage2.lr == kill_epoch_lr`` dies once at epoch ``kill_epoch`` (after logging that epoch, so
tests can count that it ran twice). A marker file in ``log_dir`` records each kill, so the
retry runs normally.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ablations_support import FakeCore
from ray import cloudpickle

from btnet_core.config import Config, config_hash, trunk_key

# Ray workers cannot import this test helper by name: ship its code with the pickle.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _kill_self_once(marker: Path) -> None:
    if marker.exists():
        return
    marker.write_text("killed")
    os.kill(os.getpid(), signal.SIGKILL)


class KillingCore(FakeCore):
    """FakeCore whose worker process is SIGKILLed once in trunk training or in stage 2."""

    def __init__(
        self,
        log_dir: Path,
        kill_trunk_key: str | None = None,
        kill_epoch_lr: float | None = None,
        kill_epoch: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(log_dir, **kwargs)
        self.kill_trunk_key = kill_trunk_key
        self.kill_epoch_lr = kill_epoch_lr
        self.kill_epoch = kill_epoch

    def train_trunk(
        self,
        cfg: Config,
        out_dir: Path,
        resolution: int | None = None,
        callback: Callable[[dict], None] | None = None,
    ) -> Path:
        key = trunk_key(cfg, resolution)
        if key == self.kill_trunk_key and not (Path(self.log_dir) / "killed-trunk").exists():
            final = Path(out_dir) / self.trunk_file(resolution)
            if not final.exists():
                self._log("trunks.log", key)
                Path(out_dir).mkdir(parents=True, exist_ok=True)
                # Half a trunk on disk, as a training killed while writing would leave.
                (Path(out_dir) / ".trunk.pt.partial").write_text('{"key": ')
                _kill_self_once(Path(self.log_dir) / "killed-trunk")
        return super().train_trunk(cfg, out_dir, resolution, callback)

    def train_branches(
        self,
        cfg: Config,
        out_dir: Path,
        trunks: dict[int | None, Path],
        callback: Callable[[dict, Path], None] | None = None,
        resume_from: Path | None = None,
    ) -> dict[str, Any]:
        if self.kill_epoch_lr is None or cfg["stage2"]["lr"] != self.kill_epoch_lr:
            return super().train_branches(cfg, out_dir, trunks, callback, resume_from)
        marker = Path(self.log_dir) / f"killed-{config_hash(cfg)}"

        def report(metrics: dict, state_dir: Path) -> None:
            if callback is not None:
                callback(metrics, state_dir)
            # Killed right after the epoch before kill_epoch reported its checkpoint, once the
            # next epoch has started (and been logged).
            if metrics["epoch"] == self.kill_epoch and not marker.exists():
                self._log("epochs.log", f"{config_hash(cfg)} {self.kill_epoch}")
                _kill_self_once(marker)

        return super().train_branches(cfg, out_dir, trunks, report, resume_from)
