"""Verification pair lists over an image folder: LFW's ``pairs.txt`` and a plain CSV.

``pairs.txt`` (LFW and the sets that copy its format): an optional first line with the number
of folds and the pairs per fold and class (``10 300``: 10 folds of 300 same and 300 different
pairs) or just a count (``1100``: 1100 same then 1100 different pairs); then one pair per line,
``name i j`` for two images of one person and ``name1 i name2 j`` for two people. Image ``i`` of
``name`` is ``root/name/name_NNNN.ext`` with ``i`` zero-padded to four digits. Indices written
as floats (``672.``) are accepted when they are whole numbers.

CSV: one pair per row, ``img1,img2,same``, paths relative to ``root`` (or absolute), ``same`` one
of ``1/0``, ``true/false``, ``yes/no`` (any case; ``1.0`` and ``0.0`` too). An optional header row
names the columns; recognised names are listed in :data:`CSV_COLUMNS`.

Both readers check that every image exists and raise one
:class:`~btnet_core.errors.DataError` naming the list, the line and the first missing image.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np

from btnet_core.errors import DataError, FormatError

__all__ = ["CSV_COLUMNS", "read_pairs_csv", "read_pairs_txt"]

logger = logging.getLogger(__name__)

# Suffixes tried, in order, when read_pairs_txt is not told the image suffix.
_EXTENSIONS = (".jpg", ".png", ".jpeg", ".bmp", ".webp")
# Not "same"/"different": "same" is the flag column's header name.
_TRUE = frozenset(["1", "1.0", "true", "yes", "y", "t"])
_FALSE = frozenset(["0", "0.0", "false", "no", "n", "f"])

#: Header names read_pairs_csv recognises for its three columns (case-insensitive).
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "img1": ("img1", "image1", "path1", "file1", "first"),
    "img2": ("img2", "image2", "path2", "file2", "second"),
    "same": ("same", "issame", "is_same", "label", "match", "genuine"),
}


def _image_index(token: str, where: str) -> int:
    try:
        value = float(token)
    except ValueError:
        raise FormatError(f"{where}: image index {token!r} is not a number") from None
    if not value.is_integer() or value < 0:
        raise FormatError(f"{where}: image index {token!r} is not a non-negative whole number")
    return int(value)


def _check_exist(paths: list[Path], lines: list[int], listing: Path) -> None:
    """Raise one DataError for the first missing image (with the count of missing ones)."""
    missing = [(line, p) for line, p in zip(lines, paths, strict=True) if not p.is_file()]
    if missing:
        line, path = min(missing, key=lambda item: item[0])
        count = len({p for _, p in missing})
        raise DataError(
            f"{listing}:{line}: image {path} not found ({count} of {len(set(paths))} images "
            "missing)"
        )


def read_pairs_txt(
    pairs_path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    ext: str | None = None,
) -> tuple[list[Path], list[Path], np.ndarray]:
    """Read an LFW-style ``pairs.txt`` over a ``root/name/name_NNNN.ext`` folder.

    Args:
        pairs_path: The pair list.
        root: The image folder.
        ext: The image suffix (``".jpg"``); default: the first of ``.jpg``, ``.png``, ``.jpeg``,
            ``.bmp``, ``.webp`` under which the first pair's first image exists.

    Returns:
        ``(paths1, paths2, issame)``: the two image paths of each pair and a bool array.

    Raises:
        DataError: The list or folder does not exist, or an image is missing.
        FormatError: A line is not a pair, an index is not a whole number, or the count of
            pairs differs from what the first line announces.
    """
    listing = Path(pairs_path)
    folder = Path(root)
    try:
        text = listing.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{listing}: pair list not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{listing}: cannot read the pair list ({exc})") from None
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder of {listing} not found")

    expected: int | None = None
    rows: list[tuple[int, str, int, str, int, bool]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{listing}:{number}"
        if not rows and expected is None and len(fields) <= 2:
            counts = [_image_index(f, where) for f in fields]
            expected = counts[0] * 2 * counts[1] if len(counts) == 2 else 2 * counts[0]
            continue
        if len(fields) == 3:
            name, i, j = fields
            rows.append((number, name, _image_index(i, where), name, _image_index(j, where), True))
        elif len(fields) == 4:
            name1, i, name2, j = fields
            rows.append(
                (number, name1, _image_index(i, where), name2, _image_index(j, where), False)
            )
        else:
            raise FormatError(
                f"{where}: expected 'name i j' or 'name1 i name2 j', got {line.strip()[:80]!r}"
            )
    if not rows:
        raise FormatError(f"{listing}: holds no pairs")
    if expected is not None and expected != len(rows):
        raise FormatError(
            f"{listing}: the first line announces {expected} pairs but the file lists {len(rows)}"
        )

    if ext is None:
        _, name, i, _, _, _ = rows[0]
        ext = next(
            (e for e in _EXTENSIONS if (folder / name / f"{name}_{i:04d}{e}").is_file()),
            _EXTENSIONS[0],
        )

    def image(name: str, index: int) -> Path:
        return folder / name / f"{name}_{index:04d}{ext}"

    paths1 = [image(r[1], r[2]) for r in rows]
    paths2 = [image(r[3], r[4]) for r in rows]
    lines = [r[0] for r in rows]
    _check_exist(paths1 + paths2, lines + lines, listing)
    issame = np.array([r[5] for r in rows], dtype=bool)
    logger.info("%s: %d pairs (%d same)", listing, len(rows), int(issame.sum()))
    return paths1, paths2, issame


def _flag(token: str) -> bool | None:
    value = token.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def read_pairs_csv(
    csv_path: str | os.PathLike[str], root: str | os.PathLike[str]
) -> tuple[list[Path], list[Path], np.ndarray]:
    """Read a CSV of pairs (``img1,img2,same``) over any image folder.

    Args:
        csv_path: The CSV file. A first row whose third field is not a flag is a header; its
            columns are found by the names in :data:`CSV_COLUMNS`.
        root: The folder the image paths are relative to.

    Returns:
        ``(paths1, paths2, issame)``: the two image paths of each pair and a bool array.

    Raises:
        DataError: The file or folder does not exist, or an image is missing.
        FormatError: A row has too few fields, a flag is not a bool, the header lacks a column,
            or the file holds no pairs.
    """
    listing = Path(csv_path)
    folder = Path(root)
    try:
        with open(listing, newline="", encoding="utf-8-sig") as handle:
            table = [
                (number, row)
                for number, row in enumerate(csv.reader(handle), start=1)
                if row and any(cell.strip() for cell in row)
            ]
    except FileNotFoundError:
        raise DataError(f"{listing}: pair list not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FormatError(f"{listing}: cannot read the CSV ({exc})") from None
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder of {listing} not found")
    if not table:
        raise FormatError(f"{listing}: holds no pairs")

    columns = (0, 1, 2)
    first_number, first = table[0]
    if len(first) < 3 or _flag(first[2]) is None:
        header = [cell.strip().lower() for cell in first]
        found = []
        for key, names in CSV_COLUMNS.items():
            match = next((i for i, cell in enumerate(header) if cell in names), None)
            if match is None:
                raise FormatError(
                    f"{listing}:{first_number}: the header has no {key} column (one of "
                    f"{', '.join(names)}), or the first row's flag {first[2:3]} is not a bool"
                )
            found.append(match)
        columns = (found[0], found[1], found[2])
        table = table[1:]
        if not table:
            raise FormatError(f"{listing}: holds a header but no pairs")

    paths1: list[Path] = []
    paths2: list[Path] = []
    flags: list[bool] = []
    lines: list[int] = []
    for number, row in table:
        where = f"{listing}:{number}"
        if len(row) <= max(columns):
            raise FormatError(f"{where}: expected {max(columns) + 1} fields, got {len(row)}")
        flag = _flag(row[columns[2]])
        if flag is None:
            raise FormatError(
                f"{where}: same-flag {row[columns[2]]!r} is not one of 1/0, true/false, yes/no"
            )
        paths1.append(folder / row[columns[0]].strip())
        paths2.append(folder / row[columns[1]].strip())
        flags.append(flag)
        lines.append(number)
    _check_exist(paths1 + paths2, lines + lines, listing)
    issame = np.array(flags, dtype=bool)
    logger.info("%s: %d pairs (%d same)", listing, len(flags), int(issame.sum()))
    return paths1, paths2, issame
