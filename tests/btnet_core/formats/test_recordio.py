"""Tests of btnet_core.formats.recordio: both layouts, hand-built files, damage, workers."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from btnet_core.errors import DataError, FormatError
from btnet_core.formats.recordio import (
    RecordIOReader,
    pack_image_folder,
    read_index,
    write_recordio,
)

MAGIC = 0xCED7230A


def png(image: np.ndarray) -> bytes:
    """Lossless encoding, so round trips can compare pixels exactly."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def random_images(count: int, seed: int = 0, size: tuple[int, int] = (12, 10)) -> list:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(*size, 3), dtype=np.uint8) for _ in range(count)]


def frame(data: bytes, cflag: int = 0) -> bytes:
    """One RecordIO frame written by hand: magic, flag and length, data, zero padding."""
    return struct.pack("<II", MAGIC, (cflag << 29) | len(data)) + data + b"\0" * (-len(data) % 4)


def ir_header(flag: int, label: float, record_id: int, labels: tuple = ()) -> bytes:
    """The IfQQ image header, written by hand, with its extra float32 labels."""
    return struct.pack("<IfQQ", flag, label, record_id, 0) + struct.pack(
        f"<{len(labels)}f", *labels
    )


def write_hand_built(tmp_path: Path, records: list[tuple[int, bytes]]) -> tuple[Path, Path]:
    """Write frames in the order given and an .idx listing them in that order."""
    rec, idx = tmp_path / "hand.rec", tmp_path / "hand.idx"
    lines, blob = [], b""
    for key, framed in records:
        lines.append(f"{key}\t{len(blob)}\n")
        blob += framed
    rec.write_bytes(blob)
    idx.write_text("".join(lines))
    return rec, idx


# -- round trips --------------------------------------------------------------------------------


def test_insightface_layout_round_trip(tmp_path: Path) -> None:
    """Images and grouped labels come back exactly; the header record says keys 1..6 are images
    and 7..9 the three identities."""
    images = random_images(6)
    labels = [0, 0, 1, 2, 2, 2]
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    write_recordio(rec, idx, images, labels, layout="insightface", image_format="png")
    reader = RecordIOReader(rec)
    assert reader.layout == "insightface"
    assert reader.header_labels == (7.0, 10.0)
    assert len(reader) == 6
    for i in range(6):
        image, label = reader[i]
        np.testing.assert_array_equal(image, images[i])
        assert label == labels[i]
    np.testing.assert_array_equal(reader.labels, labels)


def test_insightface_layout_writes_identity_ranges(tmp_path: Path) -> None:
    """Identity records (keys after the images) hold the image key range of each label, as
    InsightFace's packer writes them."""
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    write_recordio(rec, idx, random_images(5), [3, 3, 8, 9, 9], image_format="png")
    keys, offsets = read_index(idx)
    blob = rec.read_bytes()
    ranges = []
    for key in (6, 7, 8):
        start = int(offsets[list(keys).index(key)]) + 8
        flag, _, _, _ = struct.unpack_from("<IfQQ", blob, start)
        ranges.append(struct.unpack_from(f"<{flag}f", blob, start + 24))
    assert ranges == [(1.0, 3.0), (3.0, 4.0), (4.0, 6.0)]


def test_im2rec_layout_round_trip_with_shuffled_index(tmp_path: Path) -> None:
    """The im2rec layout has no header and lists its keys shuffled; item i is still key i."""
    images = random_images(9, seed=1)
    labels = [4, 1, 1, 0, 7, 7, 2, 0, 3]
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    write_recordio(rec, idx, images, labels, layout="im2rec", image_format="png", seed=3)
    keys, offsets = read_index(idx)
    assert sorted(keys.tolist()) == list(range(9))
    assert keys.tolist() != list(range(9))  # the index order is shuffled
    assert np.all(np.diff(offsets) > 0)  # ... and follows the file
    reader = RecordIOReader(rec, idx)
    assert reader.layout == "im2rec"
    assert reader.header_labels is None
    for i in (0, 4, 8, -1):
        image, label = reader[i]
        np.testing.assert_array_equal(image, images[i])
        assert label == labels[i]
    np.testing.assert_array_equal(reader.labels, labels)


