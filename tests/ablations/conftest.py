"""Shared set-up of the ablations tests: Ray's environment, and the fixtures of
ablations_support (a Ray session per module, a scratch folder per test)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before anything imports Ray: no sign-in prompt, no usage reporting.
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# The tests import their helpers (ablations_support) by name; pytest runs with
# --import-mode=importlib, which does not put test folders on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablations_support import ray_session, workdir  # noqa: E402, F401  (fixtures)
