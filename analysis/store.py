"""The Parquet result store of btnet-lab: its schema, its writer and its readers.

Every trial of every study (sweeps and ablations) ends as one row of the ``trials`` table and
a few rows of the ``curves`` table (its learning curves). This module is the only code that
knows how those tables are laid out on disk; the sweep runner writes through
:func:`write_trial`, everything in :mod:`analysis` reads through :func:`read_trials`,
:func:`read_curves` and :func:`sql`. The layout, the column conventions and recipes for reading
the store with pandas, pyarrow, DuckDB and polars without btnet-lab are in ``docs/store.md``.

Layout::

    STORE/_store.json                         format name and schema version
    STORE/trials/<study dir>/t-*.parquet      one trial, written as the trial ends
    STORE/trials/<study dir>/c-*.parquet      many trials (compaction or a batch write)
    STORE/curves/<study dir>/...              the same for learning curves

Files are immutable and appear atomically (see :mod:`analysis.storefs`). Rewriting a trial
(``--resume``) adds a newer file; readers keep, per (study, trial_id), the row with the newest
``written_at``, so a duplicate is never visible through btnet-lab whatever state a crash left.
Compaction merges a study's files into one and deletes the inputs afterwards.

Example:
    >>> import tempfile
    >>> from analysis.store import write_trial, read_trials
    >>> root = tempfile.mkdtemp()
    >>> write_trial(root, {"study": "demo", "kind": "sweep", "trial_id": "t0",
    ...                    "status": "completed", "final_acc_112_7": 0.86})
    >>> read_trials(root, "demo", columns=["trial_id", "final_acc_112_7"]).iloc[0].tolist()
    ['t0', 0.86]
"""

from __future__ import annotations

import datetime as _dt
import errno
import functools
import hashlib
import json
import logging
import math
import numbers
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from analysis.storefs import FileEntry, Storage
from btnet_core.errors import StoreError

logger = logging.getLogger(__name__)

#: Version of the layout and column conventions written by this module. Readers accept this
#: version and older ones (missing columns read as null) and refuse newer ones.
SCHEMA_VERSION: int = 1

#: Name written in the manifest, so that a folder is recognisable as a btnet-lab store.
STORE_FORMAT = "btnet-lab-result-store"
MANIFEST = "_store.json"
TRIALS = "trials"
CURVES = "curves"
_META_VERSION = b"btnet_lab.schema_version"
_META_TABLE = b"btnet_lab.table"

#: A study's single-trial files are merged into one file once there are this many of them.
AUTO_COMPACT_SMALL_FILES = 200
#: A study's merged files are merged into one once there are this many of them.
AUTO_COMPACT_MERGED_FILES = 8
#: Temporary files and orphaned learning curves older than this are crash leftovers.
STALE_AFTER_S = 3600.0

_TS = pa.timestamp("us", tz="UTC")
_TRIAL_ORDER = [("study", "ascending"), ("trial_id", "ascending")]
_CURVE_ORDER = [
    ("study", "ascending"),
    ("trial_id", "ascending"),
    ("metric", "ascending"),
    ("iteration", "ascending"),
]

#: The fixed columns of ``trials``, in their canonical order, with their Arrow types.
FIXED_COLUMNS: dict[str, pa.DataType] = {
    "schema_version": pa.int64(),
    "study": pa.string(),
    "kind": pa.string(),
    "trial_id": pa.string(),
    "variant": pa.string(),
    "baseline": pa.string(),
    "seed": pa.int64(),
    "status": pa.string(),
    "error": pa.string(),
    "iterations": pa.int64(),
    "metric": pa.string(),
    "mode": pa.string(),
    "wall_time_s": pa.float64(),
    "cpu_hours": pa.float64(),
    "gpu_hours": pa.float64(),
    "trunk_cache_hit": pa.bool_(),
    "trunk_key": pa.string(),
    "git_commit": pa.string(),
    "config_hash": pa.string(),
    "package_version": pa.string(),
    "start_time": _TS,
    "end_time": _TS,
    "protocol": pa.string(),
    "written_at": _TS,
}
#: Fixed columns every row must give (the store sets ``schema_version`` and ``written_at``).
REQUIRED_COLUMNS = ("study", "kind", "trial_id", "status")
KINDS = ("sweep", "ablation")
STATUSES = ("completed", "error", "diverged")
MODES = ("max", "min")

#: The columns of ``curves``.
CURVE_COLUMNS: dict[str, pa.DataType] = {
    "study": pa.string(),
    "trial_id": pa.string(),
    "iteration": pa.int64(),
    "metric": pa.string(),
    "value": pa.float64(),
    "written_at": _TS,
}

#: Prefixes of the open column families; the order is the order of columns in a read.
_FAMILIES = ("cfg_", "final_", "best_", "macs_", "params_", "branch_params_")
_FLOAT_FAMILIES = ("final_", "best_")
_COUNT_FAMILIES = ("macs_", "params_", "branch_params_")
_NAME_TAIL = re.compile(r"[A-Za-z0-9_]+")
_KEY_SEGMENT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_]*[A-Za-z0-9])?")
_STRING_FIXED = {name for name, t in FIXED_COLUMNS.items() if t == pa.string()}

_schema_cache: dict[tuple[str, str, int], pa.Schema] = {}
_schema_cache_lock = threading.Lock()
_clock_lock = threading.Lock()
_last_us = 0

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Column names and configs


def config_column(key: str) -> str:
    """Column of a dotted config key: ``stage2.lr`` -> ``cfg_stage2__lr``.

    Args:
        key: A dotted key; each segment holds letters, digits and single underscores and
            neither starts nor ends with an underscore (so that the mapping can be reversed).

    Returns:
        The column name.

    Raises:
        StoreError: The key cannot be mapped reversibly.
    """
    segments = str(key).split(".")
    for seg in segments:
        if not _KEY_SEGMENT.fullmatch(seg) or "__" in seg:
            raise StoreError(
                f"config key {key!r}: segment {seg!r} must be letters, digits and single "
                "underscores, not starting or ending with '_'"
            )
    return "cfg_" + "__".join(segments)


