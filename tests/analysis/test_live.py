"""Tests of analysis/live.py: the live view serves on 127.0.0.1 and follows new trials."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analysis.live import LiveServer
from analysis.store import write_trial
from analysis.synthetic_store import ablation_rows


def _trial(root: Path, index: int) -> None:
    rows, curves = ablation_rows(10, seed=7, study="live", failure_rate=0.0)
    row = rows[index]
    points = [
        {k: v for k, v in c.items() if k != "trial_id"}
        for c in curves
        if c["trial_id"] == row["trial_id"]
    ]
    write_trial(root, row, points)


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """A live server of study 'live' on a free port, in a background thread."""
    srv = LiveServer(tmp_path / "store", "live", port=0, interval_ms=300)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(srv: LiveServer, path: str) -> str:
    with urllib.request.urlopen(srv.url + path, timeout=60) as resp:
        return resp.read().decode()


def test_binds_to_loopback_only(server: LiveServer) -> None:
    """The server listens on 127.0.0.1."""
    assert server.server_address[0] == "127.0.0.1"
    assert server.url.startswith("http://127.0.0.1:")


def test_waits_for_the_first_trial_then_follows(server: LiveServer) -> None:
    """Before any trial the version says so; each new trial changes it and lands in the report."""
    root = Path(server.root)
    first = json.loads(_get(server, "api/version"))
    assert first["trials"] == 0
    assert "waiting" in _get(server, "api/report")
    _trial(root, 0)
    second = json.loads(_get(server, "api/version"))
    assert second["trials"] == 1 and second["version"] != first["version"]
    _trial(root, 1)
    report = json.loads(_get(server, "api/report"))
    ids = {row[0] for row in report["table"]["rows"]}
    assert ids == {"baseline-s0", "no_feature_distill-s0"}


def test_unknown_paths_are_404(server: LiveServer) -> None:
    """Only the page and its two API paths are served."""
    with pytest.raises(urllib.error.HTTPError) as info:
        _get(server, "../etc/passwd")
    assert info.value.code == 404


@pytest.mark.browser
def test_open_page_updates_as_trials_land(server: LiveServer, browser_context: Any) -> None:
    """A page left open shows a trial written after it loaded, without a reload."""
    root = Path(server.root)
    _trial(root, 0)
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url)
    page.wait_for_function("document.querySelectorAll('#trial-table tbody tr').length === 1")
    page.evaluate("window.__sameDocument = true")
    _trial(root, 1)
    page.wait_for_function(
        "document.querySelectorAll('#trial-table tbody tr').length === 2", timeout=30_000
    )
    assert page.evaluate("window.__sameDocument") is True
    assert "live" in page.locator("#live-status").inner_text()
    assert errors == []
    page.close()
