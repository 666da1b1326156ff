"""A second sweep driver for the concurrent-studies test, run in its own process.

python study_driver.py STUDY.yaml STORE LOG_DIR RAY_ADDRESS

It joins the Ray cluster at RAY_ADDRESS and runs the study with the FakeCore of
tests/ablations/ablations_support.py; exit status 0 when every trial is in the store.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "ablations")]

from ablations_support import FakeCore  # noqa: E402

from ablations.runner import run_study  # noqa: E402
from ablations.study import load_study  # noqa: E402


def main() -> int:
    study_file, store, log_dir, address = sys.argv[1:5]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    outcome = run_study(
        load_study(study_file),
        storage=store,
        address=address,
        core=FakeCore(Path(log_dir), trunk_s=0.3, step_s=0.05),
    )
    return 0 if outcome.complete and outcome.tune_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
