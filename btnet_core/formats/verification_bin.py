"""InsightFace verification ``.bin`` files (lfw.bin, cfp_fp.bin, agedb_30.bin, ...), read safely.

A ``.bin`` is a Python pickle of ``(images, issame)``: a list of ``2 * P`` encoded images (pair
``p`` is images ``2p`` and ``2p + 1``) and a list of ``P`` is-same flags. Loading one with plain
:mod:`pickle` runs whatever the file says, so this module never does. Its unpickler builds only

* bytes, strings, lists, tuples, bools, integers and floats (pickle's own opcodes), and
* these globals, each replaced by a stand-in that checks its arguments and never calls numpy
  on them:

  - ``numpy.core.multiarray._reconstruct`` and ``numpy._core.multiarray._reconstruct`` with
    ``numpy.ndarray`` and ``numpy.dtype``: a plain numpy array (protocols 2 to 4);
  - ``numpy.core.numeric._frombuffer`` and ``numpy._core.numeric._frombuffer``: the same
    array written with protocol 5;
  - ``numpy.core.multiarray.scalar`` and ``numpy._core.multiarray.scalar``: a numpy bool,
    integer or float scalar (an is-same flag written as ``numpy.bool_``);
  - ``_codecs.encode`` with the ``latin1`` codec only: how Python 3 writes ``bytes`` in a
    protocol-2 pickle.

Arrays are limited to bool, integer and float dtypes (never ``object``, never structured).
Everything else (``os.system``, ``builtins.eval``, any class) is refused with a
:class:`~btnet_core.errors.FormatError` before it is looked up, so its code never runs.

Real files come in three kinds, all read here: Python-2 pickles of byte strings (the original
sets; read with ``encoding="bytes"``), protocol-4 pickles of ``bytes``, and pickles of numpy
``uint8`` arrays holding the encoded bytes (what ``cv2.imencode`` returns).
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from btnet_core.errors import DataError, FormatError
from btnet_core.formats._image import decode_image, encode_image

__all__ = [
    "read_verification_bin",
    "read_verification_bin_encoded",
    "restricted_loads",
    "write_verification_bin",
]

logger = logging.getLogger(__name__)

# The dtypes an array or scalar in a .bin may have: plain numbers and bools, one byte order.
_ALLOWED_DTYPES = frozenset(
    ["b1", "u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8", "?"]
)
_ALLOWED_BYTEORDERS = frozenset(["|", "<", ">", "="])


class _Refused(Exception):
    """Raised inside the unpickler; turned into a FormatError naming the file."""


class _NdarrayMarker:
    """Stands for ``numpy.ndarray`` as the first argument of ``_reconstruct``."""


def _text(value: object, what: str) -> str:
    """A str from a str or (Python-2 pickles read with encoding="bytes") ASCII bytes."""
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            raise _Refused(f"{what} is not ASCII") from None
    if isinstance(value, str):
        return value
    raise _Refused(f"{what} is a {type(value).__name__}, expected a string")


class _DTypeStub:
    """Stands for ``numpy.dtype(code, align, copy)``; checks the code and the pickled state."""

    def __init__(self, code: object, align: object = False, copy: object = True) -> None:
        name = _text(code, "dtype code")
        if name not in _ALLOWED_DTYPES:
            raise _Refused(f"dtype {name!r} is not a plain bool or number type")
        self.dtype = np.dtype(name)

    def __setstate__(self, state: object) -> None:
        # numpy writes (version, byteorder, subarray, names, fields, elsize, alignment, flags);
        # a plain dtype has no subarray, names or fields.
        if not isinstance(state, tuple) or len(state) < 5:
            raise _Refused("dtype state is not numpy's tuple")
        byteorder = _text(state[1], "dtype byte order")
        if byteorder not in _ALLOWED_BYTEORDERS or any(v is not None for v in state[2:5]):
            raise _Refused("dtype state describes a structured or sub-array dtype")
        if byteorder in "<>":
            self.dtype = self.dtype.newbyteorder(byteorder)


def _build_array(shape: object, dtype: object, fortran: object, raw: object) -> np.ndarray:
    if not isinstance(dtype, _DTypeStub):
        raise _Refused("array dtype is not a plain numpy dtype")
    if not isinstance(shape, tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _Refused("array shape is not a tuple of non-negative integers")
    if isinstance(raw, str):  # Python-2 pickles read with a text encoding
        raw = raw.encode("latin1")
    if not isinstance(raw, bytes | bytearray):
        raise _Refused("array data is not a byte string")
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) != count * dtype.dtype.itemsize:
        raise _Refused(
            f"array of shape {shape} needs {count * dtype.dtype.itemsize} bytes, "
            f"the pickle holds {len(raw)}"
        )
    flat = np.frombuffer(bytes(raw), dtype=dtype.dtype, count=count)
    return flat.reshape(shape, order="F" if fortran else "C").copy()


class _ArrayStub:
    """Stands for ``_reconstruct(ndarray, (0,), b'b')``; becomes an array on ``__setstate__``."""

    def __init__(self, cls: object, shape: object, typecode: object) -> None:
        if cls is not _NdarrayMarker:
            raise _Refused("_reconstruct is asked for a class other than numpy.ndarray")
        self.array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("array state is not numpy's tuple")
        shape, dtype, fortran, raw = state[-4:]
        self.array = _build_array(shape, dtype, fortran, raw)


def _frombuffer(buffer: object, dtype: object, shape: object, order: object) -> np.ndarray:
    """Stands for numpy's protocol-5 ``_frombuffer(buffer, dtype, shape, order)``."""
    return _build_array(shape, dtype, _text(order, "array order") == "F", buffer)


