"""A sweep driver the resume test starts in a subprocess and kills with SIGKILL.

python killable_driver.py STUDY.yaml STORE LOG_DIR RAY_TEMP_DIR
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablations_support import FakeCore  # noqa: E402

from ablations.runner import run_study  # noqa: E402
from ablations.study import load_study  # noqa: E402


def main() -> None:
    study_file, store, log_dir, temp_dir = sys.argv[1:5]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    core = FakeCore(Path(log_dir), trunk_s=0.3, step_s=0.5)
    run_study(
        load_study(study_file),
        storage=store,
        core=core,
        ray_init={
            "num_cpus": 2,
            "object_store_memory": 80 * 1024**2,
            "_temp_dir": temp_dir,
            "log_to_driver": False,
        },
    )


if __name__ == "__main__":
    main()