def config_key(column: str) -> str:
    """Dotted config key of a column: ``cfg_model__insertion__7`` -> ``model.insertion.7``.

    Raises:
        StoreError: ``column`` is not a config column.
    """
    if not column.startswith("cfg_") or len(column) == 4:
        raise StoreError(f"column {column!r} is not a config column (cfg_...)")
    return column[4:].replace("__", ".")


def flatten_config(nested: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten a nested config into ``cfg_`` columns with scalar values.

    Nested mappings become dotted keys (``{"stage2": {"lr": 0.02}}`` -> ``cfg_stage2__lr``);
    int, float, bool, str and None stay as they are (numpy scalars become Python ones); lists
    and tuples become JSON strings (``[7, 14]`` -> ``"[7, 14]"``). Empty mappings carry no
    value and are dropped.

    Args:
        nested: The resolved config of a trial.

    Returns:
        ``{column: value}``, sorted by column.

    Raises:
        StoreError: A key cannot be mapped to a column, two keys map to the same column, or a
            value is of another type.
    """
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
            return
        column = config_column(prefix)
        if column in out:
            raise StoreError(f"config keys collide: {prefix!r} maps to {column} twice")
        out[column] = _config_scalar(prefix, node)

    if not isinstance(nested, Mapping):
        raise StoreError(f"config must be a mapping, got {type(nested).__name__}")
    walk("", nested)
    return dict(sorted(out.items()))


def _config_scalar(key: str, value: Any) -> Any:
    if value is None or type(value) in (bool, str, int, float):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        try:
            return json.dumps(_jsonable(value), sort_keys=True)
        except TypeError as exc:
            raise StoreError(f"config key {key!r}: list holds a non-JSON value ({exc})") from exc
    raise StoreError(
        f"config key {key!r}: value of type {type(value).__name__}; allowed: int, float, bool, "
        "str, None, lists of those"
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


@functools.lru_cache(maxsize=65536)
def column_family(column: str) -> str | None:
    """Which open family a column belongs to (``"cfg_"``, ``"final_"``...), or None."""
    for prefix in ("branch_params_", *_FAMILIES):
        if column.startswith(prefix) and len(column) > len(prefix):
            return prefix
    return None


def study_dir(study: str) -> str:
    """Directory name of a study below ``trials/`` and ``curves/``.

    Simple names are used as they are; other names get a readable prefix and a hash, so that
    any study name maps to a safe, visible directory name. Readers do not rely on it being
    reversible: every row carries its ``study``.
    """
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}", study):
        return study
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", study).strip("._-")[:48] or "study"
    digest = hashlib.sha1(study.encode("utf-8")).hexdigest()[:10]
    return f"s{slug}-{digest}" if not slug[0].isalnum() else f"{slug}-{digest}"


# --------------------------------------------------------------------------------------------
# Row validation


def _now_us() -> int:
    """Strictly increasing microseconds since the epoch (within this process).

    Known limit: across machines this is each writer's own clock, so two machines whose
    clocks disagree by more than the time between two writes of the same trial could keep
    the older write. A store-wide sequence number would need a coordinator (or conditional
    writes on object stores); one process writing a trial at a time, as the runner does,
    never meets it.
    """
    global _last_us
    with _clock_lock:
        now = time.time_ns() // 1000
        _last_us = max(now, _last_us + 1)
        return _last_us


def _timestamp_us(column: str, value: Any) -> int | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        if isinstance(value, str):
            value = _dt.datetime.fromisoformat(value)
        if isinstance(value, np.datetime64):
            value = pd.Timestamp(value)
        if isinstance(value, _dt.datetime):
            if value.tzinfo is None:  # naive times are taken as UTC (documented)
                value = value.replace(tzinfo=_dt.timezone.utc)
            if isinstance(value, pd.Timestamp):
                return int(value.value // 1000)
            delta = value - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
            return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            if not math.isfinite(float(value)):
                raise ValueError("not finite")
            return int(round(float(value) * 1_000_000))
    except (ValueError, OverflowError) as exc:
        raise StoreError(f"column {column}: {value!r} is not a valid time ({exc})") from exc
    raise StoreError(
        f"column {column}: {type(value).__name__} is not a time; allowed: datetime, ISO-8601 "
        "string, seconds since the epoch"
    )


def _as_int(column: str, value: Any) -> int | None:
    if value is None or type(value) is int:
        return value
    if isinstance(value, (bool, np.bool_)):
        raise StoreError(f"column {column}: expected an integer, got a bool")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(float(value))
    raise StoreError(f"column {column}: expected an integer, got {value!r}")


def _as_float(column: str, value: Any) -> float | None:
    if value is None or type(value) is float:
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise StoreError(f"column {column}: expected a number, got {value!r}")
    return float(value)


def _as_str(column: str, value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    if not isinstance(value, str):
        raise StoreError(f"column {column}: expected a string, got {type(value).__name__}")
    return value


def _normalise_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Check one trial row against the conventions; return it with canonical Python values."""
    if not isinstance(row, Mapping):
        raise StoreError(f"a trial row must be a dict, got {type(row).__name__}")
    ident = f"trial {row.get('trial_id')!r} of study {row.get('study')!r}"
    for name in REQUIRED_COLUMNS:
        if row.get(name) is None:
            raise StoreError(f"{ident}: required column {name!r} is missing")
    out: dict[str, Any] = {}
    for name, value in row.items():
        if not isinstance(name, str):
            raise StoreError(f"{ident}: column names must be strings, got {name!r}")
        if isinstance(value, float) and name in _STRING_FIXED and math.isnan(value):
            value = None  # pandas' missing value in a string column
        if name in ("written_at",):
            continue  # set by the store
        if name == "schema_version":
            if value is not None and _as_int(name, value) != SCHEMA_VERSION:
                raise StoreError(
                    f"{ident}: schema_version {value!r} differs from this store's writer "
                    f"({SCHEMA_VERSION}); leave it out, the store sets it"
                )
            continue
        if name in FIXED_COLUMNS:
            t = FIXED_COLUMNS[name]
            if t == pa.string():
                out[name] = _as_str(name, value)
            elif t == pa.int64():
                out[name] = _as_int(name, value)
            elif t == pa.float64():
                out[name] = _as_float(name, value)
            elif t == pa.bool_():
                if value is not None and not isinstance(value, (bool, np.bool_)):
                    raise StoreError(f"{ident}: column {name}: expected a bool, got {value!r}")
                out[name] = None if value is None else bool(value)
            else:
                out[name] = _timestamp_us(name, value)
            continue
        family = _open_family(name)
        if family is None:
            raise StoreError(
                f"{ident}: unknown column {name!r}; allowed: the fixed columns (see "
                "docs/store.md) and cfg_*, final_*, best_*, macs_*, params_*, branch_params_* "
                "with letters, digits and '_'"
            )
        if family == "cfg_":
            out[name] = _config_scalar(name, value)
        elif family in _FLOAT_FAMILIES:
            out[name] = _as_float(name, value)
        else:
            out[name] = _as_int(name, value)
    _check_enums(ident, out)
    return out


@functools.lru_cache(maxsize=65536)
def _open_family(name: str) -> str | None:
    """The open family of a valid column name, None for an invalid one."""
    family = column_family(name)
    if family is None or not _NAME_TAIL.fullmatch(name[len(family) :]):
        return None
    return family


def _check_enums(ident: str, row: dict[str, Any]) -> None:
    for name, allowed in (("kind", KINDS), ("status", STATUSES), ("mode", MODES)):
        value = row.get(name)
        if value is not None and value not in allowed:
            raise StoreError(f"{ident}: {name} {value!r} is not one of {', '.join(allowed)}")
    if not row["study"].strip() or any(ord(c) < 32 for c in row["study"]):
        raise StoreError(f"{ident}: study name must be non-empty printable text")
    if not row["trial_id"].strip():
        raise StoreError(f"{ident}: trial_id must be non-empty")
    if row["kind"] == "ablation" and row.get("variant") is None:
        raise StoreError(f"{ident}: an ablation trial needs a variant")
    if row["kind"] == "sweep" and row.get("variant") is not None:
        raise StoreError(f"{ident}: a sweep trial has no variant (got {row['variant']!r})")


def _cfg_type(values: list[Any]) -> pa.DataType:
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.null()
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.int64()
    if kinds <= {int, float}:
        return pa.float64()
    if kinds == {str}:
        return pa.string()
    return pa.string()  # mixed kinds (a sweep choice of "auto" or 0.1) read as text


def _cfg_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _column_order(names: Iterable[str]) -> list[str]:
    """Canonical column order: fixed columns, then each family sorted, then anything else."""
    names = list(dict.fromkeys(names))
    fixed = [n for n in FIXED_COLUMNS if n in names]
    rest = [n for n in names if n not in FIXED_COLUMNS]

    def rank(n: str) -> tuple[int, str]:
        fam = column_family(n)
        order = ("cfg_", "final_", "best_", "macs_", "params_", "branch_params_")
        return (order.index(fam) if fam in order else len(order), n)

    return fixed + sorted(rest, key=rank)


def _rows_table(rows: Sequence[dict[str, Any]], written_us: Sequence[int]) -> pa.Table:
    """Arrow table of normalised rows (written_at and schema_version filled in)."""
    # Every file holds every fixed column (null where a row has none), so that raw readers
    # see the same fixed columns in all files.
    names = _column_order([*FIXED_COLUMNS, *(n for r in rows for n in r)])
    arrays = []
    fields = []
    for name in names:
        if name == "schema_version":
            values: list[Any] = [SCHEMA_VERSION] * len(rows)
        elif name == "written_at":
            values = list(written_us)
        else:
            values = [r.get(name) for r in rows]
        if name in FIXED_COLUMNS:
            t = FIXED_COLUMNS[name]
        elif name.startswith("cfg_"):
            t = _cfg_type(values)
            if t == pa.string():
                values = [_cfg_text(v) for v in values]
        elif name.startswith(_FLOAT_FAMILIES):
            t = pa.float64()
        else:
            t = pa.int64()
        arrays.append(pa.array(values, type=t, from_pandas=True))
        fields.append(pa.field(name, t))
    schema = pa.schema(fields, metadata=_file_metadata(TRIALS))
    return pa.Table.from_arrays(arrays, schema=schema)


def _curves_table(
    curves: Sequence[Mapping[str, Any]],
    owners: Mapping[tuple[str, str], int],
    default_key: tuple[str, str] | None,
) -> pa.Table | None:
    """Arrow table of learning-curve rows; ``owners`` maps (study, trial_id) -> written_at."""
    if not curves:
        return None
    cols: dict[str, list[Any]] = {name: [] for name in CURVE_COLUMNS}
    # A trial resumed from a checkpoint may report an iteration twice: the last value counts.
    latest: dict[tuple[str, str, str, int], float | None] = {}
    for i, point in enumerate(curves):
        if not isinstance(point, Mapping):
            raise StoreError(f"curve row {i}: must be a dict, got {type(point).__name__}")
        extra = set(point) - set(CURVE_COLUMNS) - {"study", "trial_id"}
        if extra:
            raise StoreError(
                f"curve row {i}: unknown keys {sorted(extra)}; allowed: iteration, metric, value"
            )
        study = point.get("study", default_key[0] if default_key else None)
        trial_id = point.get("trial_id", default_key[1] if default_key else None)
        key = (study, trial_id)
        if key not in owners:
            raise StoreError(
                f"curve row {i}: trial {trial_id!r} of study {study!r} is not among the rows "
                "being written"
            )
        metric = point.get("metric")
        if not isinstance(metric, str) or not _NAME_TAIL.fullmatch(metric):
            raise StoreError(f"curve row {i}: metric {metric!r} must be letters, digits and '_'")
        iteration = _as_int("iteration", point.get("iteration"))
        if iteration is None:
            raise StoreError(f"curve row {i}: iteration is missing")
        latest[(study, trial_id, metric, iteration)] = _as_float("value", point.get("value"))
    for (study, trial_id, metric, iteration), value in latest.items():
        cols["study"].append(study)
        cols["trial_id"].append(trial_id)
        cols["iteration"].append(iteration)
        cols["metric"].append(metric)
        cols["value"].append(value)
        cols["written_at"].append(owners[(study, trial_id)])
    arrays = [pa.array(cols[n], type=t, from_pandas=True) for n, t in CURVE_COLUMNS.items()]
    schema = pa.schema(list(CURVE_COLUMNS.items()), metadata=_file_metadata(CURVES))
    return pa.Table.from_arrays(arrays, schema=schema)


def _file_metadata(table: str) -> dict[bytes, bytes]:
    return {_META_VERSION: str(SCHEMA_VERSION).encode(), _META_TABLE: table.encode()}


# --------------------------------------------------------------------------------------------
# The store handle


class _Store:
    """An opened store root (manifest checked)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.display = storage.display

    @classmethod
    def open(cls, root: str | os.PathLike[str], *, create: bool = False) -> _Store:
        storage = Storage.open(root)
        store = cls(storage)
        manifest_path = storage.join(MANIFEST)
        text = storage.read_text(manifest_path)
        if text is None:
            if create:
                store._write_manifest()
            elif not storage.exists(storage.base):
                raise StoreError(
                    f"no result store at {storage.display} (it does not exist); run a study "
                    "first or point --store / BTNET_STORE at the right folder"
                )
            return store
        try:
            manifest = json.loads(text)
            version = int(manifest["schema_version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"store manifest {manifest_path} is corrupt ({exc}); expected JSON with "
                "schema_version"
            ) from exc
        _check_version(version, manifest_path)
        if create and version < SCHEMA_VERSION:
            store._write_manifest()
        return store

    def _write_manifest(self) -> None:
        body = {
            "format": STORE_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "layout": "trials/<study>/*.parquet, curves/<study>/*.parquet; see docs/store.md",
        }
        self.storage.write_text(self.storage.join(MANIFEST), json.dumps(body, indent=2) + "\n")

    def table_dir(self, table: str, study: str | None = None) -> str:
        if study is None:
            return self.storage.join(table)
        return self.storage.join(table, study_dir(study))

    def files(self, table: str, study: str | None) -> list[FileEntry]:
        """Data files of ``table`` for one study (its directory) or for all studies."""
        if study is not None:
            return self.storage.list_files(self.table_dir(table, study))
        out: list[FileEntry] = []
        for name in self.storage.list_dirs(self.table_dir(table)):
            if not name.startswith((".", "_")):
                out.extend(self.storage.list_files(self.storage.join(table, name)))
        return out


def _check_version(version: int, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{where} was written with store schema version {version}; this btnet-lab reads "
            f"versions up to {SCHEMA_VERSION}: upgrade btnet-lab"
        )


# --------------------------------------------------------------------------------------------
# Writing


def write_trial(
    root: str | os.PathLike[str],
    row: Mapping[str, Any],
    curves: Sequence[Mapping[str, Any]] = (),
    *,
    compact_at: int | None = None,
) -> None:
    """Store one finished trial (and its learning curves), replacing an earlier write of it.

    The curves file is written before the trial file, each atomically, so a reader that sees
    the trial also sees its curves; a crash between the two leaves curves without a trial,
    which readers ignore. Older single-trial files of the same (study, trial_id) are then
    deleted. When the study holds :data:`AUTO_COMPACT_SMALL_FILES` single-trial files they are
    merged (a failure there is logged, never raised: the trial is already safe).

    Args:
        root: Store root (local path or pyarrow filesystem URI); created when missing.
        row: The trial's columns (see docs/store.md): the fixed columns, ``cfg_*``,
            ``final_*``, ``best_*``, ``macs_*``, ``params_*``, ``branch_params_*``.
            ``schema_version`` and ``written_at`` are set by the store.
        curves: Rows ``{"iteration": int, "metric": str, "value": float}``.
        compact_at: Override of :data:`AUTO_COMPACT_SMALL_FILES` (0 disables).

    Raises:
        StoreError: The row breaks the conventions, the store is of a newer schema version,
            or the write failed (disk full, read-only); the store is then as before.
    """
    write_trials(root, [row], curves, compact_at=compact_at)


def write_trials(
    root: str | os.PathLike[str],
    rows: Sequence[Mapping[str, Any]],
    curves: Sequence[Mapping[str, Any]] = (),
    *,
    compact_at: int | None = None,
) -> None:
    """Store many trials at once: one file per study (used by imports and the generator).

    Args:
        root: Store root; created when missing.
        rows: Trial rows (as for :func:`write_trial`); a (study, trial_id) given twice keeps
            the last.
        curves: Curve rows; each names its ``trial_id`` (and ``study`` when the rows span
            several studies).
        compact_at: Override of :data:`AUTO_COMPACT_SMALL_FILES` (0 disables).

    Raises:
        StoreError: As :func:`write_trial`.
    """
    if not rows:
        return
    normal = [_normalise_row(r) for r in rows]
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in normal:
        latest[(r["study"], r["trial_id"])] = r
    store = _Store.open(root, create=True)
    by_study: dict[str, list[dict[str, Any]]] = {}
    for r in latest.values():
        by_study.setdefault(r["study"], []).append(r)
    owners = {key: _now_us() for key in latest}
    single_study = next(iter(by_study)) if len(by_study) == 1 else None
    default_key = (
        (single_study, normal[0]["trial_id"])
        if single_study is not None and len(latest) == 1
        else None
    )
    if single_study is not None:
        curves = [c if "study" in c else {**c, "study": single_study} for c in curves]
    curve_table = _curves_table(curves, owners, default_key)
    threshold = AUTO_COMPACT_SMALL_FILES if compact_at is None else compact_at
    for study, study_rows in by_study.items():
        stamps = {r["trial_id"]: owners[(study, r["trial_id"])] for r in study_rows}
        table = _rows_table(study_rows, list(stamps.values()))
        single = len(study_rows) == 1
        name = _file_name(study, study_rows[0]["trial_id"], max(stamps.values()), single=single)
        if curve_table is not None:
            part = curve_table.filter(pc.equal(curve_table["study"], study))
            if part.num_rows:
                store.storage.write_parquet(
                    store.storage.join(CURVES, study_dir(study), name), part
                )
        store.storage.write_parquet(store.storage.join(TRIALS, study_dir(study), name), table)
        logger.debug("stored %d trial(s) of study %s as %s", len(study_rows), study, name)
        _remove_superseded(store, study, stamps)
        _maybe_compact(store, study, threshold)


def _trial_hash(study: str, trial_id: str) -> str:
    return hashlib.sha1(f"{study}\0{trial_id}".encode()).hexdigest()[:16]


def _file_name(study: str, trial_id: str, written_us: int, *, single: bool) -> str:
    rand = uuid.uuid4().hex[:8]
    if single:
        return f"t-{written_us:017d}-{_trial_hash(study, trial_id)}-{rand}.parquet"
    return f"c-{written_us:017d}-{rand}.parquet"


def _parse_small(name: str) -> tuple[int, str] | None:
    """(written_at, trial hash) of a single-trial file name, None for other files."""
    m = re.fullmatch(r"t-(\d{17})-([0-9a-f]{16})-[0-9a-f]{8}\.parquet", name)
    return (int(m.group(1)), m.group(2)) if m else None


def _remove_superseded(store: _Store, study: str, written: Mapping[str, int]) -> None:
    """Delete older single-trial files of the trials just written (best effort)."""
    wanted = {_trial_hash(study, tid): us for tid, us in written.items()}
    for table in (TRIALS, CURVES):
        try:
            for entry in store.files(table, study):
                parsed = _parse_small(entry.name)
                if parsed and parsed[1] in wanted and parsed[0] < wanted[parsed[1]]:
                    store.storage.delete(entry.path)
        except StoreError as exc:
            logger.warning("could not remove an older write of a rewritten trial: %s", exc)


def _maybe_compact(store: _Store, study: str, compact_at: int) -> None:
    if compact_at <= 0:
        return
    try:
        files = store.files(TRIALS, study)
        small = sum(1 for f in files if f.name.startswith("t-"))
        merged = len(files) - small
        if small >= compact_at:
            _compact_study(store, study, full=merged + 1 >= AUTO_COMPACT_MERGED_FILES)
    except StoreError as exc:
        logger.warning("automatic compaction of study %s skipped: %s", study, exc)


# --------------------------------------------------------------------------------------------
# Reading


@dataclass
class _Scan:
    """The files of one table (optionally one study) with their unified schema."""

    store: _Store
    table: str
    paths: list[str]
    schema: pa.Schema

    def dataset(self) -> ds.Dataset:
        return ds.dataset(
            self.paths, schema=self.schema, format="parquet", filesystem=self.store.storage.fs
        )


def _retrying(fn: Callable[[], T]) -> T:
    """Run a read, starting again when a file vanished under it (a concurrent compaction)."""
    delay = 0.02
    for attempt in range(8):
        try:
            return fn()
        except pa.ArrowInvalid as exc:  # a damaged file (a partial copy, a disk error)
            raise StoreError(f"cannot read the result store: {_first_line(exc)}") from exc
        except OSError as exc:
            if not _vanished(exc):
                raise StoreError(f"cannot read the result store: {_first_line(exc)}") from exc
            if attempt == 7:
                raise StoreError(
                    f"the result store kept changing under this read: {_first_line(exc)}"
                ) from exc
        time.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


def _vanished(exc: OSError) -> bool:
    """Whether an error means a file disappeared (deleted by a compaction)."""
    return (
        isinstance(exc, FileNotFoundError)
        or exc.errno == errno.ENOENT
        or ("No such file" in str(exc) or "does not exist" in str(exc))
    )


def _read_schema(store: _Store, entry: FileEntry) -> pa.Schema:
    key = (store.display, entry.path, entry.size)
    with _schema_cache_lock:
        cached = _schema_cache.get(key)
    if cached is not None:
        return cached
    try:
        schema = pq.read_schema(entry.path, filesystem=store.storage.fs)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise StoreError(f"{entry.path} is not a readable Parquet file: {exc}") from exc
    meta = schema.metadata or {}
    if _META_VERSION in meta:
        try:
            version = int(meta[_META_VERSION])
        except ValueError as exc:
            raise StoreError(f"{entry.path}: corrupt schema version in its metadata") from exc
        _check_version(version, entry.path)
    with _schema_cache_lock:
        if len(_schema_cache) > 50_000:
            _schema_cache.clear()
        _schema_cache[key] = schema
    return schema


def _scan(store: _Store, table: str, study: str | None) -> _Scan:
    entries = store.files(table, study)
    if len(entries) > 32 or (entries and not store.storage.is_local):
        with ThreadPoolExecutor(max_workers=8) as pool:
            schemas = list(pool.map(lambda e: _read_schema(store, e), entries))
    else:
        schemas = [_read_schema(store, e) for e in entries]
    base = FIXED_COLUMNS if table == TRIALS else CURVE_COLUMNS
    return _Scan(store, table, [e.path for e in entries], unify_schemas(schemas, base))


def unify_schemas(schemas: Sequence[pa.Schema], base: Mapping[str, pa.DataType]) -> pa.Schema:
    """One schema for files written by different trials and studies.

    Columns missing from a file read as null. A column whose type differs between files gets a
    common type: int and float give float64; any other mix (a sweep choice of "auto" or 0.1)
    gives string. The columns of ``base`` are always present, with their canonical types.

    Args:
        schemas: Per-file schemas.
        base: Fixed columns with canonical types.

    Returns:
        The unified schema, columns in canonical order.
    """
    types: dict[str, set[pa.DataType]] = {}
    for schema in schemas:
        for field in schema:
            types.setdefault(field.name, set()).add(field.type)
    fields = [pa.field(name, t) for name, t in base.items()]
    for name in _column_order(types):
        if name in base:
            continue
        seen = {t for t in types[name] if t != pa.null()}
        if not seen:
            t: pa.DataType = pa.null()
        elif len(seen) == 1:
            t = next(iter(seen))
        elif seen <= {pa.int64(), pa.float64()}:
            t = pa.float64()
        else:
            t = pa.string()
        fields.append(pa.field(name, t))
    return pa.schema(fields)


def _study_filter(study: str | None) -> ds.Expression | None:
    return None if study is None else (pc.field("study") == study)


def _and(a: ds.Expression | None, b: ds.Expression | None) -> ds.Expression | None:
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def _winners(dataset: ds.Dataset, where: ds.Expression | None) -> tuple[pa.Table, bool]:
    """The newest write of every (study, trial_id): keys table and whether duplicates exist."""
    keys = dataset.to_table(columns=["study", "trial_id", "written_at"], filter=where)
    if keys.num_rows == 0:
        return keys, False
    grouped = keys.group_by(["study", "trial_id"], use_threads=False).aggregate(
        [("written_at", "max")]
    )
    grouped = grouped.rename_columns(["study", "trial_id", "written_at"])
    return grouped, grouped.num_rows != keys.num_rows


def _keep_newest(table: pa.Table) -> pa.Table:
    """Rows of ``table`` that are the newest write of their (study, trial_id); ties: last."""
    if table.num_rows == 0:
        return table
    keys = table.select(["study", "trial_id", "written_at"]).to_pandas()
    keys["_row"] = np.arange(len(keys))
    keep = (
        keys.sort_values(["written_at", "_row"], kind="stable")
        .drop_duplicates(["study", "trial_id"], keep="last")["_row"]
        .to_numpy()
    )
    return table.take(pa.array(np.sort(keep)))


def _drop_repeats(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Drop rows equal to the previous row on ``keys`` (``table`` sorted by them)."""
    n = table.num_rows
    if n < 2:
        return table

    def equal_to_previous(key: str) -> pa.ChunkedArray:
        col = table[key]
        return pc.fill_null(pc.equal(col.slice(1), col.slice(0, n - 1)), False)

    same = equal_to_previous(keys[0])
    for key in keys[1:]:
        same = pc.and_(same, equal_to_previous(key))
    if not pc.any(same).as_py():
        return table
    # Keep the last of each run of equal keys (the newest where written_at is sorted last).
    keep = pc.invert(pa.concat_arrays([same.combine_chunks(), pa.array([False])]))
    return table.filter(keep)


def _to_expression(filters: Any) -> ds.Expression | None:
    if filters is None:
        return None
    if isinstance(filters, ds.Expression):
        return filters
    try:
        return pq.filters_to_expression(filters)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"filters {filters!r} are malformed ({exc}); use a list of (column, op, value) "
            "tuples, or a list of such lists for OR"
        ) from exc


