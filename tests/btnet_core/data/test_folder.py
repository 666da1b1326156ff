"""Tests of btnet_core.data.folder: image-folder loading, identity splits, verification pairs.

Real faces come from ORL (40 people x 10 greyscale 92x112 PNG) in ../shared/data/orl; those
tests skip where it is absent. Every error case is built in a temporary folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from btnet_core.data import (
    FaceSet,
    load_image_folder,
    split_identities,
    synthetic_faces,
    synthetic_faceset,
    verification_pairs,
)
from btnet_core.errors import ConfigError, DataError

ORL = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "orl"
needs_orl = pytest.mark.skipif(
    not (ORL / "s01").is_dir(), reason=f"ORL faces not found at {ORL} (../shared/data/orl)"
)


@pytest.fixture(scope="module")
def orl() -> FaceSet:
    """ORL loaded once at 112x112 (pad fit: the 92x112 faces keep their shape)."""
    if not (ORL / "s01").is_dir():
        pytest.skip(f"ORL faces not found at {ORL} (../shared/data/orl)")
    return load_image_folder(ORL, 112)


def _write(path: Path, size: tuple[int, int] = (20, 24), mode: str = "RGB", value: int = 0):
    """Write a small image of the given (width, height) and mode; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], len(mode))
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)


def _folder(root: Path, counts: dict[str, int]) -> Path:
    """A folder of random 16x16 PNG faces, ``counts[name]`` per identity, each one different."""
    value = 0
    for name, count in counts.items():
        for i in range(count):
            _write(root / name / f"{i:02d}.png", size=(16, 16), value=value)
            value += 1
    return root


# ---------------------------------------------------------------------------------------------
# ORL


@needs_orl
def test_orl_loads_all_faces(orl: FaceSet) -> None:
    """400 faces of 40 identities s01..s40, 10 each, as 112x112 RGB with equal channels."""
    assert len(orl) == 400 and orl.num_identities == 40
    assert orl.images.shape == (400, 112, 112, 3) and orl.images.dtype == np.uint8
    assert orl.identities == [f"s{i:02d}" for i in range(1, 41)]
    assert np.array_equal(np.bincount(orl.labels), np.full(40, 10))
    assert np.array_equal(orl.images[..., 0], orl.images[..., 2])
    assert orl.source == str(ORL)


@needs_orl
def test_orl_pad_keeps_the_original_pixels(orl: FaceSet) -> None:
    """A 92x112 face padded to 112x112 holds the file's pixels unchanged in its centre."""
    original = np.asarray(Image.open(ORL / "s01" / "01.png"))
    assert original.shape == (112, 92)
    assert np.array_equal(orl.images[0, :, 10:102, 0], original)
    # The pad repeats the edge columns.
    assert np.array_equal(orl.images[0, :, 0, 0], original[:, 0])


@needs_orl
def test_orl_fit_modes_and_sizes_differ() -> None:
    """crop and stretch give other 56x56 images than pad, all the right shape."""
    subset = {
        fit: load_image_folder(ORL, 56, fit=fit).images for fit in ("pad", "crop", "stretch")
    }
    for images in subset.values():
        assert images.shape == (400, 56, 56, 3)
    assert not np.array_equal(subset["pad"], subset["crop"])
    assert not np.array_equal(subset["crop"], subset["stretch"])


@needs_orl
def test_orl_split_and_pairs(orl: FaceSet) -> None:
    """Holding out 10 of 40 ORL identities gives 300/100 images and balanced valid pairs."""
    train, held = split_identities(orl, 10, seed=0)
    assert (train.num_identities, held.num_identities) == (30, 10)
    assert (len(train), len(held)) == (300, 100)
    assert not set(train.identities) & set(held.identities)
    idx1, idx2, issame = verification_pairs(held.labels, 200, seed=0)
    assert len(issame) == 200 and issame.sum() == 100
    assert np.array_equal(held.labels[idx1] == held.labels[idx2], issame)


# ---------------------------------------------------------------------------------------------
# Loading: accepted inputs


def test_loads_sorted_identities_and_files(tmp_path: Path) -> None:
    """Identities in sorted folder order get labels 0, 1, ...; files are read sorted too."""
    root = _folder(tmp_path / "faces", {"bob": 3, "alice": 2, "carol": 2})
    faces = load_image_folder(root, 16)
    assert faces.identities == ["alice", "bob", "carol"]
    assert faces.labels.tolist() == [0, 0, 1, 1, 1, 2, 2]
    # Already 16x16, so the pixels come through unchanged.
    for position, file in [(2, "bob/00.png"), (4, "bob/02.png"), (0, "alice/00.png")]:
        assert np.array_equal(faces.images[position], np.asarray(Image.open(root / file)))


