"""Tests of btnet_core.formats.verification_bin: real-world pickle kinds read, hostile ones
refused without running."""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from btnet_core.errors import DataError, FormatError
from btnet_core.formats.verification_bin import (
    read_verification_bin,
    read_verification_bin_encoded,
    write_verification_bin,
)


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def four_images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8) for _ in range(4)]


def python2_pickle(images: list[bytes], flags: list[bool]) -> bytes:
    """What Python 2's cPickle.dump((images, flags), f, protocol=2) writes for byte strings:
    SHORT_BINSTRING / BINSTRING opcodes, which Python 3 reads as str unless told otherwise."""
    out = bytearray(b"\x80\x02]q\x00(")  # PROTO 2, EMPTY_LIST, BINPUT, MARK
    for data in images:
        if len(data) < 256:
            out += b"U" + bytes([len(data)]) + data
        else:
            out += b"T" + struct.pack("<i", len(data)) + data
    out += b"e]q\x01("  # APPENDS, EMPTY_LIST, BINPUT, MARK
    out += b"".join(b"\x88" if f else b"\x89" for f in flags)
    out += b"e\x86q\x02."  # APPENDS, TUPLE2, BINPUT, STOP
    return bytes(out)


# -- what real files hold -------------------------------------------------------------------------


def test_protocol_4_bytes_round_trip(tmp_path: Path) -> None:
    """Newer InsightFace files: a protocol-4 pickle of (list of bytes, list of bools)."""
    images = four_images()
    path = tmp_path / "lfw.bin"
    write_verification_bin(path, images, [True, False], image_format="png")
    decoded, issame = read_verification_bin(path)
    assert issame.dtype == bool and issame.tolist() == [True, False]
    for got, want in zip(decoded, images, strict=True):
        np.testing.assert_array_equal(got, want)


def test_python2_pickle_of_byte_strings(tmp_path: Path) -> None:
    """The original sets are Python-2 pickles of byte strings (one over 255 bytes here)."""
    images = four_images()
    encoded = [png(i) for i in images]
    noise = np.random.default_rng(1).integers(0, 256, size=(20, 20, 3), dtype=np.uint8)
    encoded[3] = png(noise)
    assert len(encoded[0]) < 256 <= len(encoded[3])  # both string opcodes occur
    blob = python2_pickle(encoded, [False, True])
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(blob)  # really Python-2 strings: plain Python 3 cannot read them as text
    path = tmp_path / "agedb_30.bin"
    path.write_bytes(blob)
    got, issame = read_verification_bin_encoded(path)
    assert got == encoded
    assert issame.tolist() == [False, True]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_uint8_arrays_as_cv2_imencode_returns(tmp_path: Path, protocol: int) -> None:
    """Some files hold each image as the (n, 1) uint8 array of cv2.imencode; protocol 5 uses
    numpy's _frombuffer, 2 to 4 its _reconstruct."""
    encoded = [png(i) for i in four_images()]
    arrays = [np.frombuffer(e, dtype=np.uint8).reshape(-1, 1) for e in encoded]
    path = tmp_path / "cfp_fp.bin"
    path.write_bytes(pickle.dumps((arrays, [True, True]), protocol=protocol))
    got, issame = read_verification_bin_encoded(path)
    assert got == encoded
    assert issame.tolist() == [True, True]


def test_numpy_arrays_under_the_numpy_1_module_name(tmp_path: Path) -> None:
    """Files written by numpy 1.x name numpy.core.multiarray (numpy 2 writes numpy._core)."""
    encoded = [png(i) for i in four_images()]
    arrays = [np.frombuffer(e, dtype=np.uint8) for e in encoded]
    blob = pickle.dumps((arrays, [True, False]), protocol=2)
    assert b"numpy._core.multiarray\n" in blob
    blob = blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    path = tmp_path / "old.bin"
    path.write_bytes(blob)
    assert read_verification_bin_encoded(path)[0] == encoded


@pytest.mark.parametrize("protocol", [2, 4])
def test_numpy_bool_flags(tmp_path: Path, protocol: int) -> None:
    """Flags written as numpy bools (scalars) or as a bool array are read as flags."""
    encoded = [png(i) for i in four_images()]
    for flags in ([np.bool_(True), np.bool_(False)], np.array([True, False])):
        path = tmp_path / "flags.bin"
        path.write_bytes(pickle.dumps((encoded, flags), protocol=protocol))
        assert read_verification_bin_encoded(path)[1].tolist() == [True, False]


