"""The galaxies to predict, embed or fine-tune on, read as in training: one stack for every command.

A folder of images (``id_str`` = file name without suffix, searched recursively), a
catalogue (``id_str`` + ``file_loc``, relative to its folder) or shards give
:class:`Records` ``(id_str, absolute image path or raw shard sample)``; :class:`GalaxyStream` reads
them with the model's preprocessing and reports unreadable images instead of stopping.

The records are split once between the (process, loader worker) slots, so what each
slot reads does not grow with the number of slots: a listed folder or catalogue is
sliced, and shard files go whole to slots (shard j to slot j mod slots) when there are
at least as many shards as slots; with fewer, the slots sharing a shard take every g-th
sample of it, so each shard is opened by as few slots as possible. The split depends
only on the records and the number of slots, never on what is already done, so a
resumed run (done ids skipped) still reads every galaxy exactly once. Any other records
callable (a generator) can only be walked by every slot, each keeping every k-th record.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import IterableDataset, get_worker_info

from galaxymorph.data.catalogue import image_files, read_table
from galaxymorph.data.images import IMAGE_SUFFIXES
from galaxymorph.data.shards import decode_sample, read_manifest, shard_files
from galaxymorph.data.transforms import Preprocessing

__all__ = ["GalaxyStream", "Record", "Records", "ShardFile", "catalogue_records", "collate_galaxies", "describe_inputs",
           "directory_records", "image_paths", "loader_slots", "prediction_records", "shard_share", "worker_share"]

Record = tuple[str, Any]  # (id_str, image path, uint8 array (H, W, C) or raw shard sample)


def catalogue_records(catalogue: str | Path | pd.DataFrame, root: str | Path | None = None) -> list[Record]:
    """(id_str, absolute image path) from a catalogue; relative ``file_loc`` is relative to its folder.

    An empty catalogue, or a row without an id or an image path, is refused naming the row.
    """
    frame, path = read_table(catalogue)
    base = Path(root) if root else (path.parent if path else Path.cwd())
    name = str(path) if path else "catalogue"
    missing = sorted({"id_str", "file_loc"} - set(frame.columns))
    if missing:
        raise ValueError(f"{name} has no column(s) {missing}; it needs id_str and file_loc (image path) per galaxy")
    return image_files(frame, base, name)


def image_paths(frame: pd.DataFrame, catalogue: str | Path | None = None) -> list[str | None]:
    """Each row's image file: its own ``file_loc``; or, given a catalogue, the catalogue's for its ``id_str``
    (None where the catalogue has no row for it). The one way outputs find their images.

    Outputs made from shards carry no ``file_loc``, and those of older versions a path
    relative to the folder they were made in; a queue for volunteers or a picture of
    galaxies needs the images, which the data owner's catalogue names.
    """
    if catalogue is None:
        return [f if isinstance(f, str) and f else None for f in frame["file_loc"]]
    files = dict(catalogue_records(catalogue))
    return [files.get(id_str) for id_str in frame["id_str"]]


def directory_records(images_dir: str | Path) -> list[Record]:
    """(file name without suffix, absolute path) for every PNG/JPEG/FITS file under ``images_dir``."""
    root = Path(images_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"--images {root}: no such folder")
    records: dict[str, str] = {}
    for path in sorted(root.absolute().rglob("*")):
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


def loader_slots(rank: int, world: int, workers: int) -> tuple[range, int]:
    """The (process, loader worker) slots of process ``rank`` and how many there are in all.

    Loader worker w of process r is slot w * world + r (worker-major), so that shards left
    over after an even split go to different processes, not all to the first one;
    ``workers`` 0 (the process reads itself, as for ``DataLoader``) is one slot.
    """
    slots = world * max(workers, 1)
    return range(rank, slots, world), slots


def shard_share(shards: int, slot: int, slots: int) -> list[tuple[int, int, int]]:
    """(shard index, first sample, step) of what ``slot`` of ``slots`` reads: each shard opened by as few slots as possible.

    Whole shards j = slot, slot + slots, ... when there are enough (or none); otherwise the
    slots s with s mod shards = j share shard j, each taking every g-th of its samples.
    """
    if shards >= slots or shards == 0:
        return [(j, 0, 1) for j in range(slot, shards, slots)]
    j = slot % shards
    return [(j, slot // shards, len(range(j, slots, shards)))]


def _shard_records(location: str, first: int, step: int) -> Iterator[Record]:
    """(id_str, raw sample) of every ``step``-th sample of one shard file from the ``first``."""
    import webdataset as wds

    # Records splits work itself, so webdataset must not split by node or worker
    samples = wds.WebDataset([location], shardshuffle=False, nodesplitter=None, workersplitter=None)
    for sample in itertools.islice(samples, first, None, step):
        yield sample["id.txt"].decode(), sample


def _check_shard_pixels(shards: str | Path, manifest: dict[str, Any], preprocessing: dict[str, Any]) -> None:
    """Shards hold pixels read one way; a model trained on others would be fed the wrong images."""
    stored = Preprocessing.from_dict(manifest["preprocessing"])
    model = Preprocessing.from_dict(preprocessing)
    for name in ("stored_size", "source_crop", "channels", "stretch", "reader", "size_crop", "photometry"):
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

    Returns a picklable callable (spawned processes and loader workers call it). An input
    without galaxies is refused here, before any output is claimed: there is nothing to write.
    """
    given = [x for x in (images_dir, catalogue, shards) if x is not None]
    if len(given) != 1:
        raise ValueError("give exactly one input: images_dir (--images), catalogue (--catalog) or shards (--shards)")
    if images_dir is not None:
        return Records(listed=directory_records(images_dir))
    if catalogue is not None:
        records = Records(listed=catalogue_records(catalogue))
    else:
        manifest = read_manifest(shards)  # once: the records carry what they need to every process and worker
        _check_shard_pixels(shards, manifest, preprocessing)
        records = Records.from_shards(shards, split, manifest)
    if not (records.listed or records.shards):
        where = f"--catalog {catalogue}" if catalogue is not None else f"--shards {shards}" + (f" --split {split}" if split else "")
        raise ValueError(f"{where} holds no galaxies: nothing to predict or embed")
    return records


