"""InsightFace / mxnet RecordIO (``train.rec`` + ``train.idx``), read and written without mxnet.

A ``.rec`` file is a sequence of records. Each record starts with the magic word ``0xced7230a``
and a length word whose upper 3 bits are a continuation flag and whose lower 29 bits are the
length of the data that follows; the data is zero-padded to a multiple of 4 bytes. A record
whose data contains the magic word at a 4-byte aligned position is stored in parts (flags
1 = first, 2 = middle, 3 = last; 0 = a record in one part), the magic words being dropped at
the cuts and put back on reading. The data of an image record is an ``IfQQ`` header (flag,
label, id, id2; little-endian, 24 bytes), ``flag`` more float32 labels when ``flag > 0``, then
the encoded image (JPEG in the files people have).

The ``.idx`` file holds one ``key<TAB>offset`` line per record. Two layouts exist:

* ``"insightface"`` (InsightFace's packer, e.g. MS1MV3): record 0 is a header without image
  whose two labels ``(a, b)`` say that keys ``1 .. a-1`` are the images and keys ``a .. b-1``
  are identity records (labels = the image range of one identity).
* ``"im2rec"`` (mxnet's generic tool): no header; every key ``0 .. N-1`` is an image, the
  ``.idx`` lists the keys in the (shuffled) order in which they were written.

:class:`RecordIOReader` reads both; item ``i`` is the ``i``-th image key in increasing key
order. It reads the ``.idx`` once and then seeks to one record per item, so it scales to
MS1MV3's 5.18M images, and it is safe to pickle and to fork (each process opens the file for
itself), as a ``torch.utils.data.DataLoader`` with workers needs.

:func:`write_recordio` writes both layouts (so an image folder can be packed with
:func:`pack_image_folder`, and tests can build their own files).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from btnet_core.errors import DataError, FormatError
from btnet_core.formats._image import decode_image, encode_image

__all__ = [
    "RecordHeader",
    "RecordIOReader",
    "pack_image_folder",
    "pack_record",
    "read_index",
    "scan_index",
    "unpack_record",
    "write_index",
    "write_recordio",
]

logger = logging.getLogger(__name__)

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_FRAME = struct.Struct("<II")  # magic, length word
_LENGTH_BITS = 29
_LENGTH_MASK = (1 << _LENGTH_BITS) - 1
_IR_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2
# Labels and key ranges are stored as float32: integers above 2**24 are not exact any more.
_FLOAT32_EXACT = 1 << 24
_LAYOUTS = ("insightface", "im2rec")
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class RecordHeader:
    """The ``IfQQ`` header at the start of a record's data.

    Attributes:
        flag: 0 for a single label in ``label``; ``n > 0`` when ``labels`` holds ``n`` values.
        label: The single label (meaningful when ``flag == 0``).
        id: The record id (the key, in the files of both packers).
        id2: A second id, unused by InsightFace.
        labels: The ``flag`` extra float32 labels (empty when ``flag == 0``).
    """

    flag: int
    label: float
    id: int
    id2: int
    labels: tuple[float, ...] = ()

    @property
    def class_label(self) -> float:
        """The class label of an image record: ``labels[0]`` when present, else ``label``."""
        return self.labels[0] if self.flag > 0 else self.label


def pack_record(header: RecordHeader, payload: bytes = b"") -> bytes:
    """Serialise a header and a payload to a record's data (without the magic framing).

    Args:
        header: The header; ``flag`` is taken from ``len(header.labels)``.
        payload: The encoded image, or nothing for header and identity records.

    Returns:
        The record data as stored between the framing words.
    """
    flag = len(header.labels)
    head = _IR_HEADER.pack(flag, 0.0 if flag else header.label, header.id, header.id2)
    extra = np.asarray(header.labels, dtype="<f4").tobytes() if flag else b""
    return head + extra + bytes(payload)


def unpack_record(data: bytes, source: str = "record") -> tuple[RecordHeader, bytes]:
    """Split a record's data into its header and its payload.

    Args:
        data: The record data (as returned by :meth:`RecordIOReader.read_raw`).
        source: Where the data came from, for error messages.

    Returns:
        The header and the payload (the encoded image; empty for header records).

    Raises:
        FormatError: The data is too short for the header it announces.
    """
    if len(data) < _IR_HEADER.size:
        raise FormatError(
            f"{source}: record holds {len(data)} bytes, fewer than the {_IR_HEADER.size}-byte "
            "image header"
        )
    flag, label, rec_id, rec_id2 = _IR_HEADER.unpack_from(data)
    end = _IR_HEADER.size + 4 * flag
    if len(data) < end:
        raise FormatError(
            f"{source}: header announces {flag} labels but the record holds {len(data)} bytes"
        )
    labels: tuple[float, ...] = ()
    if flag:
        labels = tuple(float(v) for v in np.frombuffer(data, "<f4", flag, _IR_HEADER.size))
    header = RecordHeader(int(flag), float(label), int(rec_id), int(rec_id2), labels)
    return header, data[end:]


def _frame(payload: bytes) -> bytes:
    """Frame record data: split at aligned magic words as dmlc's writer does, then pad."""
    size = len(payload)
    if size > _LENGTH_MASK:
        raise DataError(f"a record of {size} bytes exceeds RecordIO's limit of {_LENGTH_MASK}")
    aligned_end = size - size % 4
    parts: list[bytes] = []
    start = 0
    pos = payload.find(_MAGIC_BYTES)
    while pos != -1 and pos + 4 <= aligned_end:
        if pos % 4 == 0:
            flag = 2 if parts else 1
            parts.append(_FRAME.pack(MAGIC, (flag << _LENGTH_BITS) | (pos - start)))
            parts.append(payload[start:pos])
            start = pos + 4
            pos = payload.find(_MAGIC_BYTES, start)
        else:
            pos = payload.find(_MAGIC_BYTES, pos + 1)
    last_flag = 3 if parts else 0
    parts.append(_FRAME.pack(MAGIC, (last_flag << _LENGTH_BITS) | (size - start)))
    parts.append(payload[start:])
    parts.append(b"\0" * (-size % 4))
    return b"".join(parts)


