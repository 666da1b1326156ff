"""Shared set-up of the reliability tests: Ray's environment, the ablations test helpers on
sys.path, a Ray session per module and a short scratch folder per test.

The fixtures mirror tests/ablations/conftest.py (pytest does not share fixtures between
sibling test folders); the helpers themselves (FakeCore, ray_temp_dir) are imported from
tests/ablations/ablations_support.py, not copied.
"""

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
# pytest runs with --import-mode=importlib, which puts no test folder on sys.path.
HERE = Path(__file__).resolve().parent
ABLATIONS_TESTS = HERE.parent / "ablations"
for folder in (HERE, ABLATIONS_TESTS):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture(scope="module")
def ray_session():
    """One local 2-CPU Ray for all tests of a module; shut down after them."""
    import ray
    from ablations_support import ray_temp_dir

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
    """A fresh short folder for a test's store and logs (Ray socket paths must stay short)."""
    path = tempfile.mkdtemp(prefix="btnet_r_")
    yield path
    shutil.rmtree(path, ignore_errors=True)