def test_jpeg_arrays_round_trip_approximately(tmp_path: Path) -> None:
    """The default encoding is JPEG (what the field's files hold): smooth images come back
    close, as RGB uint8."""
    ramp = np.linspace(0, 255, 32 * 32 * 3).reshape(32, 32, 3).astype(np.uint8)
    rec, idx = tmp_path / "j.rec", tmp_path / "j.idx"
    write_recordio(rec, idx, [ramp, ramp[::-1]], [0, 1])
    image, _ = RecordIOReader(rec)[1]
    assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
    assert np.abs(image.astype(int) - ramp[::-1].astype(int)).mean() < 3


def test_pack_image_folder_labels_identities_in_sorted_order(tmp_path: Path) -> None:
    """Sub-folders become labels 0, 1, ... in sorted order; files are stored as they are
    (greyscale PNG comes back as RGB)."""
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    for person, count in (("bob", 2), ("alice", 1)):
        (tmp_path / "faces" / person).mkdir(parents=True)
        for i in range(count):
            (tmp_path / "faces" / person / f"{i}.png").write_bytes(png(grey + i))
    (tmp_path / "faces" / "bob" / "notes.txt").write_text("not an image")
    rec, idx = tmp_path / "f.rec", tmp_path / "f.idx"
    names = pack_image_folder(tmp_path / "faces", rec, idx)
    assert names == ["alice", "bob"]
    reader = RecordIOReader(rec, idx)
    np.testing.assert_array_equal(reader.labels, [0, 1, 1])
    image, _ = reader[2]
    np.testing.assert_array_equal(image, np.repeat((grey + 1)[:, :, None], 3, axis=2))


