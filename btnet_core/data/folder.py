"""In-memory face sets: loading an image folder, splitting identities, verification pairs.

A :class:`FaceSet` is a labelled set of aligned faces held in memory as one uint8 array. It is
what the training loop and the evaluation take, whichever source it came from: an image folder
(:func:`load_image_folder`, one sub-folder per identity) or the built-in synthetic faces
(:func:`synthetic_faceset`).

Face recognition is evaluated on identities never seen in training, so :func:`split_identities`
splits by identity, not by image, and :func:`verification_pairs` draws balanced same/different
pairs from the held-out part.

NOTE: a face set lives in memory (N x 112 x 112 x 3 bytes: 3.7 GB per 100k faces); sets of
MS1M's size need a streaming reader instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from btnet_core.data.synthetic import synthetic_faces
from btnet_core.errors import ConfigError, DataError

__all__ = [
    "FIT_MODES",
    "IMAGE_EXTENSIONS",
    "FaceSet",
    "load_image_folder",
    "split_identities",
    "synthetic_faceset",
    "verification_pairs",
]

logger = logging.getLogger(__name__)

#: File name endings read as images (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".tif", ".webp")
#: How :func:`load_image_folder` makes a non-square image square.
FIT_MODES: tuple[str, ...] = ("pad", "crop", "stretch")


@dataclass
class FaceSet:
    """A labelled set of aligned faces, in memory.

    Attributes:
        images: uint8 ``(N, H, W, 3)`` RGB images, all of one size.
        labels: int64 ``(N,)`` identity of each image, in ``0..num_identities-1``.
        identities: The name of each label (``identities[label]``).
        source: Where the set came from, for logs and error messages.
    """

    images: np.ndarray
    labels: np.ndarray
    identities: list[str]
    source: str

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise DataError(
                f"{self.source}: images must be uint8 (N, H, W, 3), "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(
                f"{self.source}: labels must be {images.shape[0]} integers, "
                f"got {labels.dtype} {tuple(labels.shape)}"
            )
        self.labels = labels.astype(np.int64, copy=False)
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.identities)):
            raise DataError(
                f"{self.source}: labels must be in 0..{len(self.identities) - 1}, "
                f"got {labels.min()}..{labels.max()}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_identities(self) -> int:
        """Number of identities (labels), including any without images in a subset."""
        return len(self.identities)

    def subset(self, indices: Sequence[int] | np.ndarray) -> FaceSet:
        """The images at ``indices`` (integers or a boolean mask), with the same label space.

        Labels are not re-indexed, so ``identities`` stays valid; :func:`split_identities`
        makes sets whose labels are compact.
        """
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False)
        return FaceSet(self.images[idx], self.labels[idx], list(self.identities), self.source)


def _list(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as exc:
        raise DataError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from None


def _is_image_file(path: Path) -> bool:
    return (
        not path.name.startswith(".")
        and path.suffix.lower() in IMAGE_EXTENSIONS
        and path.is_file()
    )


def _read_face(path: Path, size: int, fit: str) -> np.ndarray:
    """One image file as a uint8 ``(size, size, 3)`` RGB array."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode.startswith("I;16") or image.mode == "I":
                # 16-bit greyscale (PIL reads it as "I;16" or, by version and format, as 32-bit
                # "I"): keep the top byte, where PIL's own conversion would clip at 255. NOTE: a
                # genuinely 32-bit integer image is taken as 16-bit too (clipped); face sets
                # in that format are not known to exist.
                top = np.asarray(image).astype(np.int64) >> 8
                image = Image.fromarray(np.clip(top, 0, 255).astype(np.uint8))
            image = image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: unreadable image ({reason})") from None
    return fit_face(np.asarray(image), size, fit)


