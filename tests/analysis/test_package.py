"""Tests of the analysis package as a whole: it reads the store and needs neither Ray nor torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_analysis_imports_neither_ray_nor_torch() -> None:
    """Importing every analysis module loads no ray and no torch (checked in a fresh process)."""
    modules = [p.stem for p in (Path(__file__).resolve().parents[2] / "analysis").glob("*.py")]
    code = (
        "import importlib, sys\n"
        f"for m in {sorted(modules)!r}:\n"
        "    importlib.import_module('analysis.' + m if m != '__init__' else 'analysis')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('ray', 'torch')]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
