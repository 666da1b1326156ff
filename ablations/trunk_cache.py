"""Trunk reuse: trials whose trunk settings agree share one stage-1 trunk, trained once.

The cache key is :func:`btnet_core.config.trunk_key` (network, width, embedding, head, data,
degradation, stage-1 training and seed). A finished trunk lives in the study's storage at
``_trunks/<study>/<key>/trunk.pt``; the file is published atomically after training ends, so
its presence is the one and only "done" marker, and a trunk whose training was killed is
trained again, never picked up half-made.

Who trains it is decided by a lease held in a named Ray actor (:class:`LeaseTable` wrapped by
:func:`start_coordinator`), not by a file lock. Why an actor:

* the study's storage may be an object store (``s3://...``), where no lock exists; the actor
  works the same on every storage and on every node of a cluster;
* ``fcntl`` locks on network filesystems are only as good as the NFS server's lock daemon,
  and a lock on one node's local disk means nothing to another node.

The actor is created by the driver under a name unique to the store and study, without
``lifetime="detached"``: it lives exactly as long as the driver's job, so a crashed driver
leaves no stale lease behind; on ``--resume`` a fresh actor starts with no leases and the
stored trunks are found by their files. A lease expires when its holder stops renewing it
(``ttl_s``; the holder renews from a background thread while it trains), so a trial killed
while training a trunk hands the job to the next trial that asks, instead of blocking it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ablations.storage import StudyStorage
from btnet_core.config import Config, trunk_key

log = logging.getLogger(__name__)

TrainTrunkFn = Callable[..., Path]


class Leases(Protocol):
    """What :class:`TrunkCache` needs from the coordinator (the actor or a local table)."""

    def acquire(self, key: str, owner: str) -> tuple[bool, str | None]: ...

    def renew(self, key: str, owner: str) -> bool: ...

    def release(self, key: str, owner: str) -> None: ...


class LeaseTable:
    """Leases on trunk keys: at most one live holder per key.

    Args:
        ttl_s: Seconds a lease lives without a renewal.
    """

    def __init__(self, ttl_s: float = 120.0) -> None:
        self.ttl_s = ttl_s
        self._leases: dict[str, tuple[str, float]] = {}
        self.grants: dict[str, int] = {}

    def acquire(self, key: str, owner: str) -> tuple[bool, str | None]:
        """Take the lease on ``key``; return (granted, holder).

        Granted when nobody holds it, when the holder's lease expired, or when ``owner``
        holds it already (a retried trial asking again after its first attempt died).
        """
        now = time.monotonic()
        held = self._leases.get(key)
        if held is None or held[0] == owner or held[1] < now:
            self._leases[key] = (owner, now + self.ttl_s)
            self.grants[key] = self.grants.get(key, 0) + 1
            return True, owner
        return False, held[0]

    def renew(self, key: str, owner: str) -> bool:
        """Extend ``owner``'s lease; False when it no longer holds it."""
        held = self._leases.get(key)
        if held is None or held[0] != owner:
            return False
        self._leases[key] = (owner, time.monotonic() + self.ttl_s)
        return True

    def release(self, key: str, owner: str) -> None:
        held = self._leases.get(key)
        if held is not None and held[0] == owner:
            del self._leases[key]

    def grant_counts(self) -> dict[str, int]:
        return dict(self.grants)


def coordinator_name(storage: StudyStorage) -> str:
    """Name of the study's coordinator actor (unique per store and study)."""
    return f"btnet-trunks-{storage.fingerprint()}"


def start_coordinator(name: str, ttl_s: float = 120.0) -> Any:
    """Create (or find) the driver-owned coordinator actor; returns its handle."""
    import ray

    actor = ray.remote(num_cpus=0, max_restarts=0)(LeaseTable)
    return actor.options(name=name, get_if_exists=True).remote(ttl_s)


class RayLeases:
    """:class:`Leases` through the named coordinator actor, from inside a trial."""

    def __init__(self, name: str) -> None:
        import ray

        self._ray = ray
        self._actor = ray.get_actor(name)

    def acquire(self, key: str, owner: str) -> tuple[bool, str | None]:
        return tuple(self._ray.get(self._actor.acquire.remote(key, owner)))  # type: ignore

    def renew(self, key: str, owner: str) -> bool:
        return bool(self._ray.get(self._actor.renew.remote(key, owner)))

    def release(self, key: str, owner: str) -> None:
        self._ray.get(self._actor.release.remote(key, owner))