def _pread(fd: int, size: int, offset: int, lock: threading.Lock | None) -> bytes:
    """Read ``size`` bytes at ``offset`` (fewer at the end of the file), thread-safely."""
    if hasattr(os, "pread"):
        chunks = []
        while size > 0:
            chunk = os.pread(fd, size, offset)
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
            offset += len(chunk)
        return b"".join(chunks)
    # No pread (Windows): a seek and a read under a lock, so threads do not interleave.
    assert lock is not None
    with lock:
        os.lseek(fd, offset, os.SEEK_SET)
        chunks = []
        while size > 0:
            chunk = os.read(fd, size)
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)


def _read_framed(
    fd: int, offset: int, file_size: int, source: str, lock: threading.Lock | None
) -> tuple[bytes, int]:
    """Read the record whose framing starts at ``offset``; return its data and the next offset."""
    parts: list[bytes] = []
    pos = offset
    while True:
        frame = _pread(fd, _FRAME.size, pos, lock)
        if len(frame) < _FRAME.size:
            raise FormatError(
                f"{source}: the file ends inside a record header at byte {pos} "
                f"(file size {file_size}): truncated .rec"
            )
        magic, word = _FRAME.unpack(frame)
        if magic != MAGIC:
            raise FormatError(
                f"{source}: no RecordIO magic at byte {pos} (found 0x{magic:08x}): the .rec is "
                "corrupt or the .idx does not belong to it"
            )
        cflag, length = word >> _LENGTH_BITS, word & _LENGTH_MASK
        expected = (0, 1) if not parts else (2, 3)
        if cflag not in expected:
            raise FormatError(
                f"{source}: record part at byte {pos} has continuation flag {cflag}, expected "
                f"one of {expected}: corrupt .rec"
            )
        data = _pread(fd, length, pos + _FRAME.size, lock)
        if len(data) < length:
            raise FormatError(
                f"{source}: record at byte {pos} announces {length} bytes but the file ends "
                f"after {len(data)}: truncated .rec"
            )
        parts.append(data)
        pos += _FRAME.size + length + (-length % 4)
        if cflag in (0, 3):
            return b"".join(parts), pos
        parts.append(_MAGIC_BYTES)