ShardFile = tuple[str, int]  # (path or URL of a non-empty shard, its galaxies), from the manifest


@dataclasses.dataclass(frozen=True)
class Records:
    """Listed records (folder, catalogue) or shard files, of which each loader slot reads only its share.

    Picklable and small (shards are named, not read), so spawned processes and loader
    workers get it without reading the manifest again; it also knows, before streaming,
    how many records each slot will read (the progress bar's total).
    """

    listed: list[Record] | None = None
    shards: list[ShardFile] | None = None

    @classmethod
    def from_shards(cls, shards: str | Path, split: str | None = None,
                    manifest: dict[str, Any] | None = None) -> Records:
        """The shard files of one split or of all (an unknown split is refused, naming those there are)."""
        manifest = manifest or read_manifest(shards)
        names = [split] if split else list(manifest["splits"])
        return cls(shards=[file for name in names for file in shard_files(shards, name, manifest)])

    def __call__(self) -> Iterator[Record]:
        """Every record, in order (a records callable like any other)."""
        return self.share(0, 1)

    def share(self, slot: int, slots: int, skip: Collection[str] = frozenset()) -> Iterator[Record]:
        """The records not in ``skip`` that ``slot`` of ``slots`` reads (see the module docstring)."""
        if self.listed is not None:
            share: Iterable[Record] = self.listed[slot::slots]
        else:
            files = self.shards or []
            share = itertools.chain.from_iterable(
                _shard_records(files[j][0], first, step)
                for j, first, step in shard_share(len(files), slot, slots) if first < files[j][1]
            )
        return (record for record in share if record[0] not in skip)

    def pending(self, done: Collection[str], slot: int = 0, slots: int = 1) -> int:
        """How many records not in ``done`` ``slot`` of ``slots`` will read.

        Exact for listed records. Which shard holds a done galaxy is not known before reading,
        so a slot's shards are assumed to hold their share of ``done``: exact when nothing
        is done yet, or for a single slot.
        """
        if self.listed is not None:
            return sum(1 for id_str, _ in self.listed[slot::slots] if id_str not in done)
        files = self.shards or []
        total = sum(count for _, count in files)
        mine = sum(len(range(first, files[j][1], step)) for j, first, step in shard_share(len(files), slot, slots))
        return max(0, mine - round(len(done) * mine / total)) if total else 0


def worker_share(records: Callable[[], Iterable[Record]], rank: int = 0, world: int = 1,
                 skip: Collection[str] = frozenset()) -> Iterator[Record]:
    """The records not in ``skip`` that this loader worker (or the main process) of process ``rank`` reads.

    Call it inside a loader's ``__iter__``: the worker is torch's current one.
    """
    info = get_worker_info()
    mine, slots = loader_slots(rank, world, info.num_workers if info else 0)
    slot = mine[info.id if info else 0]
    if isinstance(records, Records):
        return records.share(slot, slots, skip)
    return itertools.islice((r for r in records() if r[0] not in skip), slot, None, slots)


class GalaxyStream(IterableDataset):
    """Images to predict, read as in training; each (process, loader worker) slot reads only its share of the records.

    ``records`` is :class:`Records`, or any picklable callable returning an iterable of
    :data:`Record` (a generator of any length streams without being held in memory, but
    every slot walks all of it, keeping every k-th pending record).
    """

    def __init__(self, records: Callable[[], Iterable[Record]], preprocessing: dict[str, Any],
                 skip: frozenset[str] = frozenset(), rank: int = 0, world: int = 1):
        self.records, self.preprocessing, self.skip = records, preprocessing, skip
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for id_str, source in worker_share(self.records, self.rank, self.world, self.skip):
            yield self._load(id_str, source)

    def _load(self, id_str: str, source: Any) -> dict[str, Any]:
        """The galaxy's stored pixels (C, H, W) and, with a size crop, what it did (``crop``), or the error."""
        prep = self.preprocessing
        file_loc = source if isinstance(source, str) else None
        crop = None
        try:
            if isinstance(source, str):
                pixels, crop = Preprocessing.from_dict(prep).read_measured(source)
            elif isinstance(source, dict):  # a shard sample: measured when the shard was written
                sample = decode_sample(source)
                pixels, crop = sample["image"], sample.get("crop")
            else:
                pixels = np.asarray(source, np.uint8)
            pixels = pixels[..., None] if pixels.ndim == 2 else pixels
            image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)
            return {"id_str": id_str, "file_loc": file_loc, "image": image, "crop": crop, "error": None}
        except (ValueError, OSError) as err:
            return {"id_str": id_str, "file_loc": file_loc, "image": None, "crop": None,
                    "error": str(err).splitlines()[0]}


def collate_galaxies(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack readable images; keep unreadable ones aside as (id, file, reason); ``crop``: each one's size-crop record
    (None without a size crop)."""
    good = [x for x in items if x["error"] is None]
    return {
        "id_str": [x["id_str"] for x in good],
        "file_loc": [x["file_loc"] for x in good],
        "image": torch.stack([x["image"] for x in good]) if good else None,
        "crop": [x["crop"] for x in good],
        "errors": [(x["id_str"], x["file_loc"] or "", x["error"]) for x in items if x["error"] is not None],
    }

