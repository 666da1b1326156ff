"""The QMUL-SurvFace 1:N identification test set (open set: gallery, mated and unmated probes).

The release lays the test set out as::

    QMUL-SurvFace/
      Face_Identification_Test_Set/
        gallery/             gallery images
        mated_probe/         probes whose identity is in the gallery
        unmated_probe/       probes whose identity is not (distractors)
        gallery_img_ID_pairs.mat       gallery_set (image names), gallery_ids (identity ids)
        mated_probe_img_ID_pairs.mat   mated_probe_set, mated_probe_ids

:func:`read_survface` reads that layout; what it accepts besides, exactly:

* ``root`` may be the dataset folder or ``Face_Identification_Test_Set`` itself.
* The two ``.mat`` files are looked for in ``Face_Identification_Test_Set/`` and then in a
  sibling ``Face_Identification_Evaluation/`` (some copies keep them there).
* Variable names, tried in this order (``R`` is ``gallery`` or ``mated_probe``; for the mated
  probes ``probe`` is tried as well): image names ``R_set``, ``R_names``, ``R_imgs``,
  ``R_img``, ``R_list``, ``R_files``; ids ``R_ids``, ``R_id``, ``R_labels``, ``R_label``. When
  none of those exists, a file holding exactly one list of strings and one numeric array is
  read as (names, ids).
* Names as a cell array or as a blank-padded char matrix; ids of any integer or float type,
  as long as every value is a whole number.
* Unmated probes: every image file in ``unmated_probe/`` (sorted by name), or the names in an
  ``unmated_probe_img_ID_pairs.mat`` (variable ``unmated_probe_set`` or a variant as above)
  where that file exists.

MATLAB v7.3 (HDF5) ``.mat`` files are not read (scipy cannot); re-save them as v7.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from btnet_core.errors import DataError, FormatError

__all__ = ["SurvFaceSet", "read_survface"]

logger = logging.getLogger(__name__)

TEST_SET_DIR = "Face_Identification_Test_Set"
EVALUATION_DIR = "Face_Identification_Evaluation"
_NAME_SUFFIXES = ("_set", "_names", "_imgs", "_img", "_list", "_files")
_ID_SUFFIXES = ("_ids", "_id", "_labels", "_label")
_IMAGE_EXTENSIONS = frozenset([".jpg", ".jpeg", ".png", ".bmp", ".webp"])


@dataclass(frozen=True)
class SurvFaceSet:
    """The QMUL-SurvFace identification test set as paths and identity ids.

    Attributes:
        gallery_paths: The gallery images.
        gallery_ids: Their identity ids (``int64``, as in the ``.mat``: 1-based in the release).
        mated_paths: The mated probe images.
        mated_ids: Their identity ids; every one is a gallery identity.
        unmated_paths: The unmated probe images (identities outside the gallery).
    """

    gallery_paths: list[Path]
    gallery_ids: np.ndarray
    mated_paths: list[Path]
    mated_ids: np.ndarray
    unmated_paths: list[Path]


def _strings(value: object) -> list[str] | None:
    """The strings of a MATLAB cell array or char matrix; ``None`` when it is not one."""
    array = np.asarray(value)
    if array.dtype.kind in "US":
        return [_decode(item).strip() for item in array.reshape(-1)]
    if array.dtype != object:
        return None
    out = []
    for cell in array.reshape(-1):
        while isinstance(cell, np.ndarray) and cell.dtype == object and cell.size == 1:
            cell = cell.reshape(-1)[0]
        if isinstance(cell, np.ndarray) and cell.dtype.kind in "US":
            cell = cell.reshape(-1)[0] if cell.size else ""
        if not isinstance(cell, str | bytes | np.str_ | np.bytes_):
            return None
        out.append(_decode(cell).strip())
    return out


def _decode(item: object) -> str:
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)


def _load_mat(path: Path) -> dict[str, object]:
    try:
        content = scipy.io.loadmat(path)
    except NotImplementedError:
        raise FormatError(
            f"{path}: MATLAB v7.3 (HDF5) .mat files are not supported; re-save as v7"
        ) from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise FormatError(f"{path}: not a readable .mat file ({exc})") from None
    return {k: v for k, v in content.items() if not k.startswith("__")}


def _pick(
    content: dict[str, object], prefixes: tuple[str, ...], suffixes: tuple[str, ...]
) -> str | None:
    for prefix in prefixes:
        for suffix in suffixes:
            if prefix + suffix in content:
                return prefix + suffix
    return None


def _read_list(
    path: Path, prefixes: tuple[str, ...], with_ids: bool
) -> tuple[list[str], np.ndarray | None]:
    """Read image names (and ids) from one of the set's ``.mat`` files."""
    content = _load_mat(path)
    name_key = _pick(content, prefixes, _NAME_SUFFIXES)
    id_key = _pick(content, prefixes, _ID_SUFFIXES) if with_ids else None
    if name_key is None or (with_ids and id_key is None):
        strings = [k for k, v in content.items() if _strings(v) is not None]
        numbers = [
            k
            for k, v in content.items()
            if isinstance(v, np.ndarray) and v.dtype.kind in "iuf" and v.size
        ]
        if len(strings) == 1 and (not with_ids or len(numbers) == 1):
            name_key = strings[0]
            id_key = numbers[0] if with_ids else None
            logger.info("%s: reading names from %r, ids from %r", path, name_key, id_key)
        else:
            wanted = f"{prefixes[0]}_set" + (f" and {prefixes[0]}_ids" if with_ids else "")
            raise FormatError(
                f"{path}: expected variables {wanted} (or a variant), found "
                f"{', '.join(sorted(content)) or 'none'}"
            )
    names = _strings(content[name_key])
    if names is None:
        raise FormatError(f"{path}: variable {name_key} is not a list of image names")
    if id_key is None:
        return names, None
    raw = np.asarray(content[id_key])
    if raw.dtype.kind not in "iuf":
        raise FormatError(f"{path}: variable {id_key} is not numeric ({raw.dtype})")
    flat = raw.reshape(-1)
    if raw.dtype.kind == "f" and not (np.isfinite(flat).all() and (flat == np.round(flat)).all()):
        raise FormatError(f"{path}: variable {id_key} holds ids that are not whole numbers")
    ids = flat.astype(np.int64)
    if len(ids) != len(names):
        raise FormatError(
            f"{path}: {name_key} lists {len(names)} images but {id_key} holds {len(ids)} ids"
        )
    return names, ids