def _known_studies(store: _Store) -> list[str]:
    scan = _scan(store, TRIALS, None)
    if not scan.paths:
        return []
    col = scan.dataset().to_table(columns=["study"])["study"]
    return sorted(pc.unique(col).to_pylist())


def _unknown_study(store: _Store, study: str) -> StoreError:
    known = _known_studies(store)
    if not known:
        return StoreError(f"result store {store.display} holds no trials")
    listing = ", ".join(known[:12]) + (f" and {len(known) - 12} more" if len(known) > 12 else "")
    return StoreError(f"unknown study {study!r} in {store.display}; studies: {listing}")


def _arrow_error(exc: Exception, what: str) -> StoreError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    m = re.search(r"No match for FieldRef\.Name\((\w+)\)", text)
    if m:
        return StoreError(f"{what}: unknown column {m.group(1)!r}")
    return StoreError(f"{what}: {text}")


def read_trials_table(
    root: str | os.PathLike[str],
    study: str | None = None,
    columns: Sequence[str] | None = None,
    filters: Any = None,
) -> pa.Table:
    """As :func:`read_trials`, returning an Arrow table."""
    store = _Store.open(root)

    def run() -> pa.Table:
        scan = _scan(store, TRIALS, study)
        if not scan.paths:
            if study is not None:
                raise _unknown_study(store, study)
            raise StoreError(f"result store {store.display} holds no trials")
        names = scan.schema.names
        if columns is not None:
            missing = [c for c in columns if c not in names]
            if missing:
                raise StoreError(
                    f"unknown column(s) {', '.join(map(repr, missing))} in the trials of "
                    f"{study or 'the store'}"
                )
        dataset = scan.dataset()
        where = _study_filter(study)
        winners, dups = _winners(dataset, where)
        if winners.num_rows == 0:
            raise _unknown_study(store, study or "")
        wanted = list(columns) if columns is not None else names
        needed = list(dict.fromkeys([*wanted, "study", "trial_id", "written_at"]))
        try:
            data = dataset.to_table(columns=needed, filter=_and(where, _to_expression(filters)))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise _arrow_error(exc, "filter on trials") from exc
        if dups:
            data = data.join(
                winners, keys=["study", "trial_id", "written_at"], join_type="left semi"
            )
            data = _keep_newest(data)
        order = pc.sort_indices(data, sort_keys=_TRIAL_ORDER)
        return data.take(order).select(wanted)

    return _retrying(run)


