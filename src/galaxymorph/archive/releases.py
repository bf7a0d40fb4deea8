"""The public Galaxy Zoo releases on Zenodo that ``galaxymorph fetch`` knows by name.

A release names its record, which of the record's files it needs (patterns: the file
list and checksums themselves come from Zenodo at run time) and, where one exists,
how its votes become a catalogue our commands read.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Callable

import pandas as pd

from galaxymorph.archive.gz_decals import gz_decals_catalogue

__all__ = ["CATALOGUE", "RELEASES", "Release", "get_release"]

CATALOGUE = "catalogue.parquet"  # the converted catalogue, in the fetch folder

# GZD-5's volunteer table: `gz_decals_volunteers_5` in the record's later versions, `_c` (the third
# campaign) in its first, 4196267 (as astroNN's Galaxy10 DECaLS README lists it).
_GZD5_TABLES = ("gz_decals_volunteers_5.*", "gz_decals_volunteers_c.*")
_IMAGE_ARCHIVES = ("*.zip", "*.tar", "*.tar.gz", "*.tgz")


@dataclass(frozen=True)
class Release:
    """A record and what to take from it.

    Attributes:
        name: what ``galaxymorph fetch NAME`` calls it.
        record: the Zenodo record number (``--record`` fetches another version with the same rules).
        description: one line for ``--help`` and the docs.
        files: patterns of the record's files to fetch (all files when empty).
        convert: (folder, fetched files) -> the catalogue written there, or None.
        note: what the release needs that the record does not hold.
    """

    name: str
    record: int
    description: str
    files: tuple[str, ...] = ()
    convert: Callable[[Path, list[Path]], pd.DataFrame] | None = None
    note: str = ""


def _gz_decals_dr5(folder: Path, fetched: list[Path]) -> pd.DataFrame:
    """The GZD-5 volunteer table among ``fetched`` (Parquet before CSV) and the images under ``folder``."""
    tables = sorted((p for p in fetched if any(fnmatchcase(p.name, t) for t in _GZD5_TABLES)),
                    key=lambda p: (p.suffix != ".parquet", p.name))
    if not tables:
        raise ValueError(f"{folder}: no GZD-5 volunteer table ({' or '.join(_GZD5_TABLES)}) among the files "
                         "fetched; give --files so that it is one of them")
    return gz_decals_catalogue(tables[0], folder, folder / CATALOGUE)


RELEASES = {
    release.name: release
    for release in (
        Release(
            "gz_decals_dr5", 4196267,
            "GZ DECaLS GZD-5 volunteer votes and DECaLS DR5 images (Walmsley et al. 2022)",
            files=_GZD5_TABLES + _IMAGE_ARCHIVES,
            convert=_gz_decals_dr5,
        ),
        Release(
            "gz2", 3565489,
            "Galaxy Zoo 2 images of the original sample and their objid -> image mapping (Willett et al. 2013)",
            files=("images_gz2.zip", "gz2_filename_mapping.csv"),
            note="the votes (Hart et al. 2016, gz2_hart16.csv.gz) are not on Zenodo: download them from "
                 "https://data.galaxyzoo.org",
        ),
    )
}


def get_release(name: str) -> Release:
    """The release called ``name``; KeyError naming the known ones."""
    if name not in RELEASES:
        raise KeyError(f"unknown release {name!r}; known: {', '.join(RELEASES)} (or give --record NUMBER)")
    return RELEASES[name]