def read_index(idx_path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a RecordIO ``.idx`` file.

    Args:
        idx_path: The ``.idx`` file: one ``key<TAB>offset`` line per record.

    Returns:
        ``(keys, offsets)``, two ``int64`` arrays in the order of the file.

    Raises:
        DataError: The file does not exist.
        FormatError: A line is not two non-negative integers, or a key is repeated.
    """
    path = Path(idx_path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise DataError(f"{path}: RecordIO index not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: cannot read the RecordIO index ({exc})") from None
    tokens = text.split()
    try:
        # Fast path for millions of lines; a bad file falls through to the line-by-line check.
        values = np.array(tokens, dtype=np.int64)
        if len(tokens) % 2 or (values < 0).any():
            raise ValueError
        pairs = values.reshape(-1, 2)
    except (ValueError, OverflowError):
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not all(f.isdigit() for f in fields):
                raise FormatError(
                    f"{path}:{number}: expected 'key<TAB>offset' (two non-negative integers), "
                    f"got {line.strip()[:60]!r}"
                ) from None
        raise FormatError(f"{path}: not a RecordIO index") from None
    keys, offsets = pairs[:, 0].copy(), pairs[:, 1].copy()
    unique, counts = np.unique(keys, return_counts=True)
    if (counts > 1).any():
        raise FormatError(f"{path}: key {int(unique[counts > 1][0])} is listed more than once")
    return keys, offsets


def write_index(
    idx_path: str | os.PathLike[str], keys: Sequence[int] | np.ndarray, offsets: Sequence[int]
) -> None:
    """Write a ``.idx`` file (``key<TAB>offset`` lines, in the order given), atomically.

    Args:
        idx_path: Where to write.
        keys: The record keys.
        offsets: The byte offset of each record's first framing word in the ``.rec``.
    """
    path = Path(idx_path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="ascii") as out:
            out.writelines(f"{int(k)}\t{int(o)}\n" for k, o in zip(keys, offsets, strict=True))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def scan_index(rec_path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild the index of a ``.rec`` file by reading it from start to end.

    The key of each record is the ``id`` field of its header, which both InsightFace's packer and
    mxnet's im2rec set to the key they write into the ``.idx``. Where those ids are not unique,
    the keys are the record positions ``0, 1, 2, ...`` instead (logged as a warning). Save the
    result with :func:`write_index` to avoid scanning again.

    Args:
        rec_path: The ``.rec`` file.

    Returns:
        ``(keys, offsets)``, two ``int64`` arrays in file order.

    Raises:
        DataError: The file does not exist.
        FormatError: The file is truncated or corrupt.
    """
    path = Path(rec_path)
    if not path.is_file():
        raise DataError(f"{path}: RecordIO file not found")
    size = path.stat().st_size
    lock = None if hasattr(os, "pread") else threading.Lock()
    ids: list[int] = []
    offsets: list[int] = []
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        pos = 0
        while pos < size:
            source = f"{path} (record {len(offsets)})"
            data, next_pos = _read_framed(fd, pos, size, source, lock)
            header, _ = unpack_record(data, source)
            ids.append(header.id)
            offsets.append(pos)
            pos = next_pos
    finally:
        os.close(fd)
    keys = np.asarray(ids, dtype=np.int64)
    if len(np.unique(keys)) != len(keys):
        logger.warning("%s: record ids are not unique; using record positions as keys", path)
        keys = np.arange(len(offsets), dtype=np.int64)
    return keys, np.asarray(offsets, dtype=np.int64)


class RecordIOReader:
    """Random access to the images of a RecordIO dataset, in either layout.

    Item ``i`` is ``(image, label)``: the ``i``-th image record in increasing key order, decoded
    to an RGB ``uint8`` array ``(H, W, 3)``, and its integer class label (the header's label, or
    the first of its labels when it has several).

    Args:
        rec_path: The ``.rec`` file.
        idx_path: The ``.idx`` file; default: ``rec_path`` with the suffix ``.idx``. When that
            file does not exist the ``.rec`` is scanned once (slow for large files; a warning
            says how to save the index).

    Raises:
        DataError: The ``.rec`` does not exist or holds no images.
        FormatError: The index points outside the ``.rec``, the header record is inconsistent,
            or (on reading an item) a record is truncated or corrupt.

    Attributes:
        rec_path: The ``.rec`` file.
        layout: ``"insightface"`` or ``"im2rec"``.
        header_labels: The two labels of the InsightFace header record (``None`` for im2rec).
    """

    def __init__(
        self, rec_path: str | os.PathLike[str], idx_path: str | os.PathLike[str] | None = None
    ) -> None:
        self.rec_path = Path(rec_path)
        if not self.rec_path.is_file():
            raise DataError(f"{self.rec_path}: RecordIO file not found")
        self._file_size = self.rec_path.stat().st_size
        index_path = Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
        if index_path.is_file():
            keys, offsets = read_index(index_path)
        else:
            logger.warning(
                "%s: no index at %s; scanning the .rec (save it with "
                "btnet_core.formats.recordio.write_index(path, *scan_index(rec)))",
                self.rec_path,
                index_path,
            )
            keys, offsets = scan_index(self.rec_path)
        bad = np.flatnonzero(offsets + _FRAME.size > self._file_size)
        if len(bad):
            raise FormatError(
                f"{index_path}: key {int(keys[bad[0]])} points to byte {int(offsets[bad[0]])}, "
                f"beyond the end of {self.rec_path} ({self._file_size} bytes): truncated .rec "
                "or an index of another file"
            )
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._key_offsets = offsets[order]
        self._fd: int | None = None
        self._fd_pid: int | None = None
        self._lock: threading.Lock | None = None if hasattr(os, "pread") else threading.Lock()
        self._labels: np.ndarray | None = None
        self.header_labels: tuple[float, ...] | None = None
        self.layout, self._offsets = self._detect_layout(index_path)
        if len(self._offsets) == 0:
            raise DataError(f"{self.rec_path}: the RecordIO file holds no images")
        logger.info("%s: %s layout, %d images", self.rec_path, self.layout, len(self._offsets))

    def _detect_layout(self, index_path: Path) -> tuple[str, np.ndarray]:
        """Tell the two layouts apart and return the offsets of the image records in key order.

        The InsightFace header is record 0 with ``flag > 0`` and no image after its header; an
        im2rec file with several labels per image also has ``flag > 0`` in record 0, but that
        record carries an image.
        """
        if len(self._keys) and self._keys[0] == 0:
            source = f"{self.rec_path} (key 0)"
            data = self._read_data(int(self._key_offsets[0]), source)
            header, payload = unpack_record(data, source)
            if header.flag >= 1 and not payload:
                self.header_labels = header.labels
                end = header.labels[0]
                if end != int(end) or end < 1:
                    raise FormatError(
                        f"{source}: header record gives image keys 1..{end} - 1, not a key range"
                    )
                wanted = np.arange(1, int(end), dtype=np.int64)
                return "insightface", self._lookup(wanted, index_path)
        return "im2rec", self._key_offsets

    def _lookup(self, wanted: np.ndarray, index_path: Path) -> np.ndarray:
        """Offsets of the given keys; every key must be in the index."""
        pos = np.searchsorted(self._keys, wanted)
        pos_clipped = np.minimum(pos, len(self._keys) - 1)
        missing = np.flatnonzero(self._keys[pos_clipped] != wanted)
        if len(missing):
            raise FormatError(
                f"{index_path}: the header record lists image keys 1..{int(wanted[-1])} but key "
                f"{int(wanted[missing[0]])} is not in the index ({len(missing)} missing)"
            )
        return self._key_offsets[pos_clipped]

    # -- file handle: one per process, opened on first use -------------------------------------

    def _file(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._fd_pid != pid:
            # After a fork the inherited descriptor is the parent's: open our own instead.
            self._fd = os.open(self.rec_path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            self._fd_pid = pid
        return self._fd

    def close(self) -> None:
        """Close this process's file descriptor (reopened on the next read)."""
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)
        self._fd = None
        self._fd_pid = None

    def __enter__(self) -> RecordIOReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except (OSError, AttributeError, TypeError):
            pass  # interpreter shutdown or a half-built object: nothing left to release

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_fd"] = None
        state["_fd_pid"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        if not hasattr(os, "pread"):
            self._lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------------------

    def _read_data(self, offset: int, source: str) -> bytes:
        data, _ = _read_framed(self._file(), offset, self._file_size, source, self._lock)
        return data

    def __len__(self) -> int:
        return len(self._offsets)

    def _check_index(self, index: int) -> int:
        n = len(self._offsets)
        if not -n <= index < n:
            raise IndexError(f"image {index} out of range for {n} images")
        return index % n

    def read_raw(self, index: int) -> tuple[RecordHeader, bytes]:
        """The header and the still encoded image of item ``index``.

        Args:
            index: The item, ``0 <= index < len(self)`` (negative indices count from the end).

        Returns:
            The record header and the encoded image bytes.
        """
        index = self._check_index(index)
        source = f"{self.rec_path} (image {index})"
        return unpack_record(self._read_data(int(self._offsets[index]), source), source)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        header, payload = self.read_raw(index)
        source = f"{self.rec_path} (image {self._check_index(index)})"
        return decode_image(payload, source), _class_label(header, source)

    @property
    def labels(self) -> np.ndarray:
        """The class label of every item, ``int64``, read from the record headers once.

        For the InsightFace layout the identity records give each identity's image range, so
        only the first and last image of each range are read (a few seconds for MS1MV3's 93K
        identities). Otherwise, or where a range's first and last labels disagree, one small
        header is read per image, in file order: tens of seconds for millions of images
        (logged). The result is cached.
        """
        if self._labels is None:
            labels = self._labels_from_identity_records()
            if labels is None:
                labels = self._labels_from_every_header()
            self._labels = labels
        return self._labels

    def _labels_from_every_header(self) -> np.ndarray:
        n = len(self._offsets)
        if n > 100_000:
            logger.info("%s: reading the labels of %d images", self.rec_path, n)
        labels = np.empty(n, dtype=np.int64)
        fd = self._file()
        for index in np.argsort(self._offsets, kind="stable"):
            labels[index] = self._label_at(fd, int(index))
        return labels

    def _label_at(self, fd: int, index: int) -> int:
        source = f"{self.rec_path} (image {index})"
        return _class_label(self._read_header(fd, int(self._offsets[index]), source), source)

    def _labels_from_identity_records(self) -> np.ndarray | None:
        """Labels spread over the identity records' image ranges; ``None`` where those records
        are missing, malformed, leave images uncovered, or a range's ends disagree.

        NOTE: only the first and last image of each range are checked; an image in the middle
        of a range with a different label would get the range's label. InsightFace's packer
        writes one identity per range, which is what this relies on.
        """
        if self.layout != "insightface" or self.header_labels is None:
            return None
        if len(self.header_labels) < 2:
            return None
        id_start, id_end = int(self.header_labels[0]), int(self.header_labels[1])
        wanted = np.arange(id_start, id_end, dtype=np.int64)
        if not len(wanted):
            return None
        pos = np.minimum(np.searchsorted(self._keys, wanted), len(self._keys) - 1)
        if (self._keys[pos] != wanted).any():
            return None
        n = len(self._offsets)
        labels = np.full(n, -1, dtype=np.int64)
        fd = self._file()
        for key, offset in zip(wanted, self._key_offsets[pos], strict=True):
            header = self._read_header(fd, int(offset), f"{self.rec_path} (key {key})")
            if header.flag < 2:
                return None
            first, end = int(header.labels[0]) - 1, int(header.labels[1]) - 1  # item indices
            if not 0 <= first < end <= n:
                return None
            label = self._label_at(fd, first)
            if self._label_at(fd, end - 1) != label:
                logger.info(
                    "%s: identity records disagree with labels; reading all", self.rec_path
                )
                return None
            labels[first:end] = label
        return None if (labels < 0).any() else labels

    def _read_header(self, fd: int, offset: int, source: str) -> RecordHeader:
        """Read just the header of a record (the whole record only when it is split early)."""
        head = _pread(fd, _FRAME.size + _IR_HEADER.size, offset, self._lock)
        if len(head) == _FRAME.size + _IR_HEADER.size:
            magic, word = _FRAME.unpack_from(head)
            length = word & _LENGTH_MASK
            if magic == MAGIC and length >= _IR_HEADER.size:
                flag = _IR_HEADER.unpack_from(head, _FRAME.size)[0]
                if length >= _IR_HEADER.size + 4 * flag:
                    extra = _pread(fd, 4 * flag, offset + len(head), self._lock) if flag else b""
                    if len(extra) == 4 * flag:
                        return unpack_record(head[_FRAME.size :] + extra, source)[0]
        # Short, split or damaged: the full read gives the precise error, if any.
        return unpack_record(self._read_data(offset, source), source)[0]


def _class_label(header: RecordHeader, source: str) -> int:
    value = header.class_label
    if not np.isfinite(value) or value != int(value) or value < 0:
        raise FormatError(f"{source}: label {value} is not a non-negative integer class id")
    return int(value)


def _load_item(item: np.ndarray | bytes | bytearray | str | os.PathLike[str]) -> bytes | None:
    """Encoded bytes for bytes and paths; ``None`` for arrays (encoded by the caller)."""
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    if isinstance(item, str | os.PathLike):
        try:
            return Path(item).read_bytes()
        except OSError as exc:
            raise DataError(f"{item}: cannot read the image ({exc.strerror})") from None
    return None


def write_recordio(
    rec_path: str | os.PathLike[str],
    idx_path: str | os.PathLike[str],
    images: Sequence[np.ndarray | bytes | str | os.PathLike[str]],
    labels: Sequence[int] | np.ndarray,
    layout: str = "insightface",
    *,
    image_format: str = "jpeg",
    quality: int = 95,
    shuffle: bool = True,
    seed: int = 0,
) -> int:
    """Write images and labels as a RecordIO dataset, in either layout, atomically.

    Both files are written under temporary names and renamed at the end, so an existing pair is
    never left half-written.

    Args:
        rec_path: The ``.rec`` to write.
        idx_path: The ``.idx`` to write.
        images: Per image either an RGB/greyscale ``uint8`` array (encoded with
            ``image_format``), already encoded bytes (stored as they are) or a path to an image
            file (its bytes stored as they are). Read one at a time.
        labels: The integer class label of each image, ``0 <= label < 2**24``.
        layout: ``"insightface"``: a header record 0, images at keys ``1..N`` in the order
            given, then one identity record per run of equal labels; the labels must therefore
            be grouped (each label in one contiguous run). ``"im2rec"``: images at keys
            ``0..N-1``, no header, records written (and listed in the ``.idx``) in a shuffled
            order when ``shuffle`` is true, as mxnet's im2rec does with a shuffled list.
        image_format: ``"jpeg"`` or ``"png"``, for arrays.
        quality: JPEG quality for arrays.
        shuffle: Shuffle the write order of the im2rec layout.
        seed: Seed of that shuffle.

    Returns:
        The number of images written.

    Raises:
        DataError: Lengths differ, a label is out of range, the layout is unknown, or (for the
            InsightFace layout) the labels are not grouped.
    """
    if layout not in _LAYOUTS:
        raise DataError(f"RecordIO layout {layout!r} is not one of {', '.join(_LAYOUTS)}")
    label_array = np.asarray(labels)
    n = len(images)
    if label_array.shape != (n,):
        raise DataError(f"write_recordio: {n} images but {label_array.size} labels")
    if n and (
        not np.issubdtype(label_array.dtype, np.integer)
        or label_array.min() < 0
        or label_array.max() >= _FLOAT32_EXACT
    ):
        raise DataError(
            f"write_recordio: labels must be integers in [0, {_FLOAT32_EXACT}) (stored as float32)"
        )
    label_array = label_array.astype(np.int64)

    def record_data(i: int, key: int) -> bytes:
        item = images[i]
        encoded = _load_item(item)
        if encoded is None:
            encoded = encode_image(np.asarray(item), image_format, quality)
        return pack_record(RecordHeader(0, float(label_array[i]), key, 0), encoded)

    # (key, data-producer) in write order.
    plan: list[tuple[int, int | RecordHeader]] = []
    if layout == "insightface":
        starts = np.flatnonzero(np.r_[True, label_array[1:] != label_array[:-1]]) if n else []
        run_labels = label_array[starts] if n else label_array
        if len(np.unique(run_labels)) != len(run_labels):
            raise DataError(
                "write_recordio: the insightface layout needs the images of each label in one "
                "contiguous run; sort the images by label first"
            )
        ends = np.r_[starts[1:], n] if n else []
        id_start = n + 1
        id_end = id_start + len(starts)
        if id_end >= _FLOAT32_EXACT:
            raise DataError(
                f"write_recordio: {id_end} records do not fit the insightface layout's float32 "
                "key range"
            )
        plan.append((0, RecordHeader(2, 0.0, 0, 0, (float(id_start), float(id_end)))))
        plan.extend((1 + i, i) for i in range(n))
        plan.extend(
            (id_start + j, RecordHeader(2, 0.0, id_start + j, 0, (1.0 + s, 1.0 + e)))
            for j, (s, e) in enumerate(zip(starts, ends, strict=True))
        )
    else:
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        plan.extend((int(i), int(i)) for i in order)

    rec = Path(rec_path)
    tmp = rec.with_name(f".{rec.name}.tmp-{os.getpid()}")
    keys: list[int] = []
    offsets: list[int] = []
    try:
        with open(tmp, "wb") as out:
            for key, what in plan:
                if isinstance(what, RecordHeader):
                    data = pack_record(what)
                else:
                    data = record_data(what, key)
                keys.append(key)
                offsets.append(out.tell())
                out.write(_frame(data))
        write_index(idx_path, keys, offsets)
        os.replace(tmp, rec)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("%s: wrote %d images (%s layout)", rec, n, layout)
    return n


def pack_image_folder(
    root: str | os.PathLike[str],
    rec_path: str | os.PathLike[str],
    idx_path: str | os.PathLike[str],
    layout: str = "insightface",
    *,
    extensions: Sequence[str] = _IMAGE_EXTENSIONS,
) -> list[str]:
    """Pack a ``root/<identity>/<image>`` folder into a RecordIO dataset.

    Identities are the sub-folders of ``root`` in sorted order (label 0, 1, ...); the images of
    each are its files with one of ``extensions``, sorted by name. The file bytes are stored as
    they are (no re-encoding).

    Args:
        root: The image folder.
        rec_path: The ``.rec`` to write.
        idx_path: The ``.idx`` to write.
        layout: ``"insightface"`` or ``"im2rec"`` (see :func:`write_recordio`).
        extensions: The image file suffixes to take (case-insensitive).

    Returns:
        The identity names, index = label.

    Raises:
        DataError: ``root`` is missing or holds no images.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    allowed = {e.lower() for e in extensions}
    names: list[str] = []
    paths: list[Path] = []
    labels: list[int] = []
    for identity in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(
            p for p in identity.iterdir() if p.is_file() and p.suffix.lower() in allowed
        )
        if files:
            labels.extend([len(names)] * len(files))
            paths.extend(files)
            names.append(identity.name)
    if not paths:
        raise DataError(
            f"{folder}: no images found (expected <identity>/<image> with suffix one of "
            f"{', '.join(sorted(allowed))})"
        )
    write_recordio(rec_path, idx_path, paths, labels, layout)
    return names