def test_ignores_hidden_loose_and_foreign_files(tmp_path: Path) -> None:
    """Hidden files and folders, top-level files and non-image files are not read."""
    root = _folder(tmp_path / "faces", {"a": 2, "b": 2})
    (root / "README.txt").write_text("not a face")
    (root / "a" / "notes.txt").write_text("not a face")
    (root / "a" / ".DS_Store").write_bytes(b"\x00garbage")
    (root / "a" / "._00.png").write_bytes(b"AppleDouble garbage")
    _write(root / ".cache" / "x.png")
    _write(root / ".cache" / "y.png")
    faces = load_image_folder(root, 16)
    assert faces.identities == ["a", "b"] and len(faces) == 4


def test_accepts_every_listed_format_case_insensitively(tmp_path: Path) -> None:
    """png jpg jpeg bmp pgm tif webp, in any letter case, all load."""
    root = tmp_path / "faces"
    for i, suffix in enumerate([".png", ".JPG", ".jpeg", ".Bmp", ".pgm", ".TIF", ".webp"]):
        mode = "L" if suffix == ".pgm" else "RGB"
        _write(root / "person" / f"{i}{suffix}", mode=mode, value=i)
    _write(root / "other" / "0.png")
    _write(root / "other" / "1.png")
    faces = load_image_folder(root, 24)
    assert len(faces) == 9 and faces.images.shape == (9, 24, 24, 3)


def test_greyscale_alpha_and_16_bit_become_rgb(tmp_path: Path) -> None:
    """L becomes three equal channels, RGBA drops alpha, 16-bit greyscale keeps its top byte."""
    root = tmp_path / "faces"
    _write(root / "a" / "0.png", size=(8, 8), mode="L", value=1)
    _write(root / "a" / "1.png", size=(8, 8), mode="RGBA", value=2)
    sixteen = np.full((8, 8), 50_000, dtype=np.uint16)
    Image.fromarray(sixteen).save(root / "a" / "2.png")
    assert Image.open(root / "a" / "2.png").mode.startswith("I")
    faces = load_image_folder(root, 8)
    grey = faces.images[0]
    assert np.array_equal(grey[..., 0], grey[..., 1])
    assert faces.images[2].min() == faces.images[2].max() == 50_000 >> 8


def test_resizes_up_and_down(tmp_path: Path) -> None:
    """Small images are enlarged and large ones reduced to size x size."""
    root = tmp_path / "faces"
    _write(root / "a" / "0.png", size=(10, 10))
    _write(root / "a" / "1.png", size=(300, 300))
    faces = load_image_folder(root, 112)
    assert faces.images.shape == (2, 112, 112, 3)


def test_reduction_averages_areas(tmp_path: Path) -> None:
    """Shrinking 4x uses area averaging: a 2-pixel checkerboard becomes flat grey."""
    board = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    root = tmp_path / "faces"
    (root / "a").mkdir(parents=True)
    Image.fromarray(board).save(root / "a" / "0.png")
    Image.fromarray(board).save(root / "a" / "1.png")
    faces = load_image_folder(root, 16)
    assert np.abs(faces.images[0].astype(int) - 128).max() <= 1


# ---------------------------------------------------------------------------------------------
# Loading: errors, each one line naming the path


