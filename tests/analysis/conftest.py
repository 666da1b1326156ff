"""Shared fixtures of the analysis tests: small generated stores and a headless browser."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analysis.synthetic_store import generate_store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def minimal_row(**overrides: Any) -> dict[str, Any]:
    """A valid sweep trial row with a few metrics; keyword arguments replace columns."""
    row: dict[str, Any] = {
        "study": "s1",
        "kind": "sweep",
        "trial_id": "t0",
        "seed": 0,
        "status": "completed",
        "metric": "acc_112_7",
        "mode": "max",
        "cfg_stage2__lr": 0.02,
        "final_acc_112_7": 0.86,
        "best_acc_112_7": 0.87,
        "macs_7_branch": 1_517_000_000,
        "gpu_hours": 0.5,
    }
    row.update(overrides)
    return row


@pytest.fixture()
def make_row() -> Any:
    """The :func:`minimal_row` factory (test modules cannot import conftest)."""
    return minimal_row


@pytest.fixture(scope="session")
def ablation_store() -> Iterator[tuple[Path, str]]:
    """A store holding a 5-variant x 8-seed ablation (no failures) with curves."""
    root = Path(tempfile.mkdtemp(prefix="btnet-abl-"))
    study = generate_store(root, 40, kind="ablation", seed=11, failure_rate=0.0)
    yield root, study
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sweep_store() -> Iterator[tuple[Path, str]]:
    """A store holding a 120-trial sweep (with some failures) and curves."""
    root = Path(tempfile.mkdtemp(prefix="btnet-sweep-"))
    study = generate_store(root, 120, kind="sweep", seed=5, failure_rate=0.05)
    yield root, study
    shutil.rmtree(root, ignore_errors=True)


def chromium_or_skip() -> None:
    """Skip the calling test when Chromium or Playwright is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    """A headless Chromium context with a fresh profile directory."""
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="btnet-chromium-")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)
