"""A live dashboard of a running study: ``btnet-lab dashboard STUDY --serve``.

A small HTTP server on 127.0.0.1 serves the dashboard page with a script that asks every
two seconds whether the study's files changed (``/api/version``, a fingerprint of the file
names and sizes, cheap to compute) and, when they did, fetches the rebuilt report
(``/api/report``) and redraws the page in place. Reports are rebuilt at most once per change,
whatever the number of open pages. Before the first trial lands the page says it is waiting.

The server binds to the loopback interface only and serves nothing but these three paths:
it has no authentication, so it must not face a network (use an SSH tunnel to watch a remote
sweep).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from analysis.dashboard import build_report, render_html, report_json, waiting_page
from analysis.store import read_trials, store_fingerprint
from btnet_core.errors import StoreError

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_PORT = 8050
POLL_MS = 2000


class LiveServer(ThreadingHTTPServer):
    """HTTP server of one study's live dashboard.

    Args:
        root: Store root.
        study: Study to show.
        port: TCP port on 127.0.0.1 (0: any free port).
        baseline: Baseline variant of an ablation.
        interval_ms: How often the page polls.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        study: str,
        port: int = DEFAULT_PORT,
        baseline: str | None = None,
        interval_ms: int = POLL_MS,
        host: str = HOST,
    ) -> None:
        # Loopback unless the caller names another address: the page has no authentication.
        self.host = host
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            raise StoreError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.root = root
        self.study = study
        self.baseline = baseline
        self.interval_ms = interval_ms
        self._lock = threading.Lock()
        self._version: str | None = None
        self._report: str = ""
        self._page: str = ""
        self._trials = 0

    @property
    def url(self) -> str:
        """Address of the page."""
        return f"http://{self.host}:{self.server_address[1]}/"

    def state(self) -> tuple[str, int, str, str]:
        """(version, trials, report JSON, page HTML), rebuilt when the study's files changed."""
        with self._lock:
            try:
                version = store_fingerprint(self.root, self.study)
            except StoreError:
                version = "no-store"
            if version != self._version:
                self._rebuild(version)
            return self._version or version, self._trials, self._report, self._page

    def _rebuild(self, version: str) -> None:
        live = {"interval_ms": self.interval_ms, "version": version}
        try:
            report = build_report(self.root, self.study, self.baseline)
        except StoreError as exc:
            logger.info("live view of %s: %s", self.study, exc)
            self._page = waiting_page(self.study, live)
            self._report = json.dumps(_waiting_payload(self.study, str(exc)))
            self._trials = 0
        else:
            self._page = render_html(report, live)
            self._report = report_json(report)
            self._trials = int(report.summary["trials"])
            logger.info("live view of %s: %d trials", self.study, self._trials)
        self._version = version


def _waiting_payload(study: str, message: str) -> dict[str, object]:
    return {
        "study": study,
        "kind": "",
        "summary": {"waiting": True, "message": message},
        "sections": [],
        "table": {"columns": [], "rows": []},
        "curves": {"metrics": [], "trials": [], "data": {}, "default": [], "total": 0},
        "generated_at": "",
    }


class _Handler(BaseHTTPRequestHandler):
    server: LiveServer

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                _, _, _, page = self.server.state()
                self._send(page, "text/html; charset=utf-8")
            elif path == "/api/version":
                version, trials, _, _ = self.server.state()
                self._send(json.dumps({"version": version, "trials": trials}), "application/json")
            elif path == "/api/report":
                _, _, report, _ = self.server.state()
                self._send(report, "application/json")
            else:
                self.send_error(HTTPStatus.NOT_FOUND, "not found")
        except StoreError as exc:
            self._send(
                json.dumps({"error": str(exc)}),
                "application/json",
                HTTPStatus.INTERNAL_SERVER_ERROR,
            )

    def _send(self, body: str, content_type: str, status: HTTPStatus = HTTPStatus.OK) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (base signature)
        logger.debug("%s %s", self.address_string(), format % args)


def serve(
    root: str | os.PathLike[str],
    study: str,
    port: int = DEFAULT_PORT,
    baseline: str | None = None,
    interval_ms: int = POLL_MS,
    host: str = HOST,
) -> None:
    """Serve the live dashboard until interrupted (Ctrl-C); on 127.0.0.1 unless ``host``
    names another address (the page has no authentication).

    Raises:
        StoreError: The port cannot be opened, or the store is of a newer schema version.
    """
    server = LiveServer(root, study, port, baseline, interval_ms, host)
    try:
        read_trials(root, study, columns=["trial_id"])
    except StoreError as exc:
        if "newer" in str(exc) or "schema version" in str(exc):
            server.server_close()
            raise
    logger.info("live dashboard of %s at %s (Ctrl-C stops it)", study, server.url)
    print(f"live dashboard of {study}: {server.url}  (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
