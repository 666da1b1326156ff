"""Shared set-up of the reliability tests: Ray's environment, the ablations test helpers on
sys.path, and their fixtures (a Ray session per module, a short scratch folder per test):
pytest does not share fixtures between sibling test folders, so they are imported from
tests/ablations/ablations_support.py, not copied.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

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

from ablations_support import ray_session, workdir  # noqa: E402, F401  (fixtures)