def read_trials(
    root: str | os.PathLike[str],
    study: str | None = None,
    columns: Sequence[str] | None = None,
    filters: Any = None,
) -> pd.DataFrame:
    """Trials of one study (or all) as a DataFrame, one row per (study, trial_id).

    Column selection and filters are pushed down to the Parquet reader; across studies the
    columns are unified (a column a study does not have reads as null).

    Args:
        root: Store root (local path or URI).
        study: A study name, or None for all studies.
        columns: Columns to return, in this order (default all).
        filters: pyarrow/pandas-style filters, e.g. ``[("status", "==", "completed"),
            ("final_acc_112_7", ">", 0.8)]`` (AND), or a list of such lists (OR), or a
            ``pyarrow.dataset.Expression``.

    Returns:
        One row per trial (its newest write), sorted by study and trial_id.

    Raises:
        StoreError: No store there, an empty store, an unknown study or column, a bad filter,
            or a store written by a newer schema version.
    """
    return read_trials_table(root, study, columns, filters).to_pandas()


def read_curves(
    root: str | os.PathLike[str],
    study: str | None = None,
    trial_ids: Iterable[str] | None = None,
    metrics: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Learning curves: columns study, trial_id, iteration, metric, value.

    Only the curves written with the trial's newest row are returned (a rewritten trial's old
    curves and curves whose trial row never landed are left out), one row per (study,
    trial_id, metric, iteration) even where a crashed or concurrent compaction left two copies.

    Args:
        root: Store root.
        study: A study, or None for all.
        trial_ids: Restrict to these trials.
        metrics: Restrict to these metric names (e.g. ``["loss", "acc_112_7"]``).

    Returns:
        Sorted by study, trial_id, metric, iteration; empty when the study has no curves.

    Raises:
        StoreError: No store, an unknown study, or a store of a newer schema version.
    """
    store = _Store.open(root)
    trial_ids = None if trial_ids is None else list(trial_ids)
    metrics = None if metrics is None else list(metrics)

    def run() -> pd.DataFrame:
        tscan = _scan(store, TRIALS, study)
        if not tscan.paths:
            raise (
                _unknown_study(store, study)
                if study
                else StoreError(f"result store {store.display} holds no trials")
            )
        winners, _ = _winners(tscan.dataset(), _study_filter(study))
        if winners.num_rows == 0:
            raise _unknown_study(store, study or "")
        cscan = _scan(store, CURVES, study)
        cols = ["study", "trial_id", "iteration", "metric", "value"]
        if not cscan.paths:
            return pa.schema([(n, CURVE_COLUMNS[n]) for n in cols]).empty_table().to_pandas()
        where = _study_filter(study)
        if trial_ids is not None:
            where = _and(where, pc.field("trial_id").isin(trial_ids))
            winners = winners.filter(pc.is_in(winners["trial_id"], pa.array(trial_ids)))
        if metrics is not None:
            where = _and(where, pc.field("metric").isin(metrics))
        data = cscan.dataset().to_table(columns=[*cols, "written_at"], filter=where)
        data = data.join(winners, keys=["study", "trial_id", "written_at"], join_type="left semi")
        data = data.take(pc.sort_indices(data, sort_keys=_CURVE_ORDER)).select(cols)
        return _drop_repeats(data, ["study", "trial_id", "metric", "iteration"]).to_pandas()

    return _retrying(run)


def finished_trial_ids(
    root: str | os.PathLike[str], study: str, statuses: Iterable[str] | None = None
) -> set[str]:
    """Trial ids of a study that already have a row (what ``--resume`` skips).

    Args:
        root: Store root; a missing store or an unknown study gives an empty set.
        study: The study.
        statuses: Only trials whose newest row has one of these statuses (default: all
            statuses, since every row is written when its trial has ended).

    Returns:
        The trial ids.

    Raises:
        StoreError: The store is of a newer schema version or unreadable.
    """
    storage = Storage.open(root)
    if not storage.exists(storage.base):
        return set()
    store = _Store.open(root)

    def run() -> set[str]:
        scan = _scan(store, TRIALS, study)
        if not scan.paths:
            return set()
        dataset = scan.dataset()
        where = _study_filter(study)
        winners, dups = _winners(dataset, where)
        if statuses is None:
            return set(winners["trial_id"].to_pylist())
        data = dataset.to_table(
            columns=["study", "trial_id", "written_at", "status"], filter=where
        )
        if dups:
            data = data.join(
                winners, keys=["study", "trial_id", "written_at"], join_type="left semi"
            )
        keep = pc.is_in(data["status"], pa.array(list(statuses), pa.string()))
        return set(data.filter(keep)["trial_id"].to_pylist())

    return _retrying(run)


def list_studies(root: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per study: study, kind, trials, completed, errors, diverged, cpu_hours,
    gpu_hours, started, ended.

    Raises:
        StoreError: No store or an empty one.
    """
    cols = ["study", "kind", "status", "cpu_hours", "gpu_hours", "start_time", "end_time"]
    df = read_trials(root, columns=cols)
    status = df["status"]
    df = df.assign(
        completed=(status == "completed").astype(int),
        errors=(status == "error").astype(int),
        diverged=(status == "diverged").astype(int),
    )
    grouped = df.groupby("study", sort=True)
    out = grouped.agg(
        kind=("kind", "first"),
        trials=("status", "size"),
        completed=("completed", "sum"),
        errors=("errors", "sum"),
        diverged=("diverged", "sum"),
        cpu_hours=("cpu_hours", lambda x: x.sum(min_count=1)),
        gpu_hours=("gpu_hours", lambda x: x.sum(min_count=1)),
        started=("start_time", "min"),
        ended=("end_time", "max"),
    )
    return out.reset_index()