def _scalar(dtype: object, raw: object = b"") -> object:
    """Stands for ``numpy.core.multiarray.scalar``: returns the Python number or bool."""
    return _build_array((), dtype, False, raw).item()


def _codecs_encode(text: object, encoding: object = "utf-8") -> bytes:
    """Stands for ``_codecs.encode(str, "latin1")``, Python 3's protocol-2 form of bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode is only allowed as (str, 'latin1')")
    return text.encode("latin1")


_STANDINS: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("numpy", "ndarray"): _NdarrayMarker,
    ("numpy", "dtype"): _DTypeStub,
    ("numpy.core.multiarray", "_reconstruct"): _ArrayStub,
    ("numpy._core.multiarray", "_reconstruct"): _ArrayStub,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("_codecs", "encode"): _codecs_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the stand-ins above and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        standin = _STANDINS.get((module, name))
        if standin is None:
            raise _Refused(
                f"the pickle asks for {module}.{name}; only bytes, lists, tuples, bools, numbers "
                "and plain numpy arrays are allowed"
            )
        return standin

    def persistent_load(self, pid: object) -> Any:
        raise _Refused("the pickle uses persistent ids")


def _unwrap(value: object) -> object:
    """Replace array stand-ins by their arrays, recursively through lists and tuples."""
    if isinstance(value, _ArrayStub):
        if value.array is None:
            raise _Refused("an array was never given its data")
        return value.array
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_unwrap(v) for v in value)
    if isinstance(value, dict):
        return {_unwrap(k): _unwrap(v) for k, v in value.items()}
    if isinstance(value, _DTypeStub | _NdarrayMarker) or value is _NdarrayMarker:
        raise _Refused("a numpy dtype or class stands alone in the data")
    return value


def restricted_loads(data: bytes, source: str = "pickle") -> object:
    """Unpickle ``data`` allowing only plain data and plain numpy arrays (see the module doc).

    Python-2 byte strings come back as ``bytes`` (``encoding="bytes"``).

    Args:
        data: The pickle.
        source: Where it came from, for error messages.

    Returns:
        The unpickled object, built of bytes, str, bool, int, float, None, lists, tuples, dicts
        with such keys and values, and numpy arrays of plain dtypes.

    Raises:
        FormatError: The pickle asks for anything else, or is not a readable pickle.
    """
    unpickler = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes")
    try:
        return _unwrap(unpickler.load())
    except _Refused as exc:
        raise FormatError(f"{source}: refused to load: {exc}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        struct.error,
        UnicodeDecodeError,
        RecursionError,
        MemoryError,
    ) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise FormatError(f"{source}: not a readable pickle ({reason})") from None


def _as_bytes(item: object, index: int, source: str) -> bytes:
    if isinstance(item, bytes | bytearray):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype == np.uint8:
        return item.tobytes()
    what = f"{item.dtype} array" if isinstance(item, np.ndarray) else type(item).__name__
    raise FormatError(
        f"{source}: image {index} is a {what}; expected encoded bytes or a uint8 array"
    )


def _as_flags(value: object, source: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        items = value.reshape(-1).tolist()
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise FormatError(
            f"{source}: the is-same flags are a {type(value).__name__}; expected a list"
        )
    for index, flag in enumerate(items):
        if not isinstance(flag, bool | int | float) or flag not in (0, 1):
            raise FormatError(f"{source}: is-same flag {index} is {flag!r}; expected a bool")
    return np.asarray(items, dtype=bool).reshape(-1)


def read_verification_bin_encoded(path: str | os.PathLike[str]) -> tuple[list[bytes], np.ndarray]:
    """Read a verification ``.bin`` without decoding its images.

    Args:
        path: The ``.bin`` file.

    Returns:
        ``(encoded, issame)``: ``2 * P`` encoded images (pair ``p`` is ``2p, 2p + 1``) and a
        bool array of ``P`` is-same flags.

    Raises:
        DataError: The file does not exist.
        FormatError: The pickle is refused, unreadable, not ``(images, flags)``, or the counts do
            not match (two images per flag).
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{file}: verification .bin not found") from None
    except OSError as exc:
        raise DataError(f"{file}: cannot read ({exc.strerror})") from None
    source = str(file)
    content = restricted_loads(data, source)
    if not isinstance(content, tuple | list) or len(content) != 2:
        raise FormatError(f"{source}: expected a pickled pair (images, issame)")
    images, flags = content
    if not isinstance(images, list | tuple):
        raise FormatError(f"{source}: the images are a {type(images).__name__}; expected a list")
    encoded = [_as_bytes(item, i, source) for i, item in enumerate(images)]
    issame = _as_flags(flags, source)
    if len(encoded) != 2 * len(issame):
        raise FormatError(
            f"{source}: holds {len(encoded)} images and {len(issame)} is-same flags; expected "
            "two images per flag"
        )
    if not len(issame):
        raise FormatError(f"{source}: holds no pairs")
    logger.info("%s: %d pairs (%d same)", source, len(issame), int(issame.sum()))
    return encoded, issame


