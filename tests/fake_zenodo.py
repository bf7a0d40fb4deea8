"""A Zenodo imitation on 127.0.0.1 for the fetch tests: the record API, file bytes with ranges, faults on demand.

``faults[key]`` is a queue: each request for that file takes the next fault, if any:

- ``"close:N"``: announce the whole answer, send N bytes of it and close the connection;
- ``"hold:N"``: send N bytes, then wait (at most 20 s) for :meth:`FakeZenodo.release_held`, then close;
- ``"429:S"`` / ``"503"``: answer that status (with ``Retry-After: S`` where given);
- ``"404"``: not found; ``"corrupt"``: the bytes with one changed; ``"whole"``: ignore Range.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
from collections import defaultdict, deque


class FakeZenodo:
    """``with FakeZenodo() as zenodo: zenodo.add(1, {"a.csv": b"..."})``; ``zenodo.url`` is its base address."""

    def __init__(self) -> None:
        self.records: dict[int, dict[str, bytes]] = {}
        self.listed_md5: dict[str, str] = {}
        self.link_host: str | None = None  # list file links on another host (as a mirror serving Zenodo's JSON)
        self.faults: dict[str, deque[str]] = defaultdict(deque)
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.sent: dict[str, int] = defaultdict(int)  # file bytes sent per key
        self._held = threading.Event()
        self._lock = threading.Lock()

    def add(self, record_id: int, files: dict[str, bytes], listed_md5: dict[str, str] | None = None) -> None:
        self.records[record_id] = files
        self.listed_md5.update(listed_md5 or {})

    def release_held(self) -> None:
        self._held.set()

    def file_requests(self, key: str) -> list[str | None]:
        """The Range header of each request for ``key``'s bytes (None: from the start)."""
        return [rng for path, rng in self.requests if path.endswith(f"/files/{key}/content")]

    def record_json(self, record_id: int) -> dict:
        host = self.link_host or self.url
        return {
            "id": record_id,
            "metadata": {"title": f"made-up record {record_id}"},
            "files": [
                {"key": key, "size": len(body),
                 "checksum": "md5:" + self.listed_md5.get(key, hashlib.md5(body).hexdigest()),
                 "links": {"self": f"{host}/api/records/{record_id}/files/{key}/content"}}
                for key, body in self.records[record_id].items()
            ],
        }

    def __enter__(self) -> "FakeZenodo":
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._held.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _handler(zenodo: FakeZenodo) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            with zenodo._lock:
                zenodo.requests.append((self.path, self.headers.get("Range")))
            api = re.fullmatch(r"/api/records/(\d+)", self.path)
            content = re.fullmatch(r"/api/records/(\d+)/files/([^/]+)/content", self.path)
            if api and int(api[1]) in zenodo.records:
                self._send(200, json.dumps(zenodo.record_json(int(api[1]))).encode(), "application/json")
            elif content and content[2] in zenodo.records.get(int(content[1]), {}):
                self._file(content[2], zenodo.records[int(content[1])][content[2]])
            else:
                self._send(404, b'{"status": 404, "message": "not found"}', "application/json")

        def _file(self, key: str, body: bytes) -> None:
            with zenodo._lock:
                fault = zenodo.faults[key].popleft() if zenodo.faults[key] else ""
            kind, _, arg = fault.partition(":")
            if kind in ("429", "503", "404"):
                headers = {"Retry-After": arg} if arg else {}
                return self._send(int(kind), b"slow down" if kind != "404" else b"gone", "text/plain", headers)
            if kind == "corrupt":
                body = bytes([body[0] ^ 0xFF]) + body[1:]
            start = int(re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "bytes=0-")[1])
            if kind == "whole":
                start = 0
            status, headers = 200, {}
            if start:
                status, headers = 206, {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body) - start),
                                "Content-Type": "application/octet-stream"}.items():
                self.send_header(name, value)
            self.end_headers()
            piece = body[start:]
            if kind in ("close", "hold"):
                piece = piece[: int(arg)]
            with zenodo._lock:  # counted before it is written: the client may finish reading before this thread resumes
                zenodo.sent[key] += len(piece)
            self.wfile.write(piece)
            self.wfile.flush()
            if kind == "hold":
                zenodo._held.wait(timeout=20)
            if kind in ("close", "hold"):
                self.close_connection = True

        def _send(self, status: int, body: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in {**(headers or {}), "Content-Type": kind, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler
