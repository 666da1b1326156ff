"""Readers (and, where tests need them, writers) of the face-recognition field's data formats.

Every reader returns plain Python and numpy data (paths, ``uint8`` RGB arrays ``(H, W, 3)``,
``int64`` ids, ``bool`` flags) and reports a bad file as one line: a
:class:`~btnet_core.errors.FormatError` (truncated, corrupt or unsafe) or a
:class:`~btnet_core.errors.DataError` (missing, empty), naming the file and what is wrong.

* :mod:`.recordio`: InsightFace / mxnet ``train.rec`` + ``train.idx`` (both layouts), lazy.
* :mod:`.verification_bin`: InsightFace verification ``.bin`` pickles, via a restricted
  unpickler that never runs code from the file.
* :mod:`.pairs`: LFW ``pairs.txt`` and ``img1,img2,same`` CSV pair lists.
* :mod:`.survface`: the QMUL-SurvFace 1:N identification test set.

Example::

    from btnet_core.formats import RecordIOReader, read_verification_bin

    train = RecordIOReader("faces_ms1m/train.rec")   # train.idx next to it
    image, label = train[0]                          # (112, 112, 3) uint8 RGB, int
    images, issame = read_verification_bin("faces_ms1m/lfw.bin")
"""

from btnet_core.formats._image import decode_image, encode_image
from btnet_core.formats.pairs import read_pairs_csv, read_pairs_txt
from btnet_core.formats.recordio import (
    RecordHeader,
    RecordIOReader,
    pack_image_folder,
    read_index,
    scan_index,
    write_index,
    write_recordio,
)
from btnet_core.formats.survface import SurvFaceSet, read_survface
from btnet_core.formats.verification_bin import (
    read_verification_bin,
    read_verification_bin_encoded,
    restricted_loads,
    write_verification_bin,
)

__all__ = [
    "RecordHeader",
    "RecordIOReader",
    "SurvFaceSet",
    "decode_image",
    "encode_image",
    "pack_image_folder",
    "read_index",
    "read_pairs_csv",
    "read_pairs_txt",
    "read_survface",
    "read_verification_bin",
    "read_verification_bin_encoded",
    "restricted_loads",
    "scan_index",
    "write_index",
    "write_recordio",
    "write_verification_bin",
]