def store_fingerprint(root: str | os.PathLike[str], study: str | None = None) -> str:
    """A short string that changes whenever the study's files change (for live views)."""
    store = _Store.open(root)
    parts = []
    for table in (TRIALS, CURVES):
        for e in store.files(table, study):
            parts.append(f"{table}/{e.name}:{e.size}")
    return hashlib.sha1("\n".join(sorted(parts)).encode()).hexdigest()[:16]


def sql(root: str | os.PathLike[str], query: str) -> pd.DataFrame:
    """Run a DuckDB query with views ``trials`` and ``curves`` over the store.

    ``trials`` holds one row per (study, trial_id), its newest write, with all studies'
    columns unified; ``curves`` holds the learning curves of those writes. Column selection
    and filters are pushed down into the Parquet scan.

    Example:
        ``sql(root, "select variant, avg(final_acc_112_7) from trials where study = 'abl'
        group by variant")``

    Args:
        root: Store root.
        query: One SQL statement.

    Returns:
        The result (an empty frame for statements that return nothing).

    Raises:
        StoreError: No store, an empty store, a newer schema version, or a SQL error (the
            message is DuckDB's first line).
    """
    import duckdb

    store = _Store.open(root)

    def run() -> pd.DataFrame:
        tscan = _scan(store, TRIALS, None)
        if not tscan.paths:
            raise StoreError(f"result store {store.display} holds no trials")
        tdata = tscan.dataset()
        winners, dups = _winners(tdata, None)
        cscan = _scan(store, CURVES, None)
        con = duckdb.connect(":memory:")
        try:
            con.register("_trials_files", tdata)
            con.register("_trials_newest", winners)
            if dups:  # rare: a crash or a race left two writes of a trial
                con.execute(
                    "create view trials as select * exclude (_rank) from (select *, "
                    "row_number() over (partition by study, trial_id order by written_at desc) "
                    "as _rank from _trials_files) where _rank = 1"
                )
            else:
                con.execute("create view trials as select * from _trials_files")
            if cscan.paths:
                con.register("_curves_files", cscan.dataset())
            else:
                con.register("_curves_files", cscan.schema.empty_table())
            # A crashed or concurrent compaction may leave a curve point in two files.
            con.execute(
                "create view curves as select c.* from _curves_files c semi join _trials_newest w "
                "on c.study = w.study and c.trial_id = w.trial_id "
                "and c.written_at = w.written_at qualify row_number() over "
                "(partition by c.study, c.trial_id, c.metric, c.iteration) = 1"
            )
            try:
                rel = con.sql(query)
            except duckdb.Error as exc:
                raise StoreError(f"SQL error: {_first_line(exc)}") from exc
            if rel is None:
                return pd.DataFrame()
            try:
                return rel.df()
            except duckdb.Error as exc:
                raise StoreError(f"SQL error: {_first_line(exc)}") from exc
        finally:
            con.close()

    return _retrying(run)


