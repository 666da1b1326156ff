"""Filesystem layer of the result store: atomic file writes, listing and removal.

The store (:mod:`analysis.store`) keeps every table as many immutable Parquet files and never
rewrites a file in place, so all it needs from a filesystem is: "put a whole file atomically",
"list a folder", "delete a file". This module provides those three on any
:class:`pyarrow.fs.FileSystem`:

* Local disks (the tested case): the file is written under a temporary hidden name that no
  reader picks up (``.NAME.RANDOM.part``: a leading dot and a suffix other than ``.parquet``),
  flushed with ``fsync`` and renamed over the final name with ``os.replace``, which is atomic on
  POSIX. A crash before the rename leaves only the ``.part`` file, which readers ignore and
  :func:`remove_stale_parts` deletes later.
* Object stores (S3, GCS, Azure): there is no rename, but a single upload is atomic (the object
  appears only when the upload completes, multipart or not), so the file is written directly
  under its final key.
* Other pyarrow filesystems (HDFS, fsspec wrappers): temporary name and ``move``, atomic where
  that filesystem's rename is.
"""

from __future__ import annotations

import errno
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from btnet_core.errors import StoreError

logger = logging.getLogger(__name__)

#: Suffix of temporary files; chosen so that no ``*.parquet`` glob (DuckDB, polars, Python's
#: glob) and no pyarrow dataset discovery (which skips names starting with ".") reads them.
PART_SUFFIX = ".part"

_OBJECT_STORES = tuple(
    cls
    for cls in (
        getattr(pafs, "S3FileSystem", None),
        getattr(pafs, "GcsFileSystem", None),
        getattr(pafs, "AzureFileSystem", None),
    )
    if cls is not None
)


@dataclass(frozen=True)
class FileEntry:
    """One file found by :func:`list_files`.

    Attributes:
        path: Path of the file on its filesystem.
        name: Base name.
        size: Size in bytes (-1 where the filesystem does not say).
        mtime: Modification time in seconds since the epoch (None where unknown).
    """

    path: str
    name: str
    size: int
    mtime: float | None


