"""What the tests share: the package on sys.path, and a fake HTTP server.

Importing this module puts clients/python first on sys.path, so that the
tests run the source tree's taskd whether or not a copy is installed, from
any directory: ``python3 -m unittest discover -s clients/python/tests``.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import subprocess
import sys
import threading
import unittest
from typing import Any, Callable, Dict, List, Optional, Tuple

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if PACKAGE_DIR not in sys.path:
    sys.path.insert(0, PACKAGE_DIR)

# The worker's expected warnings (failed tasks, lost leases) would go to
# stderr through logging's last resort; TASKD_TEST_VERBOSE=1 shows them.
if not os.environ.get("TASKD_TEST_VERBOSE"):
    logging.getLogger("taskd").addHandler(logging.NullHandler())


class Request:
    """A request the fake server received."""

    def __init__(self, method: str, path: str, headers: Dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers  # lower-cased names
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path} {self.body[:80]!r}>"


# What a responder returns: status, extra headers, body (bytes, or a value
# sent as JSON).
Response = Tuple[int, Dict[str, str], Any]
Responder = Callable[[Request], Response]


class FakeServer:
    """An HTTP server on 127.0.0.1 that answers with ``respond(request)``
    and records every request. Use as a context manager."""

    def __init__(self, respond: Responder) -> None:
        self.requests: List[Request] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with fake._lock:
                    fake.requests.append(req)
                try:
                    status, headers, payload = respond(req)
                except ConnectionAbortedError:
                    self.close_connection = True
                    return  # drop the connection without an answer
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                headers = dict(headers)
                headers.setdefault("Content-Type", "application/json")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass  # the client went away

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> "FakeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def paths(self, method: Optional[str] = None) -> List[str]:
        with self._lock:
            return [r.path for r in self.requests if method is None or r.method == method]

    def matching(self, method: str, suffix: str) -> List[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]


def problem(status: int, title: str, detail: str = "", type: str = "about:blank", errors: Any = None) -> Response:
    doc: Dict[str, Any] = {"type": type, "title": title, "status": status}
    if detail:
        doc["detail"] = detail
    if errors is not None:
        doc["errors"] = errors
    return status, {"Content-Type": "application/problem+json"}, doc


def start_echo_worker(test: unittest.TestCase, url: str, *args: str) -> subprocess.Popen:
    """Start echo_worker.py as a subprocess, killed when the test ends."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "echo_worker.py")
    proc = subprocess.Popen([sys.executable, script, url, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL if not os.environ.get("TASKD_TEST_VERBOSE") else None,
                            text=True, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))

    def cleanup() -> None:
        proc.kill()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]

    test.addCleanup(cleanup)
    return proc


def read_until(proc: subprocess.Popen, done: Callable[[List[str]], bool], timeout: float = 15) -> List[str]:
    """Read proc's stdout lines until done(lines) or timeout."""
    lines: List[str] = []
    result: List[bool] = []

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line.strip())
            if done(lines):
                result.append(True)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not result:
        raise AssertionError(f"worker output so far: {lines}")
    return lines