def _first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Compaction


def compact(root: str | os.PathLike[str], study: str | None = None) -> None:
    """Merge each study's files into one file (per table), dropping superseded writes.

    Safe to run while trials are being written and read: the merged file is written
    atomically before its inputs are deleted, and only the files it read are deleted, so a
    crash leaves at worst duplicate rows that readers drop (keeping the newest write).
    Temporary files and orphaned curves older than :data:`STALE_AFTER_S` are removed.

    Args:
        root: Store root.
        study: One study, or None for every study.

    Raises:
        StoreError: No store, an unknown study, or a write failed (the store is as before).
    """
    store = _Store.open(root)
    if study is not None:
        if not store.files(TRIALS, study):
            raise _unknown_study(store, study)
        _compact_study(store, study, full=True)
        return
    names = set(store.storage.list_dirs(store.table_dir(TRIALS)))
    names |= set(store.storage.list_dirs(store.table_dir(CURVES)))
    for name in sorted(n for n in names if not n.startswith((".", "_"))):
        _compact_dir(store, name, full=True)


def _compact_study(store: _Store, study: str, *, full: bool) -> None:
    _compact_dir(store, study_dir(study), full=full)


def _compact_dir(store: _Store, dirname: str, *, full: bool) -> None:
    """Merge the files of one study directory (``full``: all files; else single-trial ones)."""
    started = time.monotonic()
    tdir = store.storage.join(TRIALS, dirname)
    cdir = store.storage.join(CURVES, dirname)
    for d in (tdir, cdir):
        store.storage.remove_stale_parts(d, STALE_AFTER_S)
    try:
        merged_trials = _merge_files(store, TRIALS, tdir, full, None)
        entries = store.storage.list_files(tdir)
        newest: pa.Table | None = None
        if entries:
            schemas = [_read_schema(store, e) for e in entries]
            dataset = ds.dataset(
                [e.path for e in entries],
                schema=unify_schemas(schemas, FIXED_COLUMNS),
                format="parquet",
                filesystem=store.storage.fs,
            )
            newest, _ = _winners(dataset, None)
        merged_curves = _merge_files(store, CURVES, cdir, full, newest)
    except OSError as exc:
        if not _vanished(exc):
            raise StoreError(f"compaction of {dirname} failed: {_first_line(exc)}") from exc
        # Another process is compacting the same study and deleted a file we were reading.
        logger.info("compaction of %s skipped: another process is compacting it", dirname)
        return
    if merged_trials or merged_curves:
        logger.info(
            "compacted study directory %s: %d trial file(s) and %d curve file(s) merged in %.2f s",
            dirname,
            merged_trials,
            merged_curves,
            time.monotonic() - started,
        )