def fit_face(image: np.ndarray, size: int = 112, fit: str = "pad") -> np.ndarray:
    """Any face image as a uint8 ``(size, size, 3)`` RGB array, the way folders are read.

    A non-square face is padded to a square with its edge pixels (``pad``, its geometry
    kept), cropped to its centre (``crop``) or stretched (``stretch``); then resized with PIL,
    by area averaging to shrink and bicubic to enlarge. Greyscale is repeated to RGB.
    """
    arr = np.asarray(image, dtype=np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    height, width = arr.shape[:2]
    if width != height:
        if fit == "crop":
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            arr = arr[top : top + side, left : left + side]
        elif fit == "pad":
            side = max(width, height)
            dy, dx = side - height, side - width
            pad = ((dy // 2, dy - dy // 2), (dx // 2, dx - dx // 2), (0, 0))
            arr = np.pad(arr, pad, mode="edge")
    if arr.shape[:2] != (size, size):
        shrink = arr.shape[1] > size
        resample = Image.Resampling.BOX if shrink else Image.Resampling.BICUBIC
        arr = np.asarray(Image.fromarray(arr).resize((size, size), resample=resample))
    return np.ascontiguousarray(arr, dtype=np.uint8)


def load_image_folder(path: str | Path, size: int = 112, *, fit: str = "pad") -> FaceSet:
    """Load aligned faces stored as one sub-folder of images per identity.

    Identities are the sub-folders, in sorted name order (labels 0, 1, ...); images within an
    identity are read in sorted name order. Hidden files and folders (``.name``) are ignored, as
    are files of other types; loose files at the top level are ignored too. Greyscale images
    become RGB by repetition.

    Args:
        path: The folder.
        size: Side length the faces are resized to.
        fit: How a non-square image becomes square before resizing: ``pad`` (default) pads the
            short side symmetrically with its edge pixels, keeping the face's geometry (a
            112x96 crop of the SphereFace alignment becomes the 112x112 InsightFace one);
            ``crop`` takes the centred square; ``stretch`` resizes without keeping the aspect.

    Returns:
        The face set; ``source`` is the folder path.

    Raises:
        DataError: The folder is missing, not a folder, has no identity sub-folders, an identity
            has fewer than two images, or an image cannot be read (the message names it).
        ConfigError: ``size`` or ``fit`` is not allowed.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"load_image_folder: size must be a positive integer, got {size!r}")
    if fit not in FIT_MODES:
        raise ConfigError(
            f"load_image_folder: fit {fit!r} is not allowed; allowed: {', '.join(FIT_MODES)}"
        )
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected one sub-folder of images per identity)")
    folders = sorted(p for p in _list(root) if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: empty, no identity sub-folders (expected one per identity)")
    files: list[list[Path]] = []
    for folder in folders:
        images = sorted(p for p in _list(folder) if _is_image_file(p))
        if len(images) < 2:
            raise DataError(
                f"{folder}: identity {folder.name!r} has {len(images)} image(s), needs at least 2 "
                f"(extensions read: {' '.join(IMAGE_EXTENSIONS)})"
            )
        files.append(images)
    total = sum(len(f) for f in files)
    logger.info("loading %d images of %d identities from %s", total, len(folders), root)
    array = np.empty((total, size, size, 3), dtype=np.uint8)
    labels = np.empty(total, dtype=np.int64)
    i = 0
    for label, images in enumerate(files):
        for file in images:
            array[i] = _read_face(file, size, fit)
            labels[i] = label
            i += 1
            if i % 20_000 == 0:
                logger.info("loaded %d of %d images from %s", i, total, root)
    return FaceSet(array, labels, [f.name for f in folders], str(root))


def split_identities(faces: FaceSet, held_out: int | float, seed: int) -> tuple[FaceSet, FaceSet]:
    """Split a face set into disjoint identities: a training part and a held-out part.

    Args:
        faces: The set to split.
        held_out: Number of held-out identities (an int >= 1) or their share (a float in
            (0, 1), rounded, at least one identity).
        seed: Which identities are held out is a function of the seed (and the set) only.

    Returns:
        ``(train, held_out)``; each has its labels re-indexed to ``0..K-1`` in the order of the
        original labels, its own ``identities``, and the images in their original order.

    Raises:
        ConfigError: ``held_out`` is not a positive int or a float in (0, 1).
        DataError: Either part would have fewer than two identities with images.
    """
    if isinstance(held_out, bool) or not isinstance(
        held_out, (int, float, np.integer, np.floating)
    ):
        raise ConfigError(f"held_out: must be a count >= 1 or a share in (0, 1), got {held_out!r}")
    present = np.unique(faces.labels)
    k = present.size
    if isinstance(held_out, (float, np.floating)):
        if not 0.0 < held_out < 1.0:
            raise ConfigError(f"held_out: a share must be in (0, 1), got {held_out!r}")
        n_held = max(1, int(round(held_out * k)))
    else:
        if held_out < 1:
            raise ConfigError(f"held_out: a count must be >= 1, got {held_out!r}")
        n_held = int(held_out)
    if n_held < 2 or k - n_held < 2:
        raise DataError(
            f"{faces.source}: {k} identities cannot be split into {k - n_held} for training and "
            f"{n_held} held out; each part needs at least 2"
        )
    rng = np.random.default_rng(seed)
    chosen = np.zeros(k, dtype=bool)
    chosen[rng.permutation(k)[:n_held]] = True
    return (
        _restrict(faces, present[~chosen], f"train split of {faces.source}, seed {seed}"),
        _restrict(faces, present[chosen], f"held-out split of {faces.source}, seed {seed}"),
    )


def _restrict(faces: FaceSet, keep: np.ndarray, source: str) -> FaceSet:
    """The images of the labels in ``keep`` (sorted), relabelled 0..len(keep)-1."""
    new_label = np.full(faces.num_identities, -1, dtype=np.int64)
    new_label[keep] = np.arange(keep.size)
    mask = new_label[faces.labels] >= 0
    return FaceSet(
        faces.images[mask],
        new_label[faces.labels[mask]],
        [faces.identities[i] for i in keep],
        source,
    )


def verification_pairs(
    labels: np.ndarray, n_pairs: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw balanced verification pairs: half same identity, half different.

    Pairs are distinct (no pair twice, in either order) and never pair an image with itself.
    They come interleaved, same and different in turn, so every contiguous block (a fold of
    10-fold cross-validation) is balanced; the order within a pair is random.

    When the labels cannot supply ``n_pairs // 2`` distinct pairs of one kind (few images per
    identity), both kinds are cut to what the scarcer kind allows, so the set stays balanced and
    fewer pairs come back; a warning is logged. An odd ``n_pairs`` gives ``n_pairs - 1``.

    Args:
        labels: Identity label of each image.
        n_pairs: Number of pairs wanted (>= 2).
        seed: The pairs are a function of (labels, n_pairs, seed).

    Returns:
        ``(idx1, idx2, issame)``: int64 indices into ``labels`` and the bool same-identity flag.

    Raises:
        ConfigError: ``n_pairs`` is not an integer >= 2.
        DataError: No identity has two images, or all images share one identity.
    """
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, (int, np.integer)) or n_pairs < 2:
        raise ConfigError(f"verification pairs: n_pairs must be an integer >= 2, got {n_pairs!r}")
    labels = np.asarray(labels)
    n = labels.size
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    n_same_all = int((counts * (counts - 1) // 2).sum())
    n_diff_all = n * (n - 1) // 2 - n_same_all
    if n_same_all == 0:
        raise DataError("verification pairs: no identity has two images, so no same pair exists")
    if n_diff_all == 0:
        raise DataError("verification pairs: all images have one identity, so no different pair")
    want = int(n_pairs) // 2
    half = min(want, n_same_all, n_diff_all)
    if half < want:
        logger.warning(
            "verification pairs: %d pairs asked, the labels supply only %d same and %d "
            "different; returning %d of each",
            n_pairs,
            n_same_all,
            n_diff_all,
            half,
        )
    rng = np.random.default_rng(seed)
    same = _draw_pairs(inverse, counts, half, same=True, total=n_same_all, rng=rng)
    diff = _draw_pairs(inverse, counts, half, same=False, total=n_diff_all, rng=rng)
    pairs = np.empty((2 * half, 2), dtype=np.int64)
    pairs[0::2], pairs[1::2] = same, diff
    swap = rng.random(2 * half) < 0.5
    pairs[swap] = pairs[swap, ::-1]
    issame = np.zeros(2 * half, dtype=bool)
    issame[0::2] = True
    return pairs[:, 0].copy(), pairs[:, 1].copy(), issame


# Below this many candidate pairs, all are listed and sampled without replacement; above it,
# random pairs are drawn and duplicates rejected (cheap because they are then rare).
_ENUMERATE_LIMIT = 2_000_000


def _draw_pairs(
    inverse: np.ndarray,
    counts: np.ndarray,
    k: int,
    *,
    same: bool,
    total: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``k`` distinct unordered pairs ``(i < j)`` of one kind, in random order."""
    n = inverse.size
    listable = total if same else n * (n - 1) // 2
    if listable <= _ENUMERATE_LIMIT or k > total // 2:
        i, j = _all_pairs(inverse, counts, same)
        pick = rng.choice(i.size, size=k, replace=False)
        return np.stack([i[pick], j[pick]], axis=1)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    weights = counts * (counts - 1) / 2.0
    weights = weights / weights.sum()
    chosen: dict[tuple[int, int], None] = {}
    while len(chosen) < k:
        m = 2 * (k - len(chosen)) + 16
        if same:
            ident = rng.choice(counts.size, size=m, p=weights)
            a = rng.integers(0, counts[ident])
            b = rng.integers(0, counts[ident] - 1)
            b = b + (b >= a)  # a different member of the same identity
            i, j = order[starts[ident] + a], order[starts[ident] + b]
        else:
            i, j = rng.integers(0, n, m), rng.integers(0, n, m)
            keep = inverse[i] != inverse[j]
            i, j = i[keep], j[keep]
        for a_, b_ in zip(np.minimum(i, j).tolist(), np.maximum(i, j).tolist(), strict=True):
            chosen.setdefault((a_, b_))
            if len(chosen) == k:
                break
    return np.array(list(chosen), dtype=np.int64).reshape(k, 2)


def _all_pairs(
    inverse: np.ndarray, counts: np.ndarray, same: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Every unordered pair ``i < j`` of one kind (used when they are few enough to list)."""
    if not same:
        i, j = np.triu_indices(inverse.size, k=1)
        keep = inverse[i] != inverse[j]
        return i[keep], j[keep]
    order = np.argsort(inverse, kind="stable")
    members = np.split(order, np.cumsum(counts)[:-1])
    firsts, seconds = [], []
    for group in members:
        if group.size > 1:
            a, b = np.triu_indices(group.size, k=1)
            firsts.append(group[a])
            seconds.append(group[b])
    return np.concatenate(firsts), np.concatenate(seconds)


def synthetic_faceset(
    num_identities: int, images_per_identity: int, size: int = 112, seed: int = 0
) -> FaceSet:
    """The built-in synthetic faces (see :mod:`btnet_core.data.synthetic`) as a face set."""
    images, labels = synthetic_faces(num_identities, images_per_identity, size=size, seed=seed)
    return FaceSet(
        images,
        labels,
        [f"synthetic-{k:05d}" for k in range(num_identities)],
        f"synthetic faces (identities={num_identities}, images_per_identity="
        f"{images_per_identity}, size={size}, seed={seed})",
    )
