"""An archive's files written out once, resumably, and only inside the folder meant for them.

Each member goes to ``NAME.part`` and is renamed when whole, so a member present with
its size is finished and a re-run after a kill skips it. A member whose path would
leave the folder (absolute, ``..``), links and devices are not written; neither is the
macOS metadata (``__MACOSX/``, ``._NAME``) that zip tools on a Mac add (the GZ2 images
on Zenodo carry it, as galaxy-datasets' ``.gitignore`` notes).
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterator

from rich.progress import Progress

from galaxymorph.archive.download import check_space, part_of
from galaxymorph.archive.zenodo import FetchError

__all__ = ["ARCHIVE_SUFFIXES", "archive_stem", "unpack"]

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


@dataclass(frozen=True)
class _Member:
    name: str
    size: int
    open: Callable[[], IO[bytes]]


def archive_stem(name: str) -> str | None:
    """``name`` without its archive suffix (``images_gz2.zip`` -> ``images_gz2``); None if it is no archive."""
    suffix = next((s for s in ARCHIVE_SUFFIXES if name.lower().endswith(s)), None)
    return name[: -len(suffix)] if suffix else None


def unpack(archive: Path, dest: Path, progress: Progress | None = None) -> int:
    """Write ``archive``'s files under ``dest``, skipping those already there whole; returns how many were written.

    Raises:
        FetchError: a member would land outside ``dest``, a different file already has a
            member's name, the disk has too little space, or the archive is unreadable.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with _members(archive) as members:
            todo = [m for m in members if not _is_done(m, dest, archive)]
            check_space(dest, sum(m.size for m in todo), f"unpacking {archive.name}")
            task = progress.add_task(f"unpack {archive.name}", total=sum(m.size for m in todo)) if progress else None
            for member in todo:
                _write(member, dest / member.name)
                if task is not None:
                    progress.advance(task, member.size)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise FetchError(f"{archive}: cannot unpack it ({error}); delete it and run again to fetch it anew") from None
    return len(todo)


def _is_done(member: _Member, dest: Path, archive: Path) -> bool:
    path = dest / member.name
    if not path.exists():
        return False
    if path.is_file() and path.stat().st_size == member.size:
        return True
    raise FetchError(f"{path} exists and is not {archive.name}'s {member.name}; move it away and run again")


def _write(member: _Member, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = part_of(path)
    with member.open() as source, part.open("wb") as target:
        shutil.copyfileobj(source, target, 1 << 20)
    part.replace(path)


@contextmanager
def _members(archive: Path) -> Iterator[list[_Member]]:
    """The regular files of a zip or tar archive, by safe relative path."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            yield [_Member(info.filename, info.file_size, lambda info=info: zipped.open(info))
                   for info in zipped.infolist() if not info.is_dir() and _wanted(info.filename, archive)]
    else:
        with tarfile.open(archive) as tarred:
            yield [_Member(m.name, m.size, lambda m=m: tarred.extractfile(m))
                   for m in tarred.getmembers() if m.isfile() and _wanted(m.name, archive)]


def _wanted(name: str, archive: Path) -> bool:
    """False for macOS metadata; refuses names that would leave the destination folder."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name:
        raise FetchError(f"{archive}: member {name!r} would land outside its folder; not unpacked")
    return "__MACOSX" not in path.parts and not path.name.startswith("._")