def _merge_files(
    store: _Store, table: str, directory: str, full: bool, newest: pa.Table | None
) -> int:
    """Merge the files of one table directory; returns how many files were merged."""
    entries = store.storage.list_files(directory)
    inputs = entries if full else [e for e in entries if e.name.startswith("t-")]
    if len(inputs) < 2 and not (table == CURVES and inputs and full and newest is not None):
        return 0
    schemas = [_read_schema(store, e) for e in inputs]
    base = FIXED_COLUMNS if table == TRIALS else CURVE_COLUMNS
    dataset = ds.dataset(
        [e.path for e in inputs],
        schema=unify_schemas(schemas, base),
        format="parquet",
        filesystem=store.storage.fs,
    )
    data = dataset.to_table()
    before = data.num_rows
    if table == TRIALS:
        data = _keep_newest(data)
        order = pc.sort_indices(data, sort_keys=_TRIAL_ORDER)
    else:
        data = _live_curves(data, newest)
        order = pc.sort_indices(data, sort_keys=[*_CURVE_ORDER, ("written_at", "ascending")])
    data = data.take(order)
    if table == CURVES:
        data = _drop_repeats(data, ["study", "trial_id", "written_at", "metric", "iteration"])
    if len(inputs) == 1 and data.num_rows == before:
        return 0
    data = data.replace_schema_metadata(_file_metadata(table))
    if data.num_rows:
        stamp = pc.max(data["written_at"]).cast(pa.int64()).as_py()
        name = f"c-{stamp:017d}-{uuid.uuid4().hex[:8]}.parquet"
        store.storage.write_parquet(f"{directory}/{name}", data)
    for e in inputs:
        store.storage.delete(e.path)
    return len(inputs)


