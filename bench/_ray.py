"""What the benchmarks that run studies on Ray share: a quiet local Ray and a timed core.

Import this module before anything imports Ray: it sets the environment every Ray session of
the project needs (no sign-in prompt, no usage reporting, the classic progress output).

* :func:`local_ray` starts a local Ray of ``slots`` CPUs in a private temporary folder, stops
  it and removes the folder, and says how long the start took;
* :func:`run_bench_study` runs a study text through ``ablations.runner.run_study`` on such a
  Ray and raises when a trial did not complete;
* :class:`MeasuredCore` is ``btnet_core.train`` with the process CPU time of each training
  call logged (the ``core=`` hook of ``run_study``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

#: CPUs of the benchmarks' local Ray, and trials run at a time (the development machine's 2).
SLOTS_DEFAULT = 2
#: Object store of the benchmarks' local Ray: the smallest Ray accepts is 75 MiB.
OBJECT_STORE_BYTES = 80 * 1024**2


@dataclass
class RayStart:
    """Seconds ``ray.init`` took (filled in when the context is entered)."""

    seconds: float = 0.0


@contextmanager
def local_ray(
    slots: int, prefix: str, by_value: tuple[ModuleType, ...] = ()
) -> Iterator[RayStart]:
    """A local Ray of ``slots`` CPUs for the body of the ``with``; always shut down after.

    ``prefix`` names the temporary folder (``/tmp/ray_{prefix}_xxxxxx``). ``bench/`` is not an
    installed package: this module and the ``by_value`` modules (the benchmark's own, when its
    classes or functions run in trials) are pickled by value so Ray's workers need not import
    them.
    """
    import ray
    from ray import cloudpickle

    for module in (sys.modules[__name__], *by_value):
        cloudpickle.register_pickle_by_value(module)
    temp = f"/tmp/ray_{prefix}_{uuid.uuid4().hex[:6]}"
    start = RayStart()
    t0 = time.perf_counter()
    try:
        ray.init(
            num_cpus=slots,
            include_dashboard=False,
            object_store_memory=OBJECT_STORE_BYTES,
            _temp_dir=temp,
            log_to_driver=False,
        )
        start.seconds = time.perf_counter() - t0
        yield start
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def run_bench_study(
    text: str,
    filename: str,
    storage: Path,
    slots: int,
    core: Any = None,
    by_value: tuple[ModuleType, ...] = (),
) -> tuple[Any, float, float]:
    """Run a study (YAML text) on a fresh local Ray; return (outcome, wall s, Ray start s).

    The wall time includes starting and stopping Ray.

    Raises:
        RuntimeError: Not every planned trial completed, or Tune reported errors.
    """
    from ablations.runner import run_study
    from ablations.study import parse_study, plan_trials

    study = parse_study(text, filename)
    expected = len(plan_trials(study))
    t0 = time.perf_counter()
    with local_ray(slots, Path(filename).stem[:8], by_value) as start:
        outcome = run_study(study, storage=str(storage), core=core)
    wall = time.perf_counter() - t0
    if outcome.tune_errors or outcome.completed != expected:
        raise RuntimeError(
            f"{study.name}: {outcome.completed} trials completed, {outcome.tune_errors} errors"
        )
    return outcome, wall, start.seconds


class MeasuredCore:
    """``btnet_core.train`` with the CPU and wall time of each training call logged.

    Appends ``{"stage": "trunk" | "branches", "cpu_s": ..., "wall_s": ...}`` lines to
    ``log_path`` when a call returns (a trial stopped early by a scheduler logs nothing for
    its stage 2). A ``train_trunk`` call that finds its trunk already on disk costs nothing and
    is logged as such.
    """

    def __init__(self, log_path: str) -> None:
        self.log_path = log_path

    @staticmethod
    def _core() -> Any:
        import importlib

        return importlib.import_module("btnet_core.train")

    def trunk_resolutions(self, cfg: Any) -> list[int | None]:
        return self._core().trunk_resolutions(cfg)

    def trunk_file(self, resolution: int | None = None) -> str:
        return self._core().trunk_file(resolution)

    def train_trunk(
        self,
        cfg: Any,
        out_dir: Path,
        resolution: int | None = None,
        callback: Callable[[dict], None] | None = None,
    ) -> Path:
        return self._timed(
            "trunk", lambda: self._core().train_trunk(cfg, out_dir, resolution, callback)
        )

    def train_branches(
        self,
        cfg: Any,
        out_dir: Path,
        trunks: dict[int | None, Path],
        callback: Callable[[dict, Path], None] | None = None,
        resume_from: Path | None = None,
    ) -> dict[str, Any]:
        return self._timed(
            "branches",
            lambda: self._core().train_branches(
                cfg, out_dir, trunks, callback, resume_from=resume_from
            ),
        )

    def _timed(self, stage: str, fn: Callable[[], Any]) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        result = fn()
        append_jsonl(
            self.log_path,
            {
                "stage": stage,
                "cpu_s": time.process_time() - cpu,
                "wall_s": time.perf_counter() - wall,
            },
        )
        return result


def append_jsonl(path: str, record: dict[str, Any]) -> None:
    """Append one JSON line (trials on one machine append whole lines; no locking needed)."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """The records :func:`append_jsonl` wrote (none when the file does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