def test_insightface_labels_come_from_identity_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With identity records the reader reads 2 identity headers and the first and last image
    of each range (6 headers), not all 40 images, and gets every label right."""
    labels = [0] * 25 + [1] * 15
    rec, idx = tmp_path / "ids.rec", tmp_path / "ids.idx"
    write_recordio(rec, idx, [b"x"] * 40, labels)
    reader = RecordIOReader(rec, idx)
    calls = []
    original = RecordIOReader._read_header

    def counting(self: RecordIOReader, *args: object) -> object:
        calls.append(args)
        return original(self, *args)

    monkeypatch.setattr(RecordIOReader, "_read_header", counting)
    np.testing.assert_array_equal(reader.labels, labels)
    assert len(calls) == 6


# -- files built by hand (independent of our writer) ----------------------------------------------


def test_reads_a_hand_built_im2rec_file_with_a_multi_label_record(tmp_path: Path) -> None:
    """Records written with struct in shuffled key order; key 0 has flag 2 (two labels) and an
    image, so it is an image record (label = first label), not an InsightFace header."""
    images = random_images(3, seed=4)
    records = [
        (2, frame(ir_header(0, 6.0, 2) + png(images[2]))),
        (0, frame(ir_header(2, 0.0, 0, (5.0, 1.0)) + png(images[0]))),
        (1, frame(ir_header(0, 9.0, 1) + png(images[1]))),
    ]
    rec, idx = write_hand_built(tmp_path, records)
    reader = RecordIOReader(rec, idx)
    assert reader.layout == "im2rec"
    np.testing.assert_array_equal(reader.labels, [5, 9, 6])
    for i in range(3):
        np.testing.assert_array_equal(reader[i][0], images[i])


def test_reads_a_hand_built_insightface_file(tmp_path: Path) -> None:
    """Header record 0 (flag 2, labels 3 and 5, no image) makes keys 1-2 the images; keys 3-4
    are identity records and are not items."""
    images = random_images(2, seed=5)
    records = [
        (1, frame(ir_header(0, 0.0, 1) + png(images[0]))),
        (2, frame(ir_header(0, 1.0, 2) + png(images[1]))),
        (3, frame(ir_header(2, 0.0, 3, (1.0, 2.0)))),
        (4, frame(ir_header(2, 0.0, 4, (2.0, 3.0)))),
        (0, frame(ir_header(2, 0.0, 0, (3.0, 5.0)))),
    ]
    rec, idx = write_hand_built(tmp_path, records)
    reader = RecordIOReader(rec, idx)
    assert reader.layout == "insightface"
    assert len(reader) == 2
    np.testing.assert_array_equal(reader[1][0], images[1])
    np.testing.assert_array_equal(reader.labels, [0, 1])


def test_inconsistent_identity_records_fall_back_to_every_header(tmp_path: Path) -> None:
    """An identity record whose range spans two labels is not trusted: every image header is
    read instead, and the labels are right."""
    records = [
        (0, frame(ir_header(2, 0.0, 0, (3.0, 4.0)))),
        (1, frame(ir_header(0, 4.0, 1) + b"x")),
        (2, frame(ir_header(0, 6.0, 2) + b"y")),
        (3, frame(ir_header(2, 0.0, 3, (1.0, 3.0)))),
    ]
    rec, idx = write_hand_built(tmp_path, records)
    np.testing.assert_array_equal(RecordIOReader(rec, idx).labels, [4, 6])


def test_reads_a_record_split_at_a_magic_word(tmp_path: Path) -> None:
    """dmlc's writer cuts a record at every 4-aligned magic word (flags 1, 2, 3) and drops the
    word; the reader puts it back. Built by hand: data = header + b"abcd" + MAGIC + b"xy" +
    MAGIC + b"z"."""
    magic = struct.pack("<I", MAGIC)
    data = ir_header(0, 7.0, 0) + b"abcd" + magic + b"efgh" + magic + b"z"
    cut1, cut2 = 28, 36  # offsets of the two magic words in data, both multiples of 4
    framed = (
        frame(data[:cut1], cflag=1)
        + frame(data[cut1 + 4 : cut2], cflag=2)
        + frame(data[cut2 + 4 :], cflag=3)
    )
    rec, idx = write_hand_built(tmp_path, [(0, framed)])
    header, payload = RecordIOReader(rec, idx).read_raw(0)
    assert header.label == 7.0
    assert payload == b"abcd" + magic + b"efgh" + magic + b"z"


def test_writer_splits_records_holding_the_magic_word(tmp_path: Path) -> None:
    """Our writer frames such a record as dmlc does (continuation flags in the file) and the
    bytes survive the round trip; an unaligned magic word is left in place."""
    magic = struct.pack("<I", MAGIC)
    payload = b"abcd" + magic + b"e" + magic + b"fgh"  # first aligned in data, second not
    rec, idx = tmp_path / "m.rec", tmp_path / "m.idx"
    write_recordio(rec, idx, [payload], [0], layout="im2rec")
    blob = rec.read_bytes()
    first_word = struct.unpack_from("<I", blob, 4)[0]
    assert first_word >> 29 == 1 and first_word & ((1 << 29) - 1) == 28
    assert RecordIOReader(rec, idx).read_raw(0)[1] == payload


# -- damaged files ------------------------------------------------------------------------------


def write_small(tmp_path: Path, layout: str = "im2rec") -> tuple[Path, Path]:
    rec, idx = tmp_path / "s.rec", tmp_path / "s.idx"
    write_recordio(rec, idx, random_images(3), [0, 1, 2], layout=layout, shuffle=False)
    return rec, idx


def test_truncated_record_is_one_format_error(tmp_path: Path) -> None:
    """A .rec cut inside its last record: reading that record names the file and says
    truncated."""
    rec, idx = write_small(tmp_path)
    rec.write_bytes(rec.read_bytes()[:-40])
    reader = RecordIOReader(rec, idx)
    reader[0]  # earlier records are intact
    with pytest.raises(FormatError, match=r"s\.rec.*truncated"):
        reader[2]


def test_index_pointing_past_the_end_is_refused_on_open(tmp_path: Path) -> None:
    """A .rec cut before a record the .idx lists is caught when the reader opens."""
    rec, idx = write_small(tmp_path)
    keys, offsets = read_index(idx)
    rec.write_bytes(rec.read_bytes()[: int(offsets[-1])])
    with pytest.raises(FormatError, match="beyond the end"):
        RecordIOReader(rec, idx)


def test_corrupt_magic_is_one_format_error(tmp_path: Path) -> None:
    """Overwritten framing reads as 'no RecordIO magic', naming the file and the byte."""
    rec, idx = write_small(tmp_path)
    _, offsets = read_index(idx)
    blob = bytearray(rec.read_bytes())
    blob[int(offsets[1]) : int(offsets[1]) + 4] = b"\0\0\0\0"
    rec.write_bytes(bytes(blob))
    with pytest.raises(FormatError, match=rf"s\.rec.*no RecordIO magic at byte {offsets[1]}"):
        RecordIOReader(rec, idx)[1]


def test_corrupt_image_bytes_are_one_format_error(tmp_path: Path) -> None:
    """A record whose payload is not an image fails to decode with the file and item named."""
    rec, idx = tmp_path / "bad.rec", tmp_path / "bad.idx"
    write_recordio(rec, idx, [b"definitely not a jpeg"], [0], layout="im2rec")
    with pytest.raises(FormatError, match=r"bad\.rec \(image 0\): cannot decode"):
        RecordIOReader(rec, idx)[0]


def test_bad_index_line_names_the_line(tmp_path: Path) -> None:
    """A damaged .idx line is reported with its line number."""
    rec, idx = write_small(tmp_path)
    idx.write_text("0\t0\n1\tabc\n")
    with pytest.raises(FormatError, match=r"s\.idx:2: expected 'key<TAB>offset'"):
        RecordIOReader(rec, idx)


def test_missing_rec_is_one_data_error(tmp_path: Path) -> None:
    """A missing .rec is a DataError naming it."""
    with pytest.raises(DataError, match=r"nothing\.rec: RecordIO file not found"):
        RecordIOReader(tmp_path / "nothing.rec")


def test_missing_index_is_rebuilt_by_scanning(tmp_path: Path) -> None:
    """Without an .idx the reader scans the .rec and finds both layouts' keys from the record
    ids."""
    for layout in ("insightface", "im2rec"):
        folder = tmp_path / layout
        folder.mkdir()
        rec, idx = write_small(folder, layout)
        idx.unlink()
        reader = RecordIOReader(rec)
        assert reader.layout == layout
        np.testing.assert_array_equal(reader.labels, [0, 1, 2])


def test_out_of_range_item_is_index_error(tmp_path: Path) -> None:
    """Indexing past the end raises IndexError, as sequences and DataLoader samplers expect."""
    rec, idx = write_small(tmp_path)
    with pytest.raises(IndexError):
        RecordIOReader(rec, idx)[3]


def test_failed_write_keeps_the_existing_files(tmp_path: Path) -> None:
    """A write that fails midway (an unencodable image) leaves the previous .rec and .idx as
    they were and no temporary files."""
    rec, idx = write_small(tmp_path)
    before = (rec.read_bytes(), idx.read_bytes())
    bad = [*random_images(2), np.zeros((4, 4), dtype=np.float32)]
    with pytest.raises(DataError, match="cannot encode"):
        write_recordio(rec, idx, bad, [0, 1, 2], layout="im2rec")
    assert (rec.read_bytes(), idx.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.idx", "s.rec"]


def test_insightface_layout_refuses_ungrouped_labels(tmp_path: Path) -> None:
    """Identity records need each label's images contiguous: 0, 1, 0 is refused."""
    with pytest.raises(DataError, match="contiguous"):
        write_recordio(tmp_path / "x.rec", tmp_path / "x.idx", random_images(3), [0, 1, 0])


