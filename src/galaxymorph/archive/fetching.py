"""A Zenodo record into one folder: listed, checked for space, downloaded, verified, unpacked, converted.

Every step resumes: files already verified are kept (their md5 is recomputed only
when their size or time changed), a ``.part`` continues where it stopped, unpacking
skips finished members, and the catalogue is rewritten. The folder's ``fetch.json``
records the record, which files this command downloaded (only those it may ever
delete) and which archives are unpacked. A file of the record's name that was put
there by hand is used when its md5 matches and refused, never overwritten, when not.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from filelock import FileLock, Timeout

from galaxymorph.archive.download import check_space, download, part_of, transfer_progress
from galaxymorph.archive.gz_decals import missing_images_path
from galaxymorph.archive.releases import CATALOGUE, get_release
from galaxymorph.archive.unpack import archive_stem, unpack
from galaxymorph.archive.zenodo import (
    SERVER_VARIABLE,
    FetchError,
    Offline,
    Record,
    RecordFile,
    Retry,
    read_record,
    zenodo_server,
)
from galaxymorph.files import TMP_SUFFIX, atomic_write_text, file_digest
from galaxymorph.outputs import claim_folder

__all__ = ["Fetched", "fetch", "RECORD_COPY", "STATE"]

STATE = "fetch.json"
RECORD_COPY = "record.json"
_LOCK = ".fetch.lock"


@dataclass
class Fetched:
    """What :func:`fetch` left in ``folder``."""

    folder: Path
    record: Record
    files: list[Path]
    catalogue: pd.DataFrame | None = None
    catalogue_path: Path | None = None
    note: str = ""


def fetch(
    release: str | None,
    out: str | Path,
    *,
    record: int | None = None,
    files: Sequence[str] = (),
    server: str | None = None,
    unpack_archives: bool = True,
    progress: bool = True,
    retry: Retry = Retry(),
) -> Fetched:
    """Fetch a known release (``gz_decals_dr5``, ``gz2``) or any Zenodo ``record`` into ``out``.

    Args:
        release: a name from :data:`galaxymorph.archive.RELEASES`, or None with ``record``.
        out: the folder for the files, their unpacked archives and the catalogue.
        record: a Zenodo record number (another version of ``release``'s, or any record).
        files: patterns of the record's files to fetch (default: the release's, else all).
        server: the archive's base address (default ``$GALAXYMORPH_ZENODO_URL``, else https://zenodo.org).
        unpack_archives: unpack ``.zip``/``.tar*`` files into folders named after them.
        progress: show a progress bar (total and time left) per file.
        retry: how often and how long to wait after transient failures.

    Raises:
        Offline: the server is unreachable; the message says what to download and where to put it.
        FetchError: a file that is not the record's, too little disk space, a server that keeps failing.

    Example:
        >>> fetched = fetch("gz_decals_dr5", "data/gzd5")  # doctest: +SKIP
        >>> fetched.catalogue  # id_str, file_loc and a count per answer, as `shard` reads  # doctest: +SKIP
    """
    if release is None and record is None:
        raise ValueError("name a release or give --record NUMBER")
    known = get_release(release) if release is not None else None
    folder = Path(out)
    server = zenodo_server(server)
    found, data = read_record(record or known.record, server, retry, saved=folder / RECORD_COPY)
    chosen = _choose(found, files or (known.files if known else ()))
    owned = [RECORD_COPY, _LOCK, STATE + TMP_SUFFIX, CATALOGUE, missing_images_path(Path(CATALOGUE)).name]
    owned += [n for f in chosen for n in (f.key, part_of(Path(f.key)).name)]
    owned += [archive_stem(f.key) for f in chosen if archive_stem(f.key)]
    claim_folder(folder, STATE, owned)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(folder / _LOCK, timeout=0):
            return _fetch_into(folder, found, data, chosen, known, unpack_archives, progress, retry)
    except Timeout:
        raise FetchError(f"{folder}: another galaxymorph fetch is writing there; wait for it or choose another --out")\
            from None


def _fetch_into(folder: Path, found: Record, data: dict[str, Any], chosen: list[RecordFile], known, unpack_archives: bool,
                progress: bool, retry: Retry) -> Fetched:
    state = _read_state(folder, found)
    (folder / RECORD_COPY).write_text(json.dumps(data, indent=1))
    todo = [f for f in chosen if not _verified(folder / f.key, f, state)]
    have = sum(part_of(folder / f.key).stat().st_size for f in todo if part_of(folder / f.key).is_file())
    check_space(folder, sum(f.size for f in todo) - have, f"record {found.id}'s {len(todo)} file(s)")
    with transfer_progress() if progress else nullcontext() as bar:
        for i, file in enumerate(todo):
            try:
                download(file, folder, retry, bar)
            except Offline as offline:
                left = ", ".join(f.key for f in todo[i:])
                raise Offline(f"{offline}: download {left} from {found.page} into {folder}, then run this again "
                              f"(or point --server / {SERVER_VARIABLE} at a mirror)") from None
            state["downloaded"] = sorted({*state["downloaded"], file.key})
            _remember(folder / file.key, file, state)
            _write_state(folder, state)
        for file in chosen:
            stem = archive_stem(file.key)
            if unpack_archives and stem and state["unpacked"].get(file.key) != file.md5:
                unpack(folder / file.key, folder / stem, bar)
                state["unpacked"][file.key] = file.md5
                _write_state(folder, state)
    paths = [folder / f.key for f in chosen]
    if not (known and known.convert):
        return Fetched(folder, found, paths, note=known.note if known else "")
    return Fetched(folder, found, paths, known.convert(folder, paths), folder / CATALOGUE, known.note)


def _choose(found: Record, patterns: Sequence[str]) -> list[RecordFile]:
    chosen = [f for f in found.files if not patterns or any(fnmatchcase(f.key, p) for p in patterns)]
    if not chosen:
        names = ", ".join(f.key for f in found.files[:8]) + (", ..." if len(found.files) > 8 else "")
        raise FetchError(f"record {found.id} has no file matching {', '.join(patterns)}; its files: {names or 'none'}")
    return chosen


def _verified(target: Path, file: RecordFile, state: dict[str, Any]) -> bool:
    """Whether ``target`` is the record's file (md5 remembered by size and time); refuses a stranger's other file."""
    if not target.is_file():
        return False
    stat = target.stat()
    if state["verified"].get(file.key) == [stat.st_size, stat.st_mtime_ns, file.md5]:
        return True
    if stat.st_size == file.size and file_digest(target, "md5") == file.md5:
        _remember(target, file, state)
        return True
    if file.key in state["downloaded"]:  # ours, changed since: fetch it again
        target.unlink()
        return False
    raise FetchError(f"{target} is not record {state['record']}'s {file.key} ({stat.st_size} bytes, the record's "
                     f"has {file.size} and md5 {file.md5}); move it away and run again (nothing is overwritten)")


def _remember(target: Path, file: RecordFile, state: dict[str, Any]) -> None:
    """Note that ``target`` (as it is now: size and time) has the record's md5, so re-runs need not read it again."""
    stat = target.stat()
    state["verified"][file.key] = [stat.st_size, stat.st_mtime_ns, file.md5]


def _read_state(folder: Path, found: Record) -> dict[str, Any]:
    path = folder / STATE
    state = json.loads(path.read_text()) if path.is_file() else {"record": found.id}
    if state.get("record") != found.id:
        raise FetchError(f"--out {folder} holds record {state.get('record')}, not {found.id}; choose another --out "
                         "(records are not mixed)")
    state.setdefault("downloaded", [])
    state.setdefault("verified", {})
    state.setdefault("unpacked", {})
    _write_state(folder, state)
    return state


def _write_state(folder: Path, state: dict[str, Any]) -> None:
    atomic_write_text(folder / STATE, json.dumps(state, indent=1))
