"""Tests of analysis/store.py under failure: disk full, read-only, crashes, concurrent writers.

Several tests run real separate processes (the store's writers are separate processes in a
sweep); they use ``sys.executable`` and the installed package.
"""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from analysis import store, storefs
from analysis.store import compact, read_curves, read_trials, sql, write_trial
from btnet_core.errors import StoreError

REPO = Path(__file__).resolve().parents[2]


def _parts(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


def _python(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _seed_store(root: Path, make_row: Callable[..., dict]) -> None:
    write_trial(root, make_row(trial_id="t0"), [{"iteration": 1, "metric": "loss", "value": 1.0}])
    write_trial(root, make_row(trial_id="t1"))


def test_disk_full_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_row: Callable[..., dict]
) -> None:
    """ENOSPC half-way through a file: clear StoreError, no partial file, old rows intact."""
    _seed_store(tmp_path, make_row)

    def full(table: object, sink: object, **kwargs: object) -> None:
        sink.write(b"PAR1 partial bytes")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storefs.pq, "write_table", full)
    with pytest.raises(StoreError, match="no space left on device"):
        write_trial(tmp_path, make_row(trial_id="t2"))
    monkeypatch.undo()
    assert read_trials(tmp_path, "s1")["trial_id"].tolist() == ["t0", "t1"]
    assert not _parts(tmp_path)


def test_read_only_store_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_row: Callable[..., dict]
) -> None:
    """EROFS on create: StoreError says read-only; reading still works."""
    _seed_store(tmp_path, make_row)

    def read_only(path: str, mode: str = "r", *args: object, **kwargs: object) -> object:
        if "w" in mode:
            raise OSError(errno.EROFS, "Read-only file system", path)
        return open(path, mode, *args, **kwargs)  # noqa: SIM115

    monkeypatch.setattr(storefs, "open", read_only, raising=False)
    with pytest.raises(StoreError, match="read-only"):
        write_trial(tmp_path, make_row(trial_id="t0", final_acc_112_7=0.1))
    monkeypatch.undo()
    assert read_trials(tmp_path, "s1")["final_acc_112_7"].tolist() == [0.86, 0.86]


def test_crash_between_write_and_rename_is_invisible(
    tmp_path: Path, make_row: Callable[..., dict]
) -> None:
    """A process killed after writing the temporary file and before renaming it leaves the
    previous store readable by btnet-lab and by a raw DuckDB glob; compaction cleans up."""
    _seed_store(tmp_path, make_row)
    proc = _python(
        f"""
        import os
        from analysis import storefs
        from analysis.store import write_trial
        real = os.replace
        def crash(src, dst):
            if "/trials/" in dst:
                os._exit(17)  # the machine dies: no cleanup runs
            real(src, dst)
        storefs.os.replace = crash
        write_trial({str(tmp_path)!r}, {make_row(trial_id="t9")!r},
                    [{{"iteration": 1, "metric": "loss", "value": 3.0}}])
        """
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 17, err
    assert _parts(tmp_path), "the interrupted write should have left its temporary file"
    assert read_trials(tmp_path, "s1")["trial_id"].tolist() == ["t0", "t1"]
    assert read_curves(tmp_path, "s1")["trial_id"].tolist() == ["t0"]  # t9's curves: orphans
    raw = duckdb.sql(
        f"select count(*) from read_parquet('{tmp_path}/trials/**/*.parquet', union_by_name=true)"
    ).fetchall()
    assert raw == [(2,)]
    store.STALE_AFTER_S, saved = -1.0, store.STALE_AFTER_S
    try:
        compact(tmp_path)
    finally:
        store.STALE_AFTER_S = saved
    assert not _parts(tmp_path)
    assert len(read_trials(tmp_path, "s1")) == 2


_WRITER = """
import sys, time, pathlib
from analysis.store import write_trial
root, study, go = sys.argv[1], sys.argv[2], sys.argv[5]
first, count = int(sys.argv[3]), int(sys.argv[4])
while not pathlib.Path(go).exists():
    time.sleep(0.01)
for i in range(first, first + count):
    row = {{"study": study, "kind": "sweep", "trial_id": f"t{{i:03d}}", "status": "completed",
           "seed": i, "final_acc_112_7": i / 1000, "cfg_stage2__lr": 0.01 * (i % 3 + 1)}}
    write_trial(root, row, [{{"iteration": 1, "metric": "loss", "value": float(i)}}],
                compact_at={compact_at})
    time.sleep({pause})
print("done")
"""


def _writers(
    root: Path, jobs: list[tuple[str, int, int]], compact_at: int, pause: float = 0.0
) -> list[subprocess.Popen[str]]:
    go = root.parent / f"{root.name}.go"
    code = _WRITER.format(compact_at=compact_at, pause=pause)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(root), study, str(first), str(count), str(go)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for study, first, count in jobs
    ]
    time.sleep(0.3)
    go.touch()
    return procs


def test_concurrent_studies_and_writers_lose_nothing(tmp_path: Path) -> None:
    """Three processes (two on one study, one on another) write with frequent automatic
    compaction at the same time; every trial and curve is there, each once."""
    root = tmp_path / "store"
    procs = _writers(root, [("x", 0, 30), ("y", 0, 30), ("x", 30, 30)], compact_at=4)
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    x = read_trials(root, "x")
    y = read_trials(root, "y")
    assert x["trial_id"].tolist() == [f"t{i:03d}" for i in range(60)]
    assert y["trial_id"].tolist() == [f"t{i:03d}" for i in range(30)]
    assert len(read_curves(root, "x")) == 60 and len(read_curves(root, "y")) == 30
    assert sql(root, "select count(*) n from trials")["n"].iloc[0] == 90
    assert sql(root, "select count(*) n from curves")["n"].iloc[0] == 90


def test_readers_see_a_consistent_store_while_it_is_compacted(tmp_path: Path) -> None:
    """While a writer adds trials and compacts every 3, every read succeeds, never loses a
    trial it saw before and never sees one twice."""
    root = tmp_path / "store"
    (proc,) = _writers(root, [("z", 0, 40)], compact_at=3, pause=0.02)
    seen = 0
    reads = 0
    while proc.poll() is None or reads == 0:
        if not (root / "trials").exists():
            time.sleep(0.02)
            continue
        try:
            ids = read_trials(root, "z", columns=["trial_id"])["trial_id"].tolist()
        except StoreError as exc:
            if "holds no trials" in str(exc) or "unknown study" in str(exc):
                continue
            raise
        assert len(ids) == len(set(ids))
        assert len(ids) >= seen
        seen = len(ids)
        reads += 1
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert reads > 3
    assert len(read_trials(root, "z")) == 40
