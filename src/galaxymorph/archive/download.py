"""One file of a record onto disk: resumed with HTTP ranges, checked against its md5, never half-used.

The bytes go to ``NAME.part`` beside the target, a file this module names and owns:
after a kill, a dropped connection or a full disk it stays, and the next run asks the
server for the rest (``Range: bytes=<size of NAME.part>-``). Only a part whose md5
matches the record's becomes ``NAME``; one that does not is named, deleted (it is
ours) and fetched once more from the start.
"""

from __future__ import annotations

import errno
import http.client
import shutil
from pathlib import Path

from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from galaxymorph.archive.zenodo import FetchError, Offline, RecordFile, Retry, open_url
from galaxymorph.files import file_digest

__all__ = ["check_space", "download", "part_of", "transfer_progress"]

_CHUNK = 1 << 20


def transfer_progress() -> Progress:
    """A bar per file: bytes done of the total, speed and time left."""
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), transient=False)


def part_of(target: Path) -> Path:
    """Where the bytes of ``target`` gather until they are verified."""
    return target.with_name(target.name + ".part")


def check_space(folder: Path, needed: int, what: str) -> None:
    """Refuse before writing ``needed`` bytes into ``folder`` when its disk has less free."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise FetchError(f"{folder}: {decimal(free)} free, {what} needs {decimal(needed)} more; free space or "
                         "choose another --out (what is there is kept and resumes)")


def download(file: RecordFile, folder: Path, retry: Retry, progress: Progress | None = None) -> Path:
    """``folder / file.key``, downloaded (resuming ``.part``) and verified; returns its path.

    Raises:
        FetchError: the md5 differs twice, the server keeps failing, or the disk is full
            (the ``.part`` is kept for the next run in the last two cases).
        Offline: the server cannot be reached when this file starts.
    """
    target = folder / file.key
    part = part_of(target)
    for fresh_start in (False, True):
        if fresh_start:
            part.unlink()
        _fill(file, part, retry, progress)
        md5 = file_digest(part, "md5")
        if md5 == file.md5:
            part.replace(target)
            return target
    part.unlink()
    raise FetchError(f"{target}: md5 {md5} after downloading twice, the record lists {file.md5}; the server sends "
                     f"other bytes than the record describes: try again later or another --server ({part} removed)")


def _fill(file: RecordFile, part: Path, retry: Retry, progress: Progress | None) -> None:
    """Append to ``part`` until it holds ``file.size`` bytes, resuming after dropped connections."""
    have = part.stat().st_size if part.exists() else 0
    if have > file.size:  # ours, and longer than the file: it cannot be the start of it
        part.unlink()
        have = 0
    check_space(part.parent, file.size - have, file.key)
    part.touch()
    task = progress.add_task(file.key, total=file.size, completed=have) if progress else None
    failures, answered = 0, False  # failures in a row without a byte gained
    while have < file.size:
        try:
            have = _append(file, part, have, retry, progress, task)
        except Offline:
            if not answered:  # unreachable from the start: say so now rather than after minutes of waiting
                raise
            failures += 1
        except _Dropped:
            gained = part.stat().st_size
            failures = 1 if gained > have else failures + 1
            have, answered = gained, True
        if have < file.size:
            if failures >= retry.attempts:
                raise FetchError(f"{file.url}: the connection dropped {failures} times in a row; run again to "
                                 f"resume ({part} keeps {decimal(have)} of {decimal(file.size)})")
            retry.wait(failures - 1)
    if task is not None:
        progress.update(task, completed=file.size)


class _Dropped(Exception):
    """The server stopped sending before the end of the file."""


def _append(file: RecordFile, part: Path, have: int, retry: Retry, progress: Progress | None, task) -> int:
    """One request for the bytes from ``have`` on, appended to ``part``; returns the size reached."""
    headers = {"Range": f"bytes={have}-"} if have else {}
    with open_url(file.url, retry, headers) as response:
        if have and not _continues_at(response, have):  # the server sent the whole file: start again
            have = 0
        with part.open("ab" if have else "wb") as out:
            try:
                while have < file.size:
                    chunk = response.read1(min(_CHUNK, file.size - have))  # what has arrived, not a full MB
                    if not chunk:
                        break
                    out.write(chunk)
                    out.flush()  # on disk as it arrives: a kill loses nothing
                    have += len(chunk)
                    if task is not None:
                        progress.update(task, completed=have)
            except OSError as error:
                if error.errno == errno.ENOSPC:
                    raise FetchError(f"{part.parent}: no space left on the device while writing {part.name} "
                                     f"({decimal(have)} of {decimal(file.size)} kept; it resumes): free space and "
                                     "run again") from None
                raise _Dropped() from error
            except http.client.HTTPException as error:
                raise _Dropped() from error
    if have < file.size:
        raise _Dropped()
    return have


def _continues_at(response, start: int) -> bool:
    """Whether a ranged answer really starts at byte ``start`` (206 with a matching Content-Range)."""
    if response.status != 206:
        return False
    content_range = response.headers.get("Content-Range", "")  # "bytes 100-199/200"
    return content_range.startswith(f"bytes {start}-")
