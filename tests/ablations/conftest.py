"""Shared set-up of the ablations tests: Ray's environment, a Ray session per module and a
scratch folder per test."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# Before anything imports Ray: no sign-in prompt, no usage reporting.
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# The tests import their helpers (ablations_support) by name; pytest runs with
# --import-mode=importlib, which does not put test folders on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablations_support import ray_temp_dir  # noqa: E402


@pytest.fixture(scope="module")
def ray_session():
    """One local 2-CPU Ray for all tests of a module; shut down after them."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    temp = ray_temp_dir()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=80 * 1024**2,
        _temp_dir=temp,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def workdir():
    """A fresh folder for a test's store and logs (tmp_path is too long for some Ray paths)."""
    path = tempfile.mkdtemp(prefix="btnet_t_")
    yield path
    shutil.rmtree(path, ignore_errors=True)
