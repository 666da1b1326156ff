"""The benchmarks live in ``bench/`` at the repository root, which is not an installed package:
make it importable however pytest was started (``python -m pytest`` adds the working directory
to the path, the ``pytest`` script does not)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture()
def bench_error(tmp_path: Path):
    """Run ``python -m MODULE ARGS --output FILE``, expecting a user's mistake: exit status 2,
    nothing written. Returns the lines of stderr."""

    def run(module: str, *args: str) -> list[str]:
        out = tmp_path / "BENCHMARKS.md"
        proc = subprocess.run(
            [sys.executable, "-m", module, *args, "--output", str(out)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert not out.exists()
        return proc.stderr.strip().splitlines()

    return run