def _find_mat(test_dir: Path, stem: str, required: bool) -> Path | None:
    for folder in (test_dir, test_dir.parent / EVALUATION_DIR):
        candidate = folder / f"{stem}_img_ID_pairs.mat"
        if candidate.is_file():
            return candidate
    if required:
        raise DataError(
            f"{test_dir}: {stem}_img_ID_pairs.mat not found (looked in {test_dir} and "
            f"{test_dir.parent / EVALUATION_DIR})"
        )
    return None


def _paths(folder: Path, names: list[str], what: str, listing: Path) -> list[Path]:
    paths = [folder / name for name in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{listing}: {what} image {missing[0]} not found ({len(missing)} of {len(paths)} "
            "missing)"
        )
    return paths


def read_survface(root: str | os.PathLike[str]) -> SurvFaceSet:
    """Read the QMUL-SurvFace identification test set (see the module doc for what is read).

    Args:
        root: The dataset folder (holding ``Face_Identification_Test_Set``) or that folder.

    Returns:
        The gallery, mated probes and unmated probes as paths and ids.

    Raises:
        DataError: A folder, a ``.mat`` file or an image is missing; the gallery or a probe set
            is empty; or a mated probe's identity is not in the gallery.
        FormatError: A ``.mat`` file is unreadable, lacks its variables, or its names and ids
            differ in number.
    """
    base = Path(root)
    test_dir = base if (base / "gallery").is_dir() else base / TEST_SET_DIR
    folders = {role: test_dir / role for role in ("gallery", "mated_probe", "unmated_probe")}
    for role, folder in folders.items():
        if not folder.is_dir():
            raise DataError(f"{base}: SurvFace {role} folder {folder} not found")

    gallery_mat = _find_mat(test_dir, "gallery", required=True)
    mated_mat = _find_mat(test_dir, "mated_probe", required=True)
    assert gallery_mat is not None and mated_mat is not None
    gallery_names, gallery_ids = _read_list(gallery_mat, ("gallery",), with_ids=True)
    mated_names, mated_ids = _read_list(mated_mat, ("mated_probe", "probe"), with_ids=True)
    assert gallery_ids is not None and mated_ids is not None
    if not gallery_names:
        raise DataError(f"{gallery_mat}: the gallery is empty")
    if not mated_names:
        raise DataError(f"{mated_mat}: there are no mated probes")
    strangers = np.setdiff1d(mated_ids, gallery_ids)
    if len(strangers):
        raise DataError(
            f"{mated_mat}: {len(strangers)} mated probe identities are not in the gallery "
            f"(e.g. id {int(strangers[0])})"
        )

    unmated_mat = _find_mat(test_dir, "unmated_probe", required=False)
    if unmated_mat is not None:
        unmated_names, _ = _read_list(unmated_mat, ("unmated_probe",), with_ids=False)
        unmated_listing = unmated_mat
    else:
        unmated_names = sorted(
            p.name
            for p in folders["unmated_probe"].iterdir()
            if p.is_file() and p.suffix.lower() in _IMAGE_EXTENSIONS
        )
        unmated_listing = folders["unmated_probe"]
    if not unmated_names:
        raise DataError(f"{unmated_listing}: there are no unmated probes")

    result = SurvFaceSet(
        gallery_paths=_paths(folders["gallery"], gallery_names, "gallery", gallery_mat),
        gallery_ids=gallery_ids,
        mated_paths=_paths(folders["mated_probe"], mated_names, "mated probe", mated_mat),
        mated_ids=mated_ids,
        unmated_paths=_paths(
            folders["unmated_probe"], unmated_names, "unmated probe", unmated_listing
        ),
    )
    logger.info(
        "%s: gallery %d images of %d identities, %d mated and %d unmated probes",
        test_dir,
        len(gallery_names),
        len(np.unique(gallery_ids)),
        len(mated_names),
        len(unmated_names),
    )
    return result
