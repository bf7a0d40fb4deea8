"""A Zenodo record's file list, read from its API at run time, and HTTP with one retry policy.

``GET {server}/api/records/{id}`` answers JSON whose ``files`` list gives each file's
name (``key``; ``filename`` in the API Zenodo served for a while after its 2023 move
to InvenioRDM; InvenioRDM's own JSON nests them in ``files.entries``), ``size`` (``filesize``),
``checksum`` (``md5:<hex>``, or the bare hex)
and ``links`` (``content`` or ``self``: where its bytes are). Nothing about a record
is stored in this package, so a new version of a record (a new record number) needs
no new release of galaxymorph. ``server`` is ``https://zenodo.org`` unless
``--server`` or ``GALAXYMORPH_ZENODO_URL`` names a mirror, a cache or a test server;
file links that point at another host are moved onto ``server``.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.client import HTTPResponse
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "DEFAULT_SERVER", "SERVER_VARIABLE", "FetchError", "HTTPRefusal", "Offline", "Record", "RecordFile", "Retry", "open_url",
    "parse_record", "read_record", "zenodo_server",
]

DEFAULT_SERVER = "https://zenodo.org"
SERVER_VARIABLE = "GALAXYMORPH_ZENODO_URL"
# Answers worth asking again (after Retry-After when the server gives one); any other HTTP error is final.
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


class FetchError(ValueError):
    """A download or a record that cannot be used; the message names the file or record and the fix."""


class Offline(FetchError):
    """The server cannot be reached at all (no network, a wrong --server)."""


class HTTPRefusal(FetchError):
    """The server answered with a final HTTP error (404, 403 ...); ``status`` is its code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Retry:
    """How often to ask again after a transient failure, and how long to wait (``sleep`` is replaceable in tests)."""

    attempts: int = 6
    first_wait: float = 2.0
    max_wait: float = 600.0
    timeout: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def wait(self, attempt: int, retry_after: str | None = None) -> None:
        """Sleep before attempt ``attempt + 1``: the server's Retry-After if it gave one, else doubling waits."""
        seconds = _retry_after_seconds(retry_after)
        if seconds is None:
            seconds = self.first_wait * 2 ** attempt
        self.sleep(min(max(seconds, 0.0), self.max_wait))


@dataclass(frozen=True)
class RecordFile:
    """One file of a record: its name, size in bytes, md5 and download address."""

    key: str
    size: int
    md5: str
    url: str


@dataclass(frozen=True)
class Record:
    """A Zenodo record's number, title and files, as its API listed them."""

    id: int
    server: str
    title: str
    files: tuple[RecordFile, ...]

    @property
    def page(self) -> str:
        return f"{self.server}/records/{self.id}"

    @property
    def api(self) -> str:
        return record_api(self.id, self.server)


def zenodo_server(server: str | None = None) -> str:
    """The archive's base address: ``server``, else ``$GALAXYMORPH_ZENODO_URL``, else https://zenodo.org."""
    chosen = server or os.environ.get(SERVER_VARIABLE) or DEFAULT_SERVER
    parsed = urllib.parse.urlsplit(chosen)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        source = "--server" if server else SERVER_VARIABLE
        raise FetchError(f"{source}={chosen!r} is not an http(s) address; give one like {DEFAULT_SERVER}")
    return chosen.rstrip("/")


def record_api(record_id: int, server: str) -> str:
    return f"{server}/api/records/{record_id}"


