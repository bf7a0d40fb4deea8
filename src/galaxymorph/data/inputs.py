"""The galaxies to predict, embed or fine-tune on, read as in training: one stack for every command.

A folder of images (``id_str`` = file name without suffix, searched recursively), a
catalogue (``id_str`` + ``file_loc``, relative to its folder) or shards give records
``(id_str, image path or raw shard sample)``; :class:`GalaxyStream` reads them with the
model's preprocessing, each (process, loader worker) taking every k-th pending record,
and reports unreadable images instead of stopping.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import IterableDataset, get_worker_info

from galaxymorph.data.catalogue import read_table, resolve_paths, unique_ids
from galaxymorph.data.images import IMAGE_SUFFIXES
from galaxymorph.data.shards import decode_sample, read_manifest, shard_paths
from galaxymorph.data.transforms import Preprocessing

__all__ = ["GalaxyStream", "Record", "Records", "catalogue_records", "collate_galaxies", "describe_inputs", "directory_records", "image_paths",
           "prediction_records",
           "shard_records"]

Record = tuple[str, Any]  # (id_str, image path, uint8 array (H, W, C) or raw shard sample)


def catalogue_records(catalogue: str | Path | pd.DataFrame, root: str | Path | None = None) -> list[Record]:
    """(id_str, absolute image path) from a catalogue; relative ``file_loc`` is relative to its folder."""
    if isinstance(catalogue, pd.DataFrame):
        frame, base, name = catalogue, Path(root or Path.cwd()), "catalogue"
    else:
        frame, path = read_table(catalogue)
        base, name = Path(root) if root else path.parent, str(path)
    missing = sorted({"id_str", "file_loc"} - set(frame.columns))
    if missing:
        raise ValueError(f"{name} has no column(s) {missing}; it needs id_str and file_loc (image path) per galaxy")
    return list(zip(unique_ids(frame, name), resolve_paths(frame["file_loc"].astype(str), base)))


def image_paths(frame: pd.DataFrame, catalogue: str | Path | None = None) -> list[str | None]:
    """Each row's image file: its ``file_loc``, or the catalogue's for its ``id_str`` (None where it has none).

    Outputs made from shards carry no ``file_loc``; a queue for volunteers or a
    picture of galaxies needs the images, which the data owner's catalogue names.
    """
    if catalogue is None:
        return [f if isinstance(f, str) and f else None for f in frame["file_loc"]]
    files = dict(catalogue_records(catalogue))
    return [files.get(id_str) for id_str in frame["id_str"]]


def directory_records(images_dir: str | Path) -> list[Record]:
    """(file name without suffix, path) for every PNG/JPEG/FITS file under ``images_dir``."""
    root = Path(images_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"--images {root}: no such folder")
    records: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        name = path.name.lower()
        suffix = next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)
        if suffix is None or not path.is_file():
            continue
        id_str = path.name[: -len(suffix)]
        if id_str in records:
            raise ValueError(f"two images share the id {id_str!r}: {records[id_str]} and {path}; rename one")
        records[id_str] = str(path)
    if not records:
        raise FileNotFoundError(f"--images {root}: no {', '.join(IMAGE_SUFFIXES)} files found")
    return list(records.items())


def shard_records(shards: str | Path, split: str | None = None) -> Iterator[Record]:
    """(id_str, raw shard sample) from the data owner's shards: one split, or all of them."""
    import webdataset as wds

    manifest = read_manifest(shards)
    for name in [split] if split else list(manifest["splits"]):
        urls = shard_paths(shards, name, manifest)
        if urls:  # this stream splits work itself, so webdataset must not split by node or worker
            for sample in wds.WebDataset(urls, shardshuffle=False, nodesplitter=None, workersplitter=None):
                yield sample["id.txt"].decode(), sample


def _check_shard_pixels(shards: str | Path, preprocessing: dict[str, Any]) -> None:
    """Shards hold pixels read one way; a model trained on others would be fed the wrong images."""
    stored = Preprocessing.from_dict(read_manifest(shards)["preprocessing"])
    model = Preprocessing.from_dict(preprocessing)
    for name in ("stored_size", "source_crop", "channels", "stretch"):
        if getattr(stored, name) != getattr(model, name):
            raise ValueError(
                f"--shards {shards} hold images with {name}={getattr(stored, name)!r}, but the model was trained on "
                f"{name}={getattr(model, name)!r}; predict from the catalogue (--catalog) instead, or make shards "
                "with the model's settings"
            )