def _one_line_error(path: Path, match: str, **kwargs) -> str:
    with pytest.raises(DataError, match=match) as info:
        load_image_folder(path, 16, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_folder(tmp_path: Path) -> None:
    """A path that does not exist is named."""
    message = _one_line_error(tmp_path / "nope", "no such folder")
    assert str(tmp_path / "nope") in message


def test_path_is_a_file(tmp_path: Path) -> None:
    """A file instead of a folder is refused with its path."""
    file = tmp_path / "faces.zip"
    file.write_bytes(b"PK")
    assert str(file) in _one_line_error(file, "not a folder")


def test_empty_folder(tmp_path: Path) -> None:
    """A folder without identity sub-folders (hidden ones do not count) is empty."""
    root = tmp_path / "faces"
    (root / ".git").mkdir(parents=True)
    (root / "loose.png").write_bytes(b"")
    assert str(root) in _one_line_error(root, "empty")


def test_identity_with_one_image_is_named(tmp_path: Path) -> None:
    """An identity with fewer than two images is named with its count."""
    root = _folder(tmp_path / "faces", {"alice": 2, "bob": 1})
    message = _one_line_error(root, "'bob' has 1 image")
    assert str(root / "bob") in message


def test_identity_without_images_is_named(tmp_path: Path) -> None:
    """An identity folder holding only other files has 0 images."""
    root = _folder(tmp_path / "faces", {"alice": 2})
    (root / "zed").mkdir()
    (root / "zed" / "face.gif").write_bytes(b"GIF89a")
    _one_line_error(root, "'zed' has 0 image")


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    """A file with an image suffix but other bytes is named as unreadable."""
    root = _folder(tmp_path / "faces", {"alice": 2, "bob": 2})
    bad = root / "bob" / "02.jpg"
    bad.write_bytes(b"this is not a jpeg")
    message = _one_line_error(root, "unreadable image")
    assert str(bad) in message


def test_truncated_image_is_named(tmp_path: Path) -> None:
    """A PNG cut short is named as unreadable, not half-loaded."""
    root = _folder(tmp_path / "faces", {"alice": 2})
    _write(root / "alice" / "big.png", size=(64, 64), value=9)
    data = (root / "alice" / "big.png").read_bytes()
    (root / "alice" / "big.png").write_bytes(data[: len(data) // 2])
    assert str(root / "alice" / "big.png") in _one_line_error(root, "unreadable image")


def test_bad_size_or_fit_is_a_config_error(tmp_path: Path) -> None:
    """size must be a positive integer and fit one of pad, crop, stretch."""
    root = _folder(tmp_path / "faces", {"a": 2})
    with pytest.raises(ConfigError, match="size"):
        load_image_folder(root, 0)
    with pytest.raises(ConfigError, match="allowed: pad, crop, stretch"):
        load_image_folder(root, 16, fit="letterbox")


# ---------------------------------------------------------------------------------------------
# FaceSet


def _faceset(counts: list[int], size: int = 4) -> FaceSet:
    labels = np.repeat(np.arange(len(counts)), counts)
    images = np.zeros((labels.size, size, size, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(labels.size)  # tag each image with its index
    return FaceSet(images, labels, [f"id{k}" for k in range(len(counts))], "test set")


def test_faceset_len_identities_and_subset() -> None:
    """subset keeps the label space and takes integer indices or a boolean mask."""
    faces = _faceset([2, 3, 1])
    assert len(faces) == 6 and faces.num_identities == 3
    by_index = faces.subset([5, 0])
    assert by_index.labels.tolist() == [2, 0] and by_index.images[:, 0, 0, 0].tolist() == [5, 0]
    assert by_index.identities == faces.identities and by_index.num_identities == 3
    by_mask = faces.subset(faces.labels == 1)
    assert by_mask.images[:, 0, 0, 0].tolist() == [2, 3, 4]


def test_faceset_refuses_inconsistent_arrays() -> None:
    """Wrong image dtype or shape, or labels out of range, are DataErrors naming the source."""
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    with pytest.raises(DataError, match="test: images must be uint8"):
        FaceSet(images.astype(np.float32), np.array([0, 1]), ["a", "b"], "test")
    with pytest.raises(DataError, match="labels must be 2 integers"):
        FaceSet(images, np.array([0]), ["a", "b"], "test")
    with pytest.raises(DataError, match=r"labels must be in 0\.\.1"):
        FaceSet(images, np.array([0, 2]), ["a", "b"], "test")


def test_synthetic_faceset_matches_synthetic_faces() -> None:
    """synthetic_faceset wraps synthetic_faces with names and a descriptive source."""
    faces = synthetic_faceset(3, 2, size=32, seed=4)
    images, labels = synthetic_faces(3, 2, size=32, seed=4)
    assert np.array_equal(faces.images, images) and np.array_equal(faces.labels, labels)
    assert faces.identities == ["synthetic-00000", "synthetic-00001", "synthetic-00002"]
    assert "seed=4" in faces.source


# ---------------------------------------------------------------------------------------------
# split_identities


def test_split_is_disjoint_complete_and_reindexed() -> None:
    """Every image lands in exactly one part; labels are 0..K-1 with matching names."""
    faces = _faceset([2, 3, 1, 2, 2, 4])
    train, held = split_identities(faces, 2, seed=3)
    assert len(train) + len(held) == len(faces)
    assert sorted(train.identities + held.identities) == sorted(faces.identities)
    for part in (train, held):
        assert sorted(set(part.labels.tolist())) == list(range(part.num_identities))
        # Each image keeps its identity name through the relabelling.
        for image, label in zip(part.images, part.labels, strict=True):
            original = int(image[0, 0, 0])
            assert part.identities[label] == faces.identities[faces.labels[original]]


def test_split_is_deterministic_by_seed() -> None:
    """Same seed, same split; some other seed gives another."""
    faces = _faceset([2] * 20)
    first = split_identities(faces, 5, seed=1)[1].identities
    assert split_identities(faces, 5, seed=1)[1].identities == first
    others = {tuple(split_identities(faces, 5, seed=s)[1].identities) for s in range(2, 6)}
    assert others - {tuple(first)}


def test_split_share_is_rounded() -> None:
    """A float is a share of the identities: 0.25 of 20 is 5."""
    _, held = split_identities(_faceset([2] * 20), 0.25, seed=0)
    assert held.num_identities == 5


@pytest.mark.parametrize("held_out", [0, -3, 0.0, 1.0, 1.5, True, "5"])
def test_split_rejects_bad_held_out(held_out: object) -> None:
    """held_out must be a count >= 1 or a share in (0, 1)."""
    with pytest.raises(ConfigError, match="held_out"):
        split_identities(_faceset([2] * 6), held_out, seed=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("held_out", [1, 5, 6, 9])
def test_split_needs_two_identities_per_part(held_out: int) -> None:
    """Either part with fewer than two identities is a DataError naming the source."""
    with pytest.raises(DataError, match="test set: 6 identities cannot be split"):
        split_identities(_faceset([2] * 6), held_out, seed=0)


# ---------------------------------------------------------------------------------------------
# verification_pairs


def _check_pairs(labels: np.ndarray, idx1: np.ndarray, idx2: np.ndarray, issame: np.ndarray):
    assert idx1.dtype == idx2.dtype == np.int64 and issame.dtype == bool
    assert np.array_equal(labels[idx1] == labels[idx2], issame)
    assert (idx1 != idx2).all()
    unordered = {(min(a, b), max(a, b)) for a, b in zip(idx1.tolist(), idx2.tolist(), strict=True)}
    assert len(unordered) == len(idx1)


def test_pairs_are_balanced_valid_and_interleaved() -> None:
    """Half same, half different, correct flags, no self or repeated pairs, alternating."""
    labels = np.repeat(np.arange(30), 4)
    idx1, idx2, issame = verification_pairs(labels, 300, seed=0)
    assert len(issame) == 300 and issame.sum() == 150
    _check_pairs(labels, idx1, idx2, issame)
    assert issame[0::2].all() and not issame[1::2].any()
    # Both orders occur within pairs.
    assert (idx1 < idx2).any() and (idx1 > idx2).any()


def test_pairs_are_deterministic_by_seed() -> None:
    """Same seed, same pairs; another seed, other pairs."""
    labels = np.repeat(np.arange(30), 4)
    a = verification_pairs(labels, 100, seed=5)
    b = verification_pairs(labels, 100, seed=5)
    c = verification_pairs(labels, 100, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_pairs_are_cut_when_the_set_is_too_small(caplog: pytest.LogCaptureFixture) -> None:
    """3 identities x 2 images hold only 3 same pairs: 3 of each kind come back, with a warning."""
    labels = np.repeat(np.arange(3), 2)
    with caplog.at_level(logging.WARNING, logger="btnet_core.data.folder"):
        idx1, idx2, issame = verification_pairs(labels, 100, seed=0)
    assert len(issame) == 6 and issame.sum() == 3
    _check_pairs(labels, idx1, idx2, issame)
    assert "only 3 same" in caplog.text


def test_pairs_from_large_sets_use_rejection_sampling() -> None:
    """Sets too large to list every pair (7000 images, 2.4M same pairs) still give valid pairs."""
    labels = np.repeat(np.arange(10), 700)
    idx1, idx2, issame = verification_pairs(labels, 4000, seed=1)
    assert len(issame) == 4000 and issame.sum() == 2000
    _check_pairs(labels, idx1, idx2, issame)


def test_pairs_with_unequal_identity_sizes() -> None:
    """Mixed identity sizes (including singletons) still give valid balanced pairs."""
    labels = np.array([0, 0, 0, 0, 0, 1, 2, 2, 3, 4, 4, 4])
    idx1, idx2, issame = verification_pairs(labels, 20, seed=2)
    assert len(issame) == 20
    _check_pairs(labels, idx1, idx2, issame)


def test_pairs_errors() -> None:
    """No same pair, no different pair, or n_pairs < 2 are refused."""
    with pytest.raises(DataError, match="no identity has two images"):
        verification_pairs(np.arange(5), 10, seed=0)
    with pytest.raises(DataError, match="one identity"):
        verification_pairs(np.zeros(5, dtype=np.int64), 10, seed=0)
    with pytest.raises(ConfigError, match="n_pairs"):
        verification_pairs(np.repeat(np.arange(3), 2), 1, seed=0)
