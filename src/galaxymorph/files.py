"""Files read, written or checked byte for byte: the small ones people write by hand (decision trees,
settings), parsed with one error line naming the file; every file written whole or not at all
(:func:`atomic_path`); the sha256 that shards and models record, and the md5 that Zenodo lists for its files."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["FORMATS", "TMP_SUFFIX", "atomic_path", "atomic_write_text", "file_digest", "file_sha256", "parse_mapping",
           "put_in_place", "read_mapping", "temporary_path"]

FORMATS = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML", ".json": "JSON"}
TMP_SUFFIX = ".tmp"  # a file being written is <name>.tmp beside it: the leftovers a command may delete


def read_mapping(path: str | Path, error: type[ValueError] = ValueError, kind: str | None = None) -> dict[str, Any]:
    """The mapping in a TOML, YAML or JSON file (``kind``, else by suffix; an empty file is ``{}``).

    Raises ``error`` naming the file for an unknown suffix, a syntax error (with its
    line) or a top level that is not a mapping (a list, a single value).
    """
    path = Path(path)
    kind = kind or FORMATS.get(path.suffix.lower())
    if kind is None:
        raise error(f"{path}: unknown file type {path.suffix!r}; use {', '.join(FORMATS)}")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file (expected {kind})") from None
    return parse_mapping(text, kind, str(path), error)


def parse_mapping(text: str, kind: str, source: str, error: type[ValueError] = ValueError) -> dict[str, Any]:
    """The mapping in ``text`` of ``kind`` TOML, YAML or JSON; errors start with ``source``."""
    try:
        data = tomllib.loads(text) if kind == "TOML" else yaml.safe_load(text) if kind == "YAML" else json.loads(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        raise error(f"{source}: not valid YAML: {err.problem} (at line {mark.line + 1}, column {mark.column + 1})") from None
    except (ValueError, yaml.YAMLError) as err:
        raise error(f"{source}: not valid {kind}: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{source}: expected a mapping (name = value pairs) at the top, got a {type(data).__name__}")
    return data


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``algorithm`` as hashlib names it), read in blocks."""
    digest = hashlib.new(algorithm, usedforsecurity=False)  # integrity, not secrecy: md5 works in FIPS mode too
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in blocks."""
    return file_digest(path, "sha256")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write into; renamed onto ``path`` when the block ends without error.

    A crash leaves the old file or the new one, whole: an error in the block removes the
    temporary file, and a killed process leaves ``<name>.tmp`` (:data:`TMP_SUFFIX`) for the
    command that owns the folder to remove. The file gets the mode ``open(path, "w")`` would
    give it (0666 less the umask) whatever the writer chose: safetensors, for one, writes
    0600, which a colleague sharing the model could not read.

    Example:
        >>> with atomic_path("table.parquet") as tmp:  # doctest: +SKIP
        ...     pq.write_table(table, tmp)
    """
    tmp = temporary_path(path)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    put_in_place(tmp, path)


def temporary_path(path: str | Path) -> Path:
    """Where ``path`` is written before it is put in place: ``<name>.tmp`` beside it (one file system)."""
    path = Path(path)
    return path.with_name(path.name + TMP_SUFFIX)


def put_in_place(written: str | Path, path: str | Path) -> None:
    """Rename the finished file ``written`` onto ``path`` (atomic on one file system), with the mode a new
    file gets under the umask, as with :func:`atomic_path`."""
    os.chmod(written, 0o666 & ~_umask())
    os.replace(written, path)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _umask() -> int:
    """The process's umask (it can only be read by setting it, so it is set back at once)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask
