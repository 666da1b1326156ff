"""Trunk cache: one live lease per trunk key; concurrent askers share one training; a failed
training is redone, never reused; a stored trunk is found again without training."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ablations.storage import StudyStorage
from ablations.trunk_cache import LeaseTable, TrunkCache
from btnet_core.config import resolve_config, trunk_key

CFG = resolve_config({"model": {"width": 0.0625}})


class CountingTrainer:
    """Stands in for btnet_core.train.train_trunk; counts calls, can fail once."""

    def __init__(self, seconds: float = 0.3, fail_first: bool = False):
        self.calls = 0
        self.seconds = seconds
        self.fail_first = fail_first
        self._lock = threading.Lock()

    def __call__(self, cfg, out_dir, resolution=None, callback=None) -> Path:
        if (Path(out_dir) / "trunk.pt").exists():  # as btnet_core's: a finished trunk is kept
            return Path(out_dir) / "trunk.pt"
        with self._lock:
            self.calls += 1
            fail = self.fail_first and self.calls == 1
        time.sleep(self.seconds)
        if fail:
            raise RuntimeError("killed while training")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "trunk.pt").write_text("weights")
        return out / "trunk.pt"


def test_lease_is_exclusive_until_released_or_expired():
    """A second owner waits; release or expiry hands the lease over; the holder may re-ask."""
    table = LeaseTable(ttl_s=0.2)
    assert table.acquire("k", "a") == (True, "a")
    assert table.acquire("k", "b") == (False, "a")
    assert table.acquire("k", "a") == (True, "a")  # a retried trial asking again
    table.release("k", "a")
    assert table.acquire("k", "b") == (True, "b")
    time.sleep(0.3)  # b stopped renewing (killed)
    assert table.acquire("k", "c") == (True, "c")
    assert not table.renew("k", "b")


def test_concurrent_trials_train_a_shared_trunk_once(workdir):
    """Four trials asking at once: one trains, three wait and reuse it."""
    storage = StudyStorage(workdir, "s")
    table = LeaseTable()
    trainer = CountingTrainer()
    results = []

    def ask(owner: str) -> None:
        cache = TrunkCache(
            storage, table, owner, scratch=Path(workdir) / f"scratch-{owner}", poll_s=0.05
        )
        results.append(cache.obtain(CFG, None, trainer, "trunk.pt"))

    threads = [threading.Thread(target=ask, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert trainer.calls == 1
    assert sorted(r.hit for r in results) == [False, True, True, True]
    assert len({r.path for r in results}) == 1
    assert results[0].path == Path(storage.trunk_path(trunk_key(CFG), "trunk.pt"))


def test_failed_training_is_redone_not_reused(workdir):
    """A trunk whose training died leaves nothing behind; the next asker trains it."""
    storage = StudyStorage(workdir, "s")
    table = LeaseTable()
    trainer = CountingTrainer(seconds=0.01, fail_first=True)
    cache = TrunkCache(storage, table, "t0", scratch=Path(workdir) / "scratch", poll_s=0.01)
    with pytest.raises(RuntimeError):
        cache.obtain(CFG, None, trainer, "trunk.pt")
    assert not storage.exists(storage.trunk_path(trunk_key(CFG), "trunk.pt"))
    again = TrunkCache(storage, table, "t1", scratch=Path(workdir) / "scratch2", poll_s=0.01)
    trunk = again.obtain(CFG, None, trainer, "trunk.pt")
    assert trainer.calls == 2 and not trunk.hit


def test_stored_trunk_is_reused_without_a_lease(workdir):
    """On resume the stored file is the answer; nobody trains."""
    storage = StudyStorage(workdir, "s")
    trainer = CountingTrainer(seconds=0.01)
    TrunkCache(storage, LeaseTable(), "t0", scratch=Path(workdir) / "a").obtain(
        CFG, None, trainer, "trunk.pt"
    )
    trunk = TrunkCache(storage, LeaseTable(), "t1", scratch=Path(workdir) / "b").obtain(
        CFG, None, trainer, "trunk.pt"
    )
    assert trainer.calls == 1 and trunk.hit


def test_remote_storage_uploads_and_downloads_the_trunk(workdir):
    """On a non-local filesystem the trunk is uploaded whole and fetched into local scratch."""
    storage = StudyStorage(f"file://{workdir}/store", "s")
    storage.local = False  # take the object-store path over the same files
    trainer = CountingTrainer(seconds=0.01)
    TrunkCache(storage, LeaseTable(), "t0", scratch=Path(workdir) / "a").obtain(
        CFG, None, trainer, "trunk.pt"
    )
    trunk = TrunkCache(storage, LeaseTable(), "t1", scratch=Path(workdir) / "b").obtain(
        CFG, None, trainer, "trunk.pt"
    )
    assert trunk.hit and trunk.path.is_relative_to(Path(workdir) / "b" / "cache")
    assert trunk.path.read_text() == "weights"
    assert not (Path(workdir) / "a" / "train").exists() or not any(
        (Path(workdir) / "a" / "train").iterdir()
    )  # the training folder is gone once stored


def test_trunk_is_trained_again_when_the_store_lost_it(workdir):
    """Nothing of a trunk outlives its publication on this node: a wiped store means a new
    training, never a leftover copy."""
    storage = StudyStorage(workdir, "s")
    trainer = CountingTrainer(seconds=0.01)
    scratch = Path(workdir) / "scratch"
    first = TrunkCache(storage, LeaseTable(), "t0", scratch=scratch).obtain(
        CFG, None, trainer, "trunk.pt"
    )
    first.path.unlink()
    again = TrunkCache(storage, LeaseTable(), "t1", scratch=scratch).obtain(
        CFG, None, trainer, "trunk.pt"
    )
    assert trainer.calls == 2 and not again.hit and again.path.is_file()
