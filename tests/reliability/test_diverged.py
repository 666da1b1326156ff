"""A loss that turns infinite (not only NaN, which tests/btnet_core/test_train.py injects)
ends the training with a DivergedError that says so, and leaves no finished trunk behind;
the sweep records such a trial as ``diverged`` (tests/ablations/test_runner.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from btnet_core import heads
from btnet_core.config import resolve_config
from btnet_core.errors import DivergedError
from btnet_core.train import train_trunk

TINY = {
    "device": "cpu",
    "model": {"width": 0.0625, "embedding_size": 32, "resolutions": [7]},
    "data": {"identities": 8, "images_per_identity": 4, "held_out": 2},
    "stage1": {"epochs": 1, "batch_size": 16},
}


@pytest.mark.slow
@pytest.mark.parametrize("bad", [float("inf"), float("-inf")])
def test_infinite_loss_raises_diverged_and_saves_no_trunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: float
) -> None:
    """An infinite loss at the first step: DivergedError naming it, no trunk.pt written."""
    monkeypatch.setattr(heads.ArcFace, "forward", lambda self, e, y: e.sum() * 0 + bad)
    with pytest.raises(DivergedError, match=r"loss is -?inf .*diverged"):
        train_trunk(resolve_config(TINY), tmp_path)
    assert not (tmp_path / "trunk.pt").exists()