def test_greyscale_images_come_back_as_rgb(tmp_path: Path) -> None:
    """A greyscale JPEG decodes to (H, W, 3) with equal channels."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 9), 128, dtype=np.uint8)).save(buffer, format="JPEG")
    path = tmp_path / "grey.bin"
    write_verification_bin(path, [buffer.getvalue()] * 2, [True])
    image = read_verification_bin(path)[0][0]
    assert image.shape == (8, 9, 3)
    assert (image[..., 0] == image[..., 2]).all()


# -- hostile pickles ----------------------------------------------------------------------------


class Payload:
    """An object whose unpickling calls ``func(*args)``: how a hostile pickle runs code."""

    def __init__(self, func: object, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


def payloads(marker: Path) -> dict[str, object]:
    """Pickle contents that create ``marker`` (np.save adds nothing: marker ends in .npy)."""
    return {
        "io.open": (Payload(open, (str(marker), "w")), [True]),
        "posix.system": ([b"x", b"y"], Payload(os.system, (f"touch '{marker}'",))),
        "builtins.exec": ([Payload(exec, (f"open({str(marker)!r}, 'w').close()",)), b"y"], [1]),
        "numpy.save": ([b"x", Payload(np.save, (str(marker), np.zeros(1)))], [True]),
    }


@pytest.mark.parametrize("name", ["io.open", "posix.system", "builtins.exec", "numpy.save"])
def test_hostile_pickle_is_refused_and_its_payload_never_runs(tmp_path: Path, name: str) -> None:
    """Each payload creates its marker file under plain pickle (so it is a real payload); the
    reader refuses it with one FormatError naming the global, and the marker never appears."""
    control = tmp_path / "control.npy"
    pickle.loads(pickle.dumps(payloads(control)[name]))
    assert control.exists()

    marker = tmp_path / "pwned.npy"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(payloads(marker)[name], protocol=4))
    with pytest.raises(FormatError, match=rf"evil\.bin: refused to load: .*{name}"):
        read_verification_bin(path)
    assert not marker.exists()


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    """numpy arrays of dtype object could hold anything: refused at the dtype."""
    path = tmp_path / "objects.bin"
    path.write_bytes(pickle.dumps(([np.array([b"a"], dtype=object)] * 2, [True]), protocol=2))
    with pytest.raises(FormatError, match="dtype 'O8' is not a plain bool or number type"):
        read_verification_bin_encoded(path)


def test_codecs_encode_is_allowed_only_for_latin1(tmp_path: Path) -> None:
    """_codecs.encode stands only for Python 3's protocol-2 bytes (latin1); other codecs are
    refused."""
    path = tmp_path / "codec.bin"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(FormatError, match="only allowed as"):
        read_verification_bin_encoded(path)


# -- malformed files ----------------------------------------------------------------------------


def test_mismatched_counts_are_one_format_error(tmp_path: Path) -> None:
    """Three images for one flag: the file and both counts are named."""
    path = tmp_path / "short.bin"
    path.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True]), protocol=4))
    with pytest.raises(FormatError, match=r"short\.bin: holds 3 images and 1 is-same flags"):
        read_verification_bin_encoded(path)


def test_truncated_pickle_is_one_format_error(tmp_path: Path) -> None:
    """A pickle cut in half is 'not a readable pickle', not an EOFError stack trace."""
    path = tmp_path / "cut.bin"
    blob = pickle.dumps(([b"a" * 100, b"b" * 100], [True]), protocol=4)
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(FormatError, match=r"cut\.bin: not a readable pickle"):
        read_verification_bin_encoded(path)


def test_wrong_structure_is_one_format_error(tmp_path: Path) -> None:
    """A pickle of something else than (images, flags) is named as such."""
    path = tmp_path / "dict.bin"
    path.write_bytes(pickle.dumps({"images": []}, protocol=4))
    with pytest.raises(FormatError, match="expected a pickled pair"):
        read_verification_bin_encoded(path)


def test_undecodable_image_names_its_index(tmp_path: Path) -> None:
    """Decoding failure names the file and the image index."""
    path = tmp_path / "junk.bin"
    path.write_bytes(pickle.dumps(([png(four_images()[0]), b"junk"], [True]), protocol=4))
    with pytest.raises(FormatError, match=r"junk\.bin \(image 1\): cannot decode"):
        read_verification_bin(path)


def test_missing_file_is_one_data_error(tmp_path: Path) -> None:
    """A missing .bin is a DataError naming it."""
    with pytest.raises(DataError, match=r"nope\.bin: verification \.bin not found"):
        read_verification_bin(tmp_path / "nope.bin")