def describe_inputs(images_dir: str | Path | None, catalogue: str | Path | None,
                    shards: str | Path | None) -> dict[str, str]:
    """Which input an output was made from, for its metadata."""
    given = {"images": images_dir, "catalogue": catalogue, "shards": shards}
    return {name: str(value) for name, value in given.items() if value is not None}


def prediction_records(images_dir: str | Path | None, catalogue: str | Path | None, shards: str | Path | None,
                       split: str | None, preprocessing: dict[str, Any]) -> Records:
    """The galaxies to predict or embed: exactly one of a folder of images, a catalogue or shards.

    Returns a picklable callable (spawned processes and loader workers call it).
    """
    given = [x for x in (images_dir, catalogue, shards) if x is not None]
    if len(given) != 1:
        raise ValueError("give exactly one input: images_dir (--images), catalogue (--catalog) or shards (--shards)")
    if images_dir is not None:
        return Records(listed=directory_records(images_dir))
    if catalogue is not None:
        return Records(listed=catalogue_records(catalogue))
    _check_shard_pixels(shards, preprocessing)
    if split is not None:
        shard_paths(shards, split)  # an unknown split is refused here, naming the ones there are
    return Records(shards=shards, split=split)


@dataclasses.dataclass(frozen=True)
class Records:
    """The records callable of :func:`prediction_records` that also knows, before streaming, how many are pending.

    A folder's or catalogue's records are listed already; shards are counted from their manifest.
    """

    listed: list[Record] | None = None
    shards: str | Path | None = None
    split: str | None = None

    def __call__(self) -> Iterable[Record]:
        return self.listed if self.listed is not None else shard_records(self.shards, self.split)

    def pending(self, done: Collection[str]) -> int:
        """How many records are not in ``done`` (for shards: every galaxy of the split(s) less those done)."""
        if self.listed is not None:
            return sum(1 for id_str, _ in self.listed if id_str not in done)
        splits = read_manifest(self.shards)["splits"]
        return max(0, sum(splits[name]["count"] for name in ([self.split] if self.split else splits)) - len(done))


class GalaxyStream(IterableDataset):
    """Images to predict, read as in training; each (process, loader worker) takes every k-th pending record.

    ``records`` is a picklable callable returning an iterable of :data:`Record`,
    so a generator of any length streams without being held in memory.
    """

    def __init__(self, records: Callable[[], Iterable[Record]], preprocessing: dict[str, Any],
                 skip: frozenset[str] = frozenset(), rank: int = 0, world: int = 1):
        self.records, self.preprocessing, self.skip = records, preprocessing, skip
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        slot, stride = self.rank * workers + worker, self.world * workers
        pending = (r for r in self.records() if r[0] not in self.skip)
        for i, (id_str, source) in enumerate(pending):
            if i % stride == slot:
                yield self._load(id_str, source)

    def _load(self, id_str: str, source: Any) -> dict[str, Any]:
        prep = self.preprocessing
        file_loc = source if isinstance(source, str) else None
        try:
            if isinstance(source, str):
                pixels = Preprocessing.from_dict(prep).read(source)
            else:
                pixels = decode_sample(source)["image"] if isinstance(source, dict) else np.asarray(source, np.uint8)
                pixels = pixels[..., None] if pixels.ndim == 2 else pixels
            image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)
            return {"id_str": id_str, "file_loc": file_loc, "image": image, "error": None}
        except (ValueError, OSError) as err:
            return {"id_str": id_str, "file_loc": file_loc, "image": None, "error": str(err).splitlines()[0]}


def collate_galaxies(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack readable images; keep unreadable ones aside as (id, file, reason)."""
    good = [x for x in items if x["error"] is None]
    return {
        "id_str": [x["id_str"] for x in good],
        "file_loc": [x["file_loc"] for x in good],
        "image": torch.stack([x["image"] for x in good]) if good else None,
        "errors": [(x["id_str"], x["file_loc"] or "", x["error"]) for x in items if x["error"] is not None],
    }