def read_verification_bin(path: str | os.PathLike[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """Read a verification ``.bin`` and decode its images.

    Args:
        path: The ``.bin`` file.

    Returns:
        ``(images, issame)``: ``2 * P`` RGB ``uint8`` arrays ``(H, W, 3)`` (pair ``p`` is
        ``2p, 2p + 1``; greyscale images are converted to RGB) and a bool array of ``P`` flags.

    Raises:
        DataError: The file does not exist.
        FormatError: As :func:`read_verification_bin_encoded`, or an image does not decode.
    """
    encoded, issame = read_verification_bin_encoded(path)
    images = [decode_image(data, f"{path} (image {i})") for i, data in enumerate(encoded)]
    return images, issame


def write_verification_bin(
    path: str | os.PathLike[str],
    images: Sequence[np.ndarray | bytes],
    issame: Sequence[bool] | np.ndarray,
    *,
    image_format: str = "jpeg",
    quality: int = 95,
    protocol: int = 4,
) -> None:
    """Write a verification ``.bin`` (a pickle of ``(list[bytes], list[bool])``), atomically.

    Args:
        path: Where to write.
        images: ``2 * P`` images: encoded bytes (stored as they are) or RGB/greyscale ``uint8``
            arrays (encoded with ``image_format``).
        issame: ``P`` is-same flags.
        image_format: ``"jpeg"`` or ``"png"``, for arrays.
        quality: JPEG quality, for arrays.
        protocol: The pickle protocol (InsightFace's newer files use 4).

    Raises:
        DataError: The counts do not match.
    """
    flags = [bool(f) for f in np.asarray(issame).reshape(-1)]
    if len(images) != 2 * len(flags):
        raise DataError(
            f"{path}: {len(images)} images for {len(flags)} is-same flags; expected two per flag"
        )
    encoded = [
        bytes(item)
        if isinstance(item, bytes | bytearray)
        else encode_image(item, image_format, quality)
        for item in images
    ]
    file = Path(path)
    tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(pickle.dumps((encoded, flags), protocol=protocol))
        os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)