class Storage:
    """A store root on one pyarrow filesystem.

    Args:
        fs: The filesystem.
        base: The root path on ``fs`` (no trailing slash).
        display: How to name the root in messages (the path or URI the user gave).
    """

    def __init__(self, fs: pafs.FileSystem, base: str, display: str) -> None:
        self.fs = fs
        self.base = base.rstrip("/") or "/"
        self.display = display
        self.is_local = isinstance(fs, pafs.LocalFileSystem)
        self.is_object_store = bool(_OBJECT_STORES) and isinstance(fs, _OBJECT_STORES)

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> Storage:
        """Resolve a local path or a pyarrow filesystem URI.

        Args:
            root: A local path, a ``file://`` URI or any URI that
                :meth:`pyarrow.fs.FileSystem.from_uri` understands (``s3://bucket/prefix``).

        Returns:
            The storage.

        Raises:
            StoreError: The URI cannot be resolved.
        """
        text = os.fspath(root)
        if "://" not in text:
            return cls(pafs.LocalFileSystem(), os.path.abspath(text), text)
        try:
            fs, path = pafs.FileSystem.from_uri(text)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise StoreError(f"cannot open result store {text}: {_one_line(exc)}") from exc
        return cls(fs, path, text)

    def join(self, *parts: str) -> str:
        """Path of ``parts`` below the root."""
        return f"{self.base.rstrip('/')}/{'/'.join(parts)}"

    def exists(self, path: str) -> bool:
        """Whether a file or directory exists at ``path``."""
        try:
            info = self.fs.get_file_info(path)
        except OSError as exc:
            raise StoreError(f"cannot read result store {self.display}: {_one_line(exc)}") from exc
        return info.type != pafs.FileType.NotFound

    def list_dirs(self, path: str) -> list[str]:
        """Names of the sub-directories of ``path`` (empty when it does not exist)."""
        return [e.base_name for e in self._infos(path) if e.type == pafs.FileType.Directory]

    def list_files(self, path: str, suffix: str = ".parquet") -> list[FileEntry]:
        """Visible files of ``path`` ending in ``suffix`` (hidden ``.`` and ``_`` names skipped).

        Args:
            path: A directory; a missing one gives an empty list.
            suffix: Required end of the name.

        Returns:
            The files, sorted by name.
        """
        out = []
        for info in self._infos(path):
            name = info.base_name
            if info.type != pafs.FileType.File or not name.endswith(suffix):
                continue
            if name.startswith((".", "_")):
                continue
            mtime = info.mtime.timestamp() if info.mtime is not None else None
            size = info.size if info.size is not None else -1
            out.append(FileEntry(info.path, name, size, mtime))
        out.sort(key=lambda e: e.name)
        return out

    def list_parts(self, path: str) -> list[FileEntry]:
        """Temporary ``.part`` files of ``path`` (left behind by crashed writers or in flight)."""
        out = []
        for info in self._infos(path):
            if info.type == pafs.FileType.File and info.base_name.endswith(PART_SUFFIX):
                mtime = info.mtime.timestamp() if info.mtime is not None else None
                out.append(FileEntry(info.path, info.base_name, info.size or -1, mtime))
        return out

    def _infos(self, path: str) -> list[pafs.FileInfo]:
        try:
            return self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        except OSError as exc:
            raise StoreError(f"cannot list result store {self.display}: {_one_line(exc)}") from exc

    def write_parquet(self, path: str, table: pa.Table) -> None:
        """Write ``table`` as one Parquet file at ``path``, atomically.

        Args:
            path: Final path; its directory is created when missing.
            table: The data (its schema metadata is kept).

        Raises:
            StoreError: The write failed (disk full, read-only, permissions); nothing was left
                under the final name and the previous files are untouched.
        """
        self.write_bytes_atomic(path, lambda sink: pq.write_table(table, sink, compression="zstd"))

    def write_text(self, path: str, text: str) -> None:
        """Write a small text file atomically (the store manifest)."""
        data = text.encode("utf-8")
        self.write_bytes_atomic(path, lambda sink: sink.write(data))

    def write_bytes_atomic(self, path: str, writer: Callable[[Any], object]) -> None:
        """Run ``writer(sink)`` into a fresh file that appears at ``path`` only when complete.

        Args:
            path: Final path.
            writer: Callable taking a writable binary file object.

        Raises:
            StoreError: The write failed; the final name is untouched.
        """
        directory, name = path.rsplit("/", 1)
        if self.is_local:
            self._write_local(directory, name, writer)
        elif self.is_object_store:
            try:
                with self.fs.open_output_stream(path) as sink:
                    writer(sink)
            except (OSError, pa.ArrowException) as exc:
                raise StoreError(
                    f"cannot write {path} in {self.display}: {_one_line(exc)}"
                ) from exc
        else:
            tmp = f"{directory}/.{name}.{uuid.uuid4().hex[:12]}{PART_SUFFIX}"
            try:
                self.fs.create_dir(directory, recursive=True)
                with self.fs.open_output_stream(tmp) as sink:
                    writer(sink)
                self.fs.move(tmp, path)
            except (OSError, pa.ArrowException) as exc:
                self._discard(tmp)
                raise StoreError(
                    f"cannot write {path} in {self.display}: {_one_line(exc)}"
                ) from exc

    def _write_local(self, directory: str, name: str, writer: Callable[[Any], object]) -> None:
        tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:12]}{PART_SUFFIX}")
        final = os.path.join(directory, name)
        try:
            os.makedirs(directory, exist_ok=True)
            with open(tmp, "wb") as sink:
                writer(sink)
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise StoreError(
                f"cannot write {final} (result store {self.display}): {_os_reason(exc)}"
            ) from exc
        _fsync_dir(directory)

    def delete(self, path: str) -> bool:
        """Delete one file; a file that is already gone is not an error.

        Returns:
            Whether this call removed it.

        Raises:
            StoreError: The file exists but cannot be removed.
        """
        try:
            self.fs.delete_file(path)
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            if getattr(exc, "errno", None) == errno.ENOENT:
                return False
            raise StoreError(f"cannot delete {path} in {self.display}: {_one_line(exc)}") from exc

    def _discard(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except OSError:
            pass

    def read_text(self, path: str) -> str | None:
        """Contents of a small text file, or None when it does not exist."""
        try:
            with self.fs.open_input_stream(path) as src:
                return src.read().decode("utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            if getattr(exc, "errno", None) == errno.ENOENT:
                return None
            raise StoreError(f"cannot read {path} in {self.display}: {_one_line(exc)}") from exc

    def remove_stale_parts(self, directory: str, older_than_s: float) -> int:
        """Delete ``.part`` files older than ``older_than_s`` seconds (crashed writers' leftovers).

        Returns:
            How many were removed.
        """
        now = time.time()
        removed = 0
        for entry in self.list_parts(directory):
            if entry.mtime is not None and now - entry.mtime > older_than_s:
                if self.delete(entry.path):
                    logger.info("removed %s, left by an interrupted write", entry.path)
                    removed += 1
        return removed


def write_local_text(path: str | os.PathLike[str], text: str, what: str) -> Path:
    """Write a local text file (a report, a dashboard) atomically: temporary name, rename.

    Raises:
        StoreError: It cannot be written (``what`` names it in the message).
    """
    out = Path(path)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {what} {out}: {exc.strerror or exc}") from exc
    return out


def _fsync_dir(directory: str) -> None:
    """Make a rename durable; not every platform can open a directory, so failure is ignored."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    if exc.errno in (errno.EROFS,):
        return "the file system is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or _one_line(exc)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
