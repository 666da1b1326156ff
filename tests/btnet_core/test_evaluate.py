"""btnet_core/evaluate.py: open-set identification of held-out faces during training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from btnet_core.config import resolve_config
from btnet_core.degrade import Degradation
from btnet_core.errors import ConfigError, DataError
from btnet_core.evaluate import Evaluator, OpenSetProbes, PairSet, primary_metrics

N_IDS, PER_ID = 8, 4


def _faces() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat faces whose grey level names the identity (level 20 i + 10), 4 per identity."""
    labels = np.repeat(np.arange(N_IDS), PER_ID)
    images = np.empty((len(labels), 112, 112, 3), dtype=np.uint8)
    images[:] = (20 * labels + 10).astype(np.uint8)[:, None, None, None]
    index = np.arange(100, 100 + len(labels))  # source indices are not positions
    return images, index, labels


def _fetch(images: np.ndarray, index: np.ndarray):
    where = {int(i): k for k, i in enumerate(index)}
    return lambda idx: images[[where[int(i)] for i in idx]]


def _oracle(x: torch.Tensor, r: int) -> torch.Tensor:
    """Reads the identity off the grey level (degrading a flat face keeps it flat)."""
    level = (x.mean(dim=(1, 2, 3)) + 1) * 127.5
    ids = torch.round((level - 10) / 20).long()
    return torch.nn.functional.one_hot(ids, N_IDS).float()


def test_probes_split_identities_into_enrolled_and_unseen() -> None:
    """Half the identities enrolled, one gallery face each; the rest only unmated; seeded."""
    images, index, labels = _faces()
    s = OpenSetProbes.from_labels(_fetch(images, index), index, labels, seed=3)
    assert len(s.gallery_ids) == N_IDS // 2 == len(set(s.gallery_ids.tolist()))
    assert len(s.mated_ids) == (N_IDS // 2) * (PER_ID - 1)
    assert set(s.mated_ids.tolist()) == set(s.gallery_ids.tolist())
    assert s.n_unmated == (N_IDS // 2) * PER_ID
    # the images follow the order gallery, mated, unmated: their grey level gives the identity
    level_ids = (s.images[:, 0, 0, 0].astype(int) - 10) // 20
    n_g, n_m = len(s.gallery_ids), len(s.mated_ids)
    assert level_ids[:n_g].tolist() == s.gallery_ids.tolist()
    assert level_ids[n_g : n_g + n_m].tolist() == s.mated_ids.tolist()
    assert not set(level_ids[n_g + n_m :].tolist()) & set(s.gallery_ids.tolist())
    again = OpenSetProbes.from_labels(_fetch(images, index), index, labels, seed=3)
    assert np.array_equal(again.images, s.images)
    other = OpenSetProbes.from_labels(_fetch(images, index), index, labels, seed=4)
    assert not np.array_equal(other.gallery_ids, s.gallery_ids) or not np.array_equal(
        other.images, s.images
    )


def test_too_few_identities_or_faces_is_a_clear_error() -> None:
    """Fewer than 4 identities, or an enrolled identity with one face, raise DataError."""
    images, index, labels = _faces()
    keep = labels < 3
    with pytest.raises(DataError, match="at least 4 held-out identities, got 3"):
        OpenSetProbes.from_labels(_fetch(images, index), index[keep], labels[keep], 0)
    single = np.r_[0, np.arange(PER_ID, len(labels))]  # identity 0 keeps one face
    for seed in range(20):  # some seed enrols identity 0
        try:
            OpenSetProbes.from_labels(_fetch(images, index), index[single], labels[single], seed)
        except DataError as exc:
            assert "identity 0 has a single face" in str(exc)
            break
    else:
        pytest.fail("no seed enrolled identity 0")


def _evaluator(openset: OpenSetProbes) -> Evaluator:
    images = openset.images
    pairs = PairSet(images, np.array([0, 1]), np.array([2, 3]), np.array([True, False]))
    return Evaluator(
        pairs,
        [7, 14],
        Degradation("area", True, 0.0, 0.0, None),
        torch.device("cpu"),
        folds=2,
        flip=False,
        openset=openset,
    )


def test_a_perfect_embedding_identifies_every_probe_at_every_resolution() -> None:
    """The oracle path: TPIR 1, rank-1 1, AUC 1 at 7, 14 and 112; names carry the path."""
    images, index, labels = _faces()
    s = OpenSetProbes.from_labels(_fetch(images, index), index, labels, seed=0)
    out = _evaluator(s).open_set("oracle", _oracle)
    for r in (7, 14, 112):
        assert out[f"osi_tpir_{r}_oracle"] == 1.0
        assert out[f"osi_rank1_{r}_oracle"] == 1.0
        assert out[f"osi_auc_{r}_oracle"] == pytest.approx(1.0)
    assert primary_metrics(out, "oracle")["osi_tpir_7"] == 1.0


def test_a_confused_embedding_scores_lower() -> None:
    """A path that maps every identity to the next one's code misses every mated probe."""
    images, index, labels = _faces()
    s = OpenSetProbes.from_labels(_fetch(images, index), index, labels, seed=0)

    def shifted(x: torch.Tensor, r: int) -> torch.Tensor:
        e = _oracle(x, r)
        return e if r == 112 else torch.roll(e, 1, dims=1)  # gallery right, probes wrong

    out = _evaluator(s).open_set("shifted", shifted)
    assert out["osi_rank1_7_shifted"] < 1.0 and out["osi_tpir_7_shifted"] < 1.0
    assert out["osi_rank1_112_shifted"] == 1.0


def test_openset_is_a_validated_config_switch() -> None:
    """eval.openset is off by default and must be a boolean."""
    assert resolve_config({})["eval"]["openset"] is False
    assert resolve_config({"eval": {"openset": True}})["eval"]["openset"] is True
    with pytest.raises(ConfigError, match="eval.openset"):
        resolve_config({"eval": {"openset": "yes"}})
