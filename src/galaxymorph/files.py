"""Files read or checked byte for byte: the small ones people write by hand (decision trees,
settings), parsed with one error line naming the file, the sha256 that shards and models record,
and the md5 that Zenodo lists for its files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["FORMATS", "file_digest", "file_sha256", "parse_mapping", "read_mapping"]

FORMATS = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML", ".json": "JSON"}


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
