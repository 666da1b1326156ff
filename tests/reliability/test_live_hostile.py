"""The live dashboard server (``btnet-lab dashboard STUDY --serve``) with hostile strings in
the store: a trial name, a variant and an error message holding HTML/script are served as
data, never as markup, and the server listens on 127.0.0.1 only.

tests/analysis/test_dashboard.py checks the written HTML file (and, in Chromium, that the
strings show as text); this checks what the live server sends over HTTP, where the same
strings arrive from the store after the page has loaded.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from analysis.live import HOST, LiveServer
from analysis.store import write_trial
from analysis.synthetic_store import ablation_rows

HOSTILE_VARIANT = '<img src=x onerror="window.__pwned=1">'
HOSTILE_ERROR = "<script>window.__pwned=2</script> & more"


@pytest.fixture()
def hostile_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A live server of a study whose trials carry HTML in a variant, an id and an error."""
    root = tmp_path / "store"
    rows, curves = ablation_rows(10, seed=3, study="live", failure_rate=0.0)
    rows = rows[:4]
    rows[1].update(variant=HOSTILE_VARIANT, trial_id=f"{HOSTILE_VARIANT}-s0")
    rows[2].update(status="error", error=HOSTILE_ERROR)
    for key in [k for k in rows[2] if k.startswith(("final_", "best_"))]:
        rows[2][key] = None
    for row in rows:
        write_trial(root, row, [])
    srv = LiveServer(root, "live", port=0, interval_ms=300)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(srv: LiveServer, path: str) -> tuple[str, str]:
    with urllib.request.urlopen(srv.url + path, timeout=60) as resp:
        return resp.read().decode(), resp.headers["Content-Type"]


def test_hostile_strings_are_served_as_data_not_markup(hostile_server: LiveServer) -> None:
    """The page holds none of the tags; the report is JSON (nosniff) that carries the strings
    exactly, for the page to put into the document as text."""
    page, page_type = _get(hostile_server, "/")
    assert page_type.startswith("text/html")
    assert "<img src=x" not in page and "<script>window.__pwned" not in page
    assert page.count("</script>") == page.count("<script")
    report, report_type = _get(hostile_server, "/api/report")
    assert report_type == "application/json"
    text = json.dumps(json.loads(report))
    assert json.dumps(HOSTILE_VARIANT)[1:-1] in text and json.dumps(HOSTILE_ERROR)[1:-1] in text


def test_live_server_listens_on_loopback_by_default(hostile_server: LiveServer) -> None:
    """Nothing on another interface can reach it: the socket is bound to 127.0.0.1."""
    assert HOST == "127.0.0.1"
    assert hostile_server.socket.getsockname()[0] == "127.0.0.1"


def test_live_server_listens_where_it_is_told(tmp_path: Path) -> None:
    # "Unless told otherwise": another address is honoured (a second loopback address here,
    # so the test never leaves this machine).
    root = tmp_path / "store"
    rows, _ = ablation_rows(4, seed=3, study="told", failure_rate=0.0)
    for row in rows:
        write_trial(root, row, [])
    srv = LiveServer(root, "told", port=0, host="127.0.0.2")
    try:
        assert srv.server_address[0] == "127.0.0.2"
        assert srv.url.startswith("http://127.0.0.2:")
    finally:
        srv.server_close()
