"""The faces a run trains and evaluates on, chosen by the config's ``data`` section.

Every source is presented the same way: an integer label per face and a way to fetch a
batch of faces as uint8 NHWC arrays at 112x112. Synthetic faces and image folders are held
in memory; a RecordIO file is read lazily, record by record, so MS1MV3-sized sets work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from btnet_core.config import Config
from btnet_core.data import fit_face
from btnet_core.errors import DataError
from btnet_core.model import TRUNK_INPUT

log = logging.getLogger(__name__)


class FaceSource(Protocol):
    """Labelled faces that can be fetched by index."""

    labels: np.ndarray

    def fetch(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 array (len(indices), 112, 112, 3)."""
        ...


@dataclass
class ArrayFaces:
    """Faces held in memory."""

    images: np.ndarray
    labels: np.ndarray
    description: str

    def fetch(self, indices: Sequence[int]) -> np.ndarray:
        return self.images[np.asarray(indices)]


class RecordFaces:
    """Faces read from an InsightFace RecordIO file on demand, resized to 112 if needed."""

    def __init__(self, path: str | Path):
        from btnet_core.formats.recordio import RecordIOReader

        self.path = Path(path)
        rec = self.path if self.path.suffix == ".rec" else self.path / "train.rec"
        self.reader = RecordIOReader(rec)
        self.labels = np.asarray(self.reader.labels, dtype=np.int64)
        self.description = f"RecordIO {rec} ({len(self.labels)} faces)"

    def fetch(self, indices: Sequence[int]) -> np.ndarray:
        out = np.empty((len(indices), TRUNK_INPUT, TRUNK_INPUT, 3), dtype=np.uint8)
        for j, i in enumerate(indices):
            out[j] = fit_face(self.reader[int(i)][0], TRUNK_INPUT)
        return out


@dataclass
class Split:
    """A run's faces: training identities and disjoint held-out identities for evaluation."""

    source: FaceSource
    train_index: np.ndarray
    train_labels: np.ndarray  # re-indexed 0..num_classes-1
    eval_index: np.ndarray
    eval_labels: np.ndarray
    num_classes: int
    description: str


def load_source(cfg: Config) -> FaceSource:
    """The faces named by ``cfg.data``, checked (DataError on a missing/empty/bad set)."""
    data = cfg["data"]
    if data["source"] == "synthetic":
        from btnet_core.data import synthetic_faceset

        fs = synthetic_faceset(
            data["identities"], data["images_per_identity"], TRUNK_INPUT, seed=cfg["seed"]
        )
        return ArrayFaces(
            fs.images,
            fs.labels,
            f"synthetic faces ({len(fs)} images, {fs.num_identities} identities)",
        )
    if data["source"] == "folder":
        from btnet_core.data import load_image_folder

        fs = load_image_folder(data["path"], size=TRUNK_INPUT)
        return ArrayFaces(
            fs.images,
            fs.labels,
            f"image folder {data['path']} ({len(fs)} images, {fs.num_identities} identities)",
        )
    return RecordFaces(data["path"])


def split_faces(cfg: Config, source: FaceSource | None = None) -> Split:
    """Split identities into training and held-out, deterministically by the run's seed."""
    source = source if source is not None else load_source(cfg)
    labels = np.asarray(source.labels)
    ids = np.unique(labels)
    held = cfg["data"]["held_out"]
    n_eval = int(round(held * len(ids))) if isinstance(held, float) else int(held)
    if n_eval < 2 or len(ids) - n_eval < 2:
        raise DataError(
            f"{getattr(source, 'description', 'data')}: {len(ids)} identities cannot be split "
            f"into at least 2 training and 2 held-out identities with data.held_out={held}"
        )
    rng = np.random.default_rng([cfg["seed"], 7919])
    eval_ids = np.sort(rng.choice(ids, size=n_eval, replace=False))
    is_eval = np.isin(labels, eval_ids)
    train_index = np.flatnonzero(~is_eval)
    eval_index = np.flatnonzero(is_eval)
    train_ids = np.unique(labels[train_index])
    remap = {int(old): new for new, old in enumerate(train_ids)}
    train_labels = np.array([remap[int(x)] for x in labels[train_index]], dtype=np.int64)
    desc = getattr(source, "description", "data")
    return Split(
        source, train_index, train_labels, eval_index, labels[eval_index], len(train_ids), desc
    )