# -- processes ----------------------------------------------------------------------------------


def test_reader_survives_pickling_after_use(tmp_path: Path) -> None:
    """A reader that has an open file pickles (without its descriptor) and reads afterwards."""
    rec, idx = write_small(tmp_path)
    reader = RecordIOReader(rec, idx)
    expected = reader[1][0]
    clone = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(clone[1][0], expected)


class _Items:
    """A torch Dataset over a reader: CHW float tensors and labels."""

    def __init__(self, reader: RecordIOReader) -> None:
        self.reader = reader

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> tuple:
        image, label = self.reader[index]
        return image.transpose(2, 0, 1).astype(np.float32), label


def test_reader_works_in_dataloader_worker_processes(tmp_path: Path) -> None:
    """Two DataLoader workers (forked or spawned) each open the file for themselves and deliver
    every item once."""
    from torch.utils.data import DataLoader

    images = random_images(8, seed=6)
    rec, idx = tmp_path / "w.rec", tmp_path / "w.idx"
    write_recordio(rec, idx, images, list(range(8)), layout="im2rec", image_format="png")
    reader = RecordIOReader(rec, idx)
    reader[0]  # the parent has its own descriptor open when the workers start
    loader = DataLoader(_Items(reader), batch_size=2, num_workers=2)
    seen = {}
    for batch, labels in loader:
        for image, label in zip(batch.numpy(), labels.tolist(), strict=True):
            seen[label] = image
    assert sorted(seen) == list(range(8))
    np.testing.assert_array_equal(seen[5], images[5].transpose(2, 0, 1))
