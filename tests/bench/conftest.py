"""The benchmarks live in ``bench/`` at the repository root, which is not an installed package:
make it importable however pytest was started (``python -m pytest`` adds the working directory
to the path, the ``pytest`` script does not)."""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