@dataclass(frozen=True)
class Trunk:
    """A trunk a trial can use.

    Attributes:
        path: Local path of the finished trunk checkpoint.
        key: Its cache key.
        hit: True when this trial did not train it (it was stored, or another trial trained
            it while this one waited).
        train_s: Seconds this trial spent training it (0 on a hit).
    """

    path: Path
    key: str
    hit: bool
    train_s: float = 0.0


class TrunkCache:
    """Finds, or trains exactly once, the trunks of a study's trials.

    Args:
        storage: The study's storage.
        leases: The coordinator (``RayLeases`` in a trial, a ``LeaseTable`` in tests).
        owner: Who asks (the trial id).
        scratch: Local folder of this node: ``train/<key>/`` holds a trunk in training (kept
            only until it is stored: a trunk trained but not yet stored when its trial died is
            stored by the next trial instead of being trained again), ``cache/`` the copies
            downloaded from a remote store, named by the stored file's size and time so that
            a trunk retrained in a wiped store is downloaded afresh.
        poll_s: Seconds between looks while another trial trains the trunk.
        renew_s: Seconds between lease renewals while training.
    """

    def __init__(
        self,
        storage: StudyStorage,
        leases: Leases,
        owner: str,
        scratch: Path | None = None,
        poll_s: float = 1.0,
        renew_s: float = 15.0,
    ) -> None:
        self.storage = storage
        self.leases = leases
        self.owner = owner
        self.scratch = scratch or (
            Path(tempfile.gettempdir()) / "btnet_lab_trunks" / storage.fingerprint()
        )
        self.poll_s = poll_s
        self.renew_s = renew_s

    def obtain(
        self,
        cfg: Config,
        resolution: int | None,
        train_trunk: TrainTrunkFn,
        filename: str,
        callback: Callable[[dict], None] | None = None,
    ) -> Trunk:
        """The finished trunk for ``cfg`` (and ``resolution`` for separate models).

        Args:
            cfg: The trial's config.
            resolution: None, or the resolution of a ``separate`` model's trunk.
            train_trunk: ``btnet_core.train.train_trunk``.
            filename: The trunk's file name (``btnet_core.train.trunk_file(resolution)``).
            callback: Passed to ``train_trunk`` (stage-1 progress).
        """
        key = trunk_key(cfg, resolution)
        stored = self.storage.trunk_path(key, filename)
        waited_for: str | None = None
        while True:
            if self.storage.exists(stored):
                return Trunk(self._local_copy(stored, key, filename), key, hit=True)
            granted, holder = self.leases.acquire(key, self.owner)
            if granted:
                break
            if holder != waited_for:
                log.info(
                    "trial %s: waiting for trunk %s (trial %s is training it)",
                    self.owner,
                    key,
                    holder,
                )
                waited_for = holder
            time.sleep(self.poll_s)
        try:
            # Published between our look and our lease: the holder released it just now.
            if self.storage.exists(stored):
                return Trunk(self._local_copy(stored, key, filename), key, hit=True)
            log.info("trial %s: training trunk %s", self.owner, key)
            start = time.monotonic()
            workdir = self.scratch / "train" / key
            with _Renewer(self.leases, key, self.owner, self.renew_s):
                trained = Path(train_trunk(cfg, workdir, resolution=resolution, callback=callback))
            self.storage.put_file(trained, stored)
            seconds = time.monotonic() - start
            log.info("trial %s: trunk %s trained in %.0fs and stored", self.owner, key, seconds)
            local = self._local_copy(stored, key, filename)
            shutil.rmtree(workdir, ignore_errors=True)
            return Trunk(local, key, hit=False, train_s=seconds)
        finally:
            self.leases.release(key, self.owner)

    def _local_copy(self, stored: str, key: str, filename: str) -> Path:
        """A local path of a stored trunk (downloaded once per node on remote storage)."""
        local = self.storage.local_path(stored)
        if local is not None:
            return local
        info = self.storage.fs.get_file_info(stored)
        stamp = f"{info.size}-{info.mtime_ns or 0}"
        target = self.scratch / "cache" / key / stamp / filename
        if not target.exists():
            self.storage.get_file(stored, target)
        return target


class _Renewer:
    """Renews a lease from a daemon thread while the ``with`` block runs."""

    def __init__(self, leases: Leases, key: str, owner: str, every_s: float) -> None:
        self.leases, self.key, self.owner, self.every_s = leases, key, owner, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"lease-{key[:24]}")

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                if not self.leases.renew(self.key, self.owner):
                    log.warning(
                        "lease on trunk %s lapsed while %s trains it; another trial "
                        "may train it too",
                        self.key,
                        self.owner,
                    )
            except Exception as exc:  # the coordinator going away must not kill training
                log.warning("could not renew the lease on trunk %s: %s", self.key, exc)

    def __enter__(self) -> _Renewer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