def _live_curves(data: pa.Table, newest: pa.Table | None) -> pa.Table:
    """Curve rows to keep: those of a trial's newest write, and recent ones whose trial row
    may still be on its way (written just before it); superseded and old orphaned rows go."""
    if data.num_rows == 0:
        return data
    cutoff = (time.time() - STALE_AFTER_S) * 1e6
    frame = pa.table(
        {
            "study": data["study"],
            "trial_id": data["trial_id"],
            "stamp": pc.cast(data["written_at"], pa.int64()),
            "_row": pa.array(np.arange(data.num_rows)),
        }
    )
    if newest is not None and newest.num_rows:
        ref = pa.table(
            {
                "study": newest["study"],
                "trial_id": newest["trial_id"],
                "newest": pc.cast(newest["written_at"], pa.int64()),
            }
        )
        frame = frame.join(ref, keys=["study", "trial_id"], join_type="left outer")
        frame = frame.sort_by("_row")
        newest_us = frame["newest"].to_numpy(zero_copy_only=False).astype("float64")
    else:
        newest_us = np.full(data.num_rows, np.nan)
    stamp = frame["stamp"].to_numpy().astype("float64")
    current = stamp == newest_us
    pending = (np.isnan(newest_us) | (stamp > newest_us)) & (stamp >= cutoff)
    return data.filter(pa.array(current | pending))
