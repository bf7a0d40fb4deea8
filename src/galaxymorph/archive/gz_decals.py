"""GZD-5's volunteer table (GZ DECaLS, Walmsley et al. 2022) as a ``gz_decals_dr5`` catalogue.

The table has one row per galaxy, named by ``iauname`` (``J100620.35+101629.1``), and
one count per answer named ``{question}_{answer}`` (``smooth-or-featured_smooth``),
beside ``_fraction``, ``_debiased`` and ``_total-votes`` columns that are not needed
here: the columns zoobot's data release notebook reads
(``gz_decals_data_release_analysis_demo.ipynb``). galaxy-datasets' copies of the table
append the campaign to each question (``smooth-or-featured-dr5_smooth``,
``galaxy_datasets/shared/label_metadata.py``); both spellings are read. Images are
found by name (``<iauname>.png`` or ``.jpg``) anywhere under the images folder: the
release files them in folders named by the first four characters of ``iauname``
(``J100/J100620.35+101629.1.png``; ``replication/notebooks/gz_decals_dr5_split.ipynb``
in galaxy-datasets), which the search does not depend on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from galaxymorph.data.catalogue import read_table, vote_columns
from galaxymorph.outputs import claim_file, claim_table
from galaxymorph.schema import get_schema

__all__ = ["ID_COLUMN", "gz_decals_catalogue", "image_index", "missing_images_path"]

SCHEMA = "gz_decals_dr5"
ID_COLUMN = "iauname"
CAMPAIGN = "-dr5"  # galaxy-datasets' "ortho" spelling: the campaign after the question
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_META_KEY = b"galaxymorph"


def missing_images_path(out: Path) -> Path:
    """Where the galaxies left out for want of an image are listed, beside the catalogue."""
    return out.with_name(out.stem + ".missing_images.csv")


def image_index(folder: str | Path) -> dict[str, Path]:
    """Image file stem -> path, for every PNG/JPEG under ``folder`` (the first in sorted order on a repeat)."""
    index: dict[str, Path] = {}
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in IMAGE_SUFFIXES:
                index.setdefault(stem, Path(root) / name)
    return index


def gz_decals_catalogue(table: str | Path, images: str | Path, out: str | Path) -> pd.DataFrame:
    """GZD-5 volunteer votes + image folder -> ``out``, a ``gz_decals_dr5`` catalogue (Parquet); returns it.

    ``id_str`` is ``iauname``; ``file_loc`` is relative to ``out``'s folder when the image
    lies under it. Galaxies without an image are left out of the catalogue and listed,
    with the name searched for, in :func:`missing_images_path` (``<out>.missing_images.csv``).

    Raises:
        ValueError: ``table`` lacks ``iauname`` or an answer's count, or ``out`` is a file
            this function did not write.
    """
    out = Path(out)
    claim_file(out, is_own=out.is_file() and _is_converted(out))
    claim_table(missing_images_path(out), ["id_str", "reason"])
    frame, _ = read_table(table)
    sources = _vote_sources(list(frame.columns), table)
    ids = frame[ID_COLUMN].astype(str)
    found = image_index(Path(images).resolve())
    base = out.resolve().parent
    paths = ids.map(lambda name: found.get(name))
    has_image = paths.notna()

    def location(path: Path) -> str:
        return os.path.relpath(path, base) if base in path.parents else str(path)

    catalogue = pd.concat(
        [pd.DataFrame({"id_str": ids[has_image], "file_loc": paths[has_image].map(location)}),
         frame.loc[has_image, list(sources)].rename(columns=sources).astype("float32")],
        axis=1,
    ).reset_index(drop=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    missing = pd.DataFrame({"id_str": ids[~has_image],
                            "reason": f"no {ID_COLUMN}.png or .jpg of this name under {images}"})
    missing.to_csv(missing_images_path(out), index=False)
    meta = {_META_KEY: json.dumps({"schema": SCHEMA, "table": Path(table).name}).encode()}
    arrow = pa.Table.from_pandas(catalogue, preserve_index=False)
    pq.write_table(arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **meta}), out)
    catalogue.attrs["missing_images"] = int((~has_image).sum())
    return catalogue


def _vote_sources(columns: list[str], table: str | Path) -> dict[str, str]:
    """The table's column for each answer of the tree (either spelling) -> the answer's catalogue column."""
    have = set(columns)
    if ID_COLUMN not in have:
        raise ValueError(f"{table}: no {ID_COLUMN!r} column; is this GZD-5's volunteer table "
                         "(gz_decals_volunteers_5)?")
    sources = {}
    for answer in vote_columns(get_schema(SCHEMA)):
        question, _, choice = answer.partition("_")
        spellings = (answer, f"{question}{CAMPAIGN}_{choice}")
        source = next((s for s in spellings if s in have), None)
        if source is None:
            raise ValueError(f"{table}: no column {spellings[0]!r} (nor {spellings[1]!r}), the count of volunteers "
                             f"answering {choice!r} to {question!r}; is this GZD-5's volunteer table?")
        sources[source] = answer
    return sources


def _is_converted(path: Path) -> bool:
    """A catalogue this module wrote (its Parquet footer says so), so it may be rewritten."""
    try:
        return _META_KEY in (pq.read_schema(path).metadata or {})
    except (OSError, pa.ArrowException):
        return False
