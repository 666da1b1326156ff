"""Tests of btnet_core.formats.survface on small QMUL-SurvFace trees built with savemat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from btnet_core.errors import DataError, FormatError
from btnet_core.formats.survface import read_survface

GALLERY = ["1_cam1_1.jpg", "1_cam1_2.jpg", "2_cam2_1.jpg", "3_cam1_1.jpg"]
GALLERY_IDS = [1, 1, 2, 3]
MATED = ["1_cam3_1.jpg", "3_cam2_4.jpg"]
MATED_IDS = [1, 3]
UNMATED = ["9_cam1_2.jpg", "8_cam2_1.png"]


def cell(names: list[str]) -> np.ndarray:
    """A MATLAB cell array (column) of strings, as the release stores image names."""
    out = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        out[i, 0] = name
    return out


def build(
    root: Path,
    gallery_vars: dict | None = None,
    mated_vars: dict | None = None,
    mat_folder: str = "Face_Identification_Test_Set",
) -> Path:
    """A SurvFace tree under root with the official variable names unless told otherwise."""
    test_dir = root / "Face_Identification_Test_Set"
    for role, names in (("gallery", GALLERY), ("mated_probe", MATED), ("unmated_probe", UNMATED)):
        (test_dir / role).mkdir(parents=True)
        for name in names:
            (test_dir / role / name).write_bytes(b"jpeg")
    mats = root / mat_folder
    mats.mkdir(parents=True, exist_ok=True)
    if gallery_vars is None:
        gallery_vars = {
            "gallery_set": cell(GALLERY),
            "gallery_ids": np.array(GALLERY_IDS, dtype=np.uint16).reshape(-1, 1),
        }
    if mated_vars is None:
        mated_vars = {
            "mated_probe_set": cell(MATED),
            "mated_probe_ids": np.array(MATED_IDS, dtype=np.uint16).reshape(-1, 1),
        }
    savemat(mats / "gallery_img_ID_pairs.mat", gallery_vars)
    savemat(mats / "mated_probe_img_ID_pairs.mat", mated_vars)
    return root


def test_reads_the_official_layout(tmp_path: Path) -> None:
    """Cell arrays of names and uint16 id columns in Face_Identification_Test_Set; unmated
    probes are the images of their folder, sorted."""
    root = build(tmp_path / "QMUL-SurvFace")
    test_dir = root / "Face_Identification_Test_Set"
    data = read_survface(root)
    assert data.gallery_paths == [test_dir / "gallery" / n for n in GALLERY]
    assert data.gallery_ids.tolist() == GALLERY_IDS and data.gallery_ids.dtype == np.int64
    assert data.mated_paths == [test_dir / "mated_probe" / n for n in MATED]
    assert data.mated_ids.tolist() == MATED_IDS
    assert data.unmated_paths == [test_dir / "unmated_probe" / n for n in sorted(UNMATED)]


def test_reads_char_matrices_from_the_evaluation_folder(tmp_path: Path) -> None:
    """Names saved as a blank-padded char matrix and .mat files kept in
    Face_Identification_Evaluation are read; root may be the test-set folder itself."""
    root = build(
        tmp_path / "sf",
        gallery_vars={"gallery_set": GALLERY, "gallery_ids": np.array(GALLERY_IDS, float)},
        mated_vars={"mated_probe_set": MATED, "mated_probe_ids": np.array(MATED_IDS, float)},
        mat_folder="Face_Identification_Evaluation",
    )
    data = read_survface(root / "Face_Identification_Test_Set")
    assert [p.name for p in data.gallery_paths] == GALLERY
    assert data.mated_ids.tolist() == MATED_IDS


def test_reads_variant_variable_names(tmp_path: Path) -> None:
    """gallery_names/gallery_labels and probe_set/probe_ids are accepted variants."""
    root = build(
        tmp_path / "sf",
        gallery_vars={"gallery_names": cell(GALLERY), "gallery_labels": np.array(GALLERY_IDS)},
        mated_vars={"probe_set": cell(MATED), "probe_ids": np.array(MATED_IDS)},
    )
    data = read_survface(root)
    assert data.gallery_ids.tolist() == GALLERY_IDS
    assert [p.name for p in data.mated_paths] == MATED


def test_reads_a_file_of_one_name_list_and_one_id_array(tmp_path: Path) -> None:
    """Unknown variable names still read when the file holds exactly one list of strings and
    one numeric array."""
    root = build(
        tmp_path / "sf",
        gallery_vars={"imgs": cell(GALLERY), "labels": np.array(GALLERY_IDS)},
    )
    assert read_survface(root).gallery_ids.tolist() == GALLERY_IDS


def test_refuses_fractional_ids(tmp_path: Path) -> None:
    """Float ids must be whole numbers."""
    ids = np.array(GALLERY_IDS, float) + 0.5
    root = build(tmp_path / "sf", gallery_vars={"gallery_set": cell(GALLERY), "gallery_ids": ids})
    with pytest.raises(FormatError, match="gallery_ids holds ids that are not whole numbers"):
        read_survface(root)


def test_refuses_a_file_without_the_variables(tmp_path: Path) -> None:
    """A .mat with neither the official names nor one name list and one id array is named with
    the variables it does hold."""
    root = build(tmp_path / "sf", gallery_vars={"a": cell(GALLERY), "b": cell(GALLERY)})
    with pytest.raises(FormatError, match="expected variables gallery_set and gallery_ids.*a, b"):
        read_survface(root)


def test_refuses_names_and_ids_of_different_lengths(tmp_path: Path) -> None:
    """Four names and three ids: FormatError with both counts."""
    root = build(
        tmp_path / "sf",
        gallery_vars={"gallery_set": cell(GALLERY), "gallery_ids": np.array([1, 1, 2])},
    )
    with pytest.raises(FormatError, match="lists 4 images but gallery_ids holds 3 ids"):
        read_survface(root)


def test_refuses_an_empty_gallery(tmp_path: Path) -> None:
    """An empty gallery is one DataError naming the .mat file."""
    root = build(
        tmp_path / "sf",
        gallery_vars={"gallery_set": cell([]), "gallery_ids": np.zeros((0, 1))},
    )
    with pytest.raises(DataError, match=r"gallery_img_ID_pairs\.mat: the gallery is empty"):
        read_survface(root)


def test_refuses_a_mated_identity_outside_the_gallery(tmp_path: Path) -> None:
    """A mated probe must be enrolled: id 7 is not in the gallery."""
    root = build(
        tmp_path / "sf",
        mated_vars={"mated_probe_set": cell(MATED), "mated_probe_ids": np.array([1, 7])},
    )
    with pytest.raises(DataError, match="not in the gallery .e.g. id 7"):
        read_survface(root)


def test_names_a_missing_image(tmp_path: Path) -> None:
    """Listed but absent images: one DataError naming the first and the count."""
    root = build(tmp_path / "sf")
    for name in GALLERY[1:3]:
        (root / "Face_Identification_Test_Set" / "gallery" / name).unlink()
    with pytest.raises(DataError, match=r"gallery image .*1_cam1_2\.jpg not found \(2 of 4"):
        read_survface(root)


def test_uses_an_unmated_list_when_present(tmp_path: Path) -> None:
    """An unmated_probe_img_ID_pairs.mat, where it exists, lists the unmated probes."""
    root = build(tmp_path / "sf")
    savemat(
        root / "Face_Identification_Test_Set" / "unmated_probe_img_ID_pairs.mat",
        {"unmated_probe_set": cell(UNMATED[:1])},
    )
    assert [p.name for p in read_survface(root).unmated_paths] == UNMATED[:1]


def test_names_a_missing_folder(tmp_path: Path) -> None:
    """A root without the test set is one DataError naming the missing folder."""
    with pytest.raises(DataError, match="SurvFace gallery folder"):
        read_survface(tmp_path)


def test_refuses_an_empty_unmated_folder(tmp_path: Path) -> None:
    """Open-set evaluation needs unmated probes: an empty folder is one DataError."""
    root = build(tmp_path / "sf")
    for image in (root / "Face_Identification_Test_Set" / "unmated_probe").iterdir():
        image.unlink()
    with pytest.raises(DataError, match="unmated_probe: there are no unmated probes"):
        read_survface(root)