def open_url(url: str, retry: Retry, headers: dict[str, str] | None = None) -> HTTPResponse:
    """The server's answer to GET ``url`` (status 200 or 206), after waiting out transient answers.

    Raises:
        Offline: the server cannot be reached (refused, unknown host, no network).
        HTTPRefusal: a final HTTP error (404, 403 ...).
        FetchError: transient answers (429, 503 ...) ``retry.attempts`` times.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "galaxymorph", **(headers or {})})
    for attempt in range(retry.attempts):
        try:
            return urllib.request.urlopen(request, timeout=retry.timeout)
        except urllib.error.HTTPError as error:
            error.close()
            if error.code not in TRANSIENT_STATUS:
                raise HTTPRefusal(f"{url}: HTTP {error.code} {error.reason}", error.code) from None
            last = f"HTTP {error.code} {error.reason}"
            if attempt + 1 < retry.attempts:
                retry.wait(attempt, error.headers.get("Retry-After"))
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            raise Offline(f"cannot reach {_origin(url)} ({getattr(error, 'reason', error)})") from None
    raise FetchError(f"{url}: {last} after {retry.attempts} tries; try again later or another --server")


def read_record(record_id: int, server: str, retry: Retry, saved: Path | None = None) -> tuple[Record, dict[str, Any]]:
    """The record (and its JSON) from the server; from ``saved`` (a copy of that JSON) when the server is unreachable.

    Raises:
        Offline: unreachable and no ``saved`` copy; the message says what to download and where to put it.
    """
    url = record_api(record_id, server)
    try:
        with open_url(url, retry, {"Accept": "application/json"}) as response:
            text = response.read().decode("utf-8", errors="replace")
        source = url
    except Offline as offline:
        if saved is None or not saved.is_file():
            where = saved.parent if saved is not None else "the output folder"
            raise Offline(
                f"{offline}: on a machine with internet save {url} as {saved or 'record.json'} and download the "
                f"files it lists ({server}/records/{record_id}) into {where}, then run this again "
                f"(or point --server / {SERVER_VARIABLE} at a mirror)"
            ) from None
        text, source = saved.read_text(), str(saved)
    except HTTPRefusal as error:
        if error.status in (404, 410):
            raise FetchError(f"{server} has no record {record_id} ({error}); check the number") from None
        raise
    try:
        data = json.loads(text)
    except ValueError:
        raise FetchError(f"{source}: not JSON; is {server} a Zenodo server (or mirror)?") from None
    return parse_record(data, record_id, server, source), data


def parse_record(data: Any, record_id: int, server: str, source: str = "the record") -> Record:
    """A :class:`Record` from the API's JSON (either API version); errors name ``source`` and the field."""
    files = data.get("files") if isinstance(data, dict) else None
    if isinstance(files, dict):  # InvenioRDM's own JSON: {"entries": {key: {...}}}
        files = list((files.get("entries") or {}).values())
    if not isinstance(files, list):
        raise FetchError(f"{source}: no 'files' list; not a Zenodo record (or a restricted one)")
    parsed = []
    for i, entry in enumerate(files):
        try:
            key = entry.get("key") or entry["filename"]
            size = int(entry.get("size", entry.get("filesize")))
            md5 = str(entry["checksum"]).removeprefix("md5:")
        except (AttributeError, KeyError, TypeError, ValueError):
            raise FetchError(f"{source}: file {i} lacks a name, size or checksum ({str(entry)[:120]})") from None
        if len(md5) != 32 or Path(key).name != key or key.startswith("."):
            raise FetchError(f"{source}: file {key!r} has no md5 checksum or is not a plain file name")
        links = entry.get("links") or {}
        link = links.get("content") or links.get("self") or f"/records/{record_id}/files/{urllib.parse.quote(key)}?download=1"
        parsed.append(RecordFile(key, size, md5.lower(), _on_server(link, server)))
    title = str((data.get("metadata") or {}).get("title") or data.get("title") or "")
    return Record(int(data.get("id") or record_id), server, title, tuple(parsed))


def _on_server(link: str, server: str) -> str:
    """``link`` moved onto ``server`` (path and query kept), so a mirror serving Zenodo's JSON as is serves the files too."""
    if link.startswith(server + "/"):
        return link
    parts = urllib.parse.urlsplit(link)
    return server + parts.path + (f"?{parts.query}" if parts.query else "")


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date (RFC 9110); None when absent or unreadable."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if email.utils.parsedate(value) else None
        return None if when is None else when.timestamp() - time.time()
