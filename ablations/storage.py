"""Where a study keeps what it produces, on a local path or any pyarrow filesystem URI.

Layout under the store root (the result store's Parquet tables live there too)::

    ROOT/_ray/<study>/run-<UTC time>/    Ray Tune's experiment folders (one per run or resume)
    ROOT/_ray/<study>/trials/<id>.json   what each trial is, and its latest checkpoint
    ROOT/_trunks/<study>/<trunk key>/    trained trunks, shared by the study's trials

Every file is written whole and atomically: under a temporary name and renamed where the
filesystem can rename (local disks, HDFS); directly on object stores, where an upload only
becomes visible once complete. So a reader never sees half a file, and the presence of a
trunk file means a finished trunk.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from analysis.storefs import Storage


def is_uri(root: str) -> bool:
    """Whether ``root`` names a filesystem by scheme (``s3://``, ``file://``, ...)."""
    return "://" in root


class StudyStorage:
    """The study's folders on the store's filesystem.

    Args:
        root: The store root: a local path (made absolute) or a pyarrow filesystem URI.
        study: The study's name.
    """

    def __init__(self, root: str | Path, study: str) -> None:
        # The result store's file layer opens the root and writes atomically; trial records
        # and trunks go through the same code as the Parquet tables.
        self._files = Storage.open(os.path.expanduser(str(root)))
        self.fs, base = self._files.fs, self._files.base
        self.root = str(root).rstrip("/") if is_uri(str(root)) else base
        self.base = base.rstrip("/")
        self.study = study
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    # -- locations -------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """A path on :attr:`fs` below the root."""
        return "/".join([self.base, *parts])

    def uri(self, *parts: str) -> str:
        """The same location spelled for Ray Tune (a URI, or a local absolute path)."""
        return "/".join([self.root, *parts])

    @property
    def ray_dir(self) -> str:
        """Ray Tune's ``storage_path`` for this study."""
        return self.uri("_ray", self.study)

    def trial_record_path(self, trial_id: str) -> str:
        return self.path("_ray", self.study, "trials", f"{trial_id}.json")

    def trunk_path(self, key: str, filename: str) -> str:
        return self.path("_trunks", self.study, key, filename)

    def fingerprint(self) -> str:
        """A short id of this store and study, for names that must not collide."""
        return hashlib.sha256(f"{self.root}|{self.study}".encode()).hexdigest()[:10]

    # -- files -----------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type == pafs.FileType.File

    def mkdirs(self, path: str) -> None:
        self.fs.create_dir(path, recursive=True)

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a whole file atomically (see the module docstring)."""
        self._files.write_bytes_atomic(path, lambda sink: sink.write(data))

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as f:
            return f.read()

    def write_json(self, path: str, obj: Any) -> None:
        self.write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, default=str).encode())

    def read_json(self, path: str) -> Any:
        return json.loads(self.read_bytes(path))

    def list_json(self, folder: str) -> list[Any]:
        """Every readable ``*.json`` object in ``folder`` (missing folder: none)."""
        info = self.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        out = []
        for entry in info:
            if entry.type != pafs.FileType.File or not entry.base_name.endswith(".json"):
                continue
            if entry.base_name.startswith("."):
                continue
            try:
                out.append(self.read_json(entry.path))
            except (OSError, ValueError):
                continue  # written atomically, so only a foreign file can be unreadable
        return out

    def put_file(self, local: Path, path: str) -> None:
        """Copy a local file to ``path`` atomically."""
        if self.local:
            parent = path.rsplit("/", 1)[0]
            self.mkdirs(parent)
            tmp = f"{parent}/.{path.rsplit('/', 1)[1]}.{uuid.uuid4().hex[:8]}.part"
            pafs.copy_files(str(local), tmp, destination_filesystem=self.fs)
            os.replace(tmp, path)
        else:
            self.write_bytes(path, Path(local).read_bytes())

    def get_file(self, path: str, local: Path) -> Path:
        """Copy ``path`` to a local file (atomically) and return it."""
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.part")
        pafs.copy_files(
            path,
            str(tmp),
            source_filesystem=self.fs,
            destination_filesystem=pafs.LocalFileSystem(),
        )
        os.replace(tmp, local)
        return local

    def local_path(self, path: str) -> Path | None:
        """``path`` as a local file path when the store is on a local disk."""
        return Path(path) if self.local else None
