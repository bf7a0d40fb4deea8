"""Decode every image once into WebDataset tar shards of uint8 pixels, votes and ``id_str``.

Layout of a shard directory::

    manifest.json              schema, preprocessing, splits (shard names, counts, sha256)
    train-000000.tar ...       WebDataset tars; sample = image.npy (uint8 HWC), votes.npy
                               (float32, NaN = question not provided), id.txt, and with a
                               size crop crop.json (what it measured and applied)
    train-000000.json ...      per-shard record (count, sha256, skipped), written just
                               before its tar is renamed into place
    plan.json                  what this directory is being built from (guards resumption)

Splits come from a hash of ``(seed, id_str)``, so a galaxy keeps its split
whatever the catalogue order and however many galaxies are added, and (ids
being unique) no galaxy is in two splits. Galaxies are ordered by that hash
inside a split, which scatters neighbours of the catalogue across shards.

A size crop or photometric normalisation whose numbers come from the training galaxies
(:attr:`Preprocessing.needs_fitting`) is fitted on the first :data:`FIT_GALAXIES` of the
training split (in hash order, so a re-run fits the same numbers) before any shard is
written; the manifest holds the fitted preprocessing.

Resuming: a shard is written to ``*.tmp`` and renamed only when complete, so
after a kill the re-run keeps complete shards, rewrites the rest, and never
duplicates a galaxy. Raw ``.npy`` pixels are stored rather than PNG because
reading them costs a memcpy instead of a decode (see BENCHMARKS.md, ``data``).
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import pandas as pd
import webdataset as wds
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from galaxymorph.data.catalogue import (
    CatalogueError,
    read_catalogue,
    vote_columns,
    write_report,
)
from galaxymorph.data.images import ImageReadError
from galaxymorph.data.normalise import CropRecord
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.files import TMP_SUFFIX, atomic_write_text, file_sha256, put_in_place, temporary_path
from galaxymorph.outputs import claim_folder
from galaxymorph.schema import Schema, get_schema

__all__ = [
    "SPLITS", "assign_splits", "check_shards_per_process", "decode_sample", "is_shard_source", "read_manifest",
    "shard_files", "shard_paths", "write_shards",
]

SPLITS = ("train", "val", "test")
PROBLEMS_FILE = "catalogue.problems.csv"
FORMAT = "galaxymorph-shards/1"
FIT_GALAXIES = 256  # training galaxies the size crop's multiple and the photometric levels are fitted on


def _unit_hash(id_str: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}\x00{id_str}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(ids: list[str] | pd.Series, seed: int, val_fraction: float, test_fraction: float) -> np.ndarray:
    """Split name per id, from a hash of ``(seed, id_str)``: stable under reordering and additions."""
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(f"need val_fraction, test_fraction >= 0 with sum < 1, got {val_fraction}, {test_fraction}")
    u = np.array([_unit_hash(str(i), seed) for i in ids])
    return np.where(u < test_fraction, "test", np.where(u < test_fraction + val_fraction, "val", "train"))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _decode_job(job: tuple[str, Preprocessing]) -> tuple[tuple[np.ndarray, CropRecord | None] | None, str | None]:
    path, prep = job
    try:
        return prep.read_measured(path), None
    except ImageReadError as err:
        return None, str(err)


def _plan(df: pd.DataFrame, seed: int, val_fraction: float, test_fraction: float, shard_size: int) -> dict[str, list[np.ndarray]]:
    """Split -> list of shards, each an array of catalogue row positions (hash order)."""
    split = assign_splits(df["id_str"], seed, val_fraction, test_fraction)
    order = np.argsort([_unit_hash(i, seed + 1) for i in df["id_str"]], kind="stable")
    plan = {}
    for name in SPLITS:
        rows = order[split[order] == name]
        plan[name] = [rows[i : i + shard_size] for i in range(0, len(rows), shard_size)]
    return plan


def _shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def _own_files(out: Path, suffix: str) -> list[Path]:
    """The shard tars and records (``train-000000.tar``, ``.json``, with ``suffix``) in ``out``: all this command deletes."""
    digits = "[0-9]" * 6
    return [p for split in SPLITS for ext in (".tar", ".json") for p in out.glob(f"{split}-{digits}{ext}{suffix}")]


def _check_plan(out: Path, description: dict[str, Any], overwrite: bool) -> None:
    """Refuse to resume into a directory built from another catalogue or other settings."""
    plan_file = out / "plan.json"
    text = json.dumps(description, sort_keys=True, indent=1)
    if plan_file.exists() and plan_file.read_text() != text:
        if not overwrite:
            raise ValueError(
                f"{out} holds shards built from a different catalogue or settings (see {plan_file}); "
                "use a new --out directory, or --overwrite to rebuild it"
            )
        for stale in [*_own_files(out, ""), out / "manifest.json"]:
            stale.unlink(missing_ok=True)
    atomic_write_text(plan_file, text)


def _pool(workers: int):
    method = "fork" if sys.platform == "linux" else None  # the worker needs PIL only; fork avoids re-imports
    return multiprocessing.get_context(method).Pool(workers)


def write_shards(
    catalogue: str | Path | pd.DataFrame,
    schema: Schema | str,
    out_dir: str | Path,
    preprocessing: Preprocessing | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    workers: int | None = None,
    shard_size: int = 1000,
    on_error: Literal["raise", "skip"] = "raise",
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Validate a catalogue, decode each image once and write train/val/test shards + manifest.

    ``preprocessing`` fixes ``stored_size``, ``source_crop``, ``channels`` and the FITS
    ``stretch`` of the stored pixels (the rest is recorded as the default for training). Resumable: re-running
    with the same arguments finishes an interrupted run. Returns the manifest.
    """
    schema = get_schema(schema) if isinstance(schema, str) else schema
    prep = preprocessing or Preprocessing()
    out = Path(out_dir)
    claim_folder(out, "plan.json", own_files=(PROBLEMS_FILE,))
    df = read_catalogue(catalogue, schema, on_error=on_error, report_path=out / PROBLEMS_FILE)
    if df.empty:  # on_error="skip" left nothing
        raise CatalogueError(f"every row of {catalogue} has a problem (listed in {out / PROBLEMS_FILE}): nothing to shard")
    plan = _plan(df, seed, val_fraction, test_fraction, shard_size)
    if prep.needs_fitting:
        train_rows = np.concatenate(plan["train"])[:FIT_GALAXIES] if plan["train"] else []
        prep = prep.fitted(df["file_loc"].iloc[train_rows].tolist())
    normalised = {k: v for k, v in prep.to_dict().items() if k in ("size_crop", "photometry")}
    description = {
        "schema": schema.to_dict(),
        "pixels": {"stored_size": prep.stored_size, "source_crop": prep.source_crop, "channels": prep.channels,
                   # plans made before readers or normalisations still resume
                   **({"reader": prep.reader} if prep.reader != "galaxymorph" else {}),
                   **normalised},
        "stretch": vars(prep.stretch),
        "seed": seed,
        "shards": {
            _shard_name(s, i): hashlib.sha256("\n".join(df["id_str"].iloc[rows]).encode()).hexdigest()
            for s, shards in plan.items()
            for i, rows in enumerate(shards)
        },
    }
    out.mkdir(parents=True, exist_ok=True)  # only now: a refused catalogue or setting leaves no empty --out
    _check_plan(out, description, overwrite)
    for tmp in [*_own_files(out, TMP_SUFFIX), out / ("manifest.json" + TMP_SUFFIX), out / ("plan.json" + TMP_SUFFIX)]:
        tmp.unlink(missing_ok=True)  # leftovers of a killed run
    todo = [(s, i, rows) for s, shards in plan.items() for i, rows in enumerate(shards) if not _is_complete(out, s, i)]
    _write_todo(df, schema, out, prep, todo, workers or os.cpu_count() or 1, on_error, progress)
    return _write_manifest(out, schema, prep, plan, df, seed, val_fraction, test_fraction)


def _is_complete(out: Path, split: str, index: int) -> bool:
    name = _shard_name(split, index)
    return (out / name).exists() and (out / name.replace(".tar", ".json")).exists()


def _write_todo(df, schema, out, prep, todo, workers, on_error, progress) -> None:
    votes = df[vote_columns(schema)].to_numpy(np.float32)
    ids = df["id_str"].tolist()
    paths = df["file_loc"].tolist()
    jobs = [(paths[r], prep) for _, _, rows in todo for r in rows]
    if not jobs:
        return
    bar = Progress(TextColumn("sharding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=not progress)
    pool = _pool(workers) if workers > 1 else None
    failed: list[tuple[int, str, str]] = []
    try:
        decoded: Iterator = pool.imap(_decode_job, jobs, chunksize=8) if pool else map(_decode_job, jobs)
        with bar:
            task = bar.add_task("images", total=len(jobs))
            for split, index, rows in todo:
                failed += _write_one(out, split, index, rows, decoded, ids, votes, on_error, bar, task)
    finally:
        if pool:
            pool.terminate()
    if failed:
        write_report(failed, out / PROBLEMS_FILE)
        row, id_str, reason = failed[0]
        raise CatalogueError(
            f"row {row} id_str={id_str}: {reason} ({len(failed)} image(s) could not be decoded, all listed in "
            f"{out / PROBLEMS_FILE}); fix or remove them, or pass on_error='skip' (--on-error skip) to leave them "
            "out; the shards without them are kept, so the same command resumes"
        )


def _write_one(out, split, index, rows, decoded, ids, votes, on_error, bar, task) -> list[tuple[int, str, str]]:
    """Write one shard; returns its undecodable rows when ``on_error`` is "raise" (the shard is then not kept).

    Raise mode decodes on to the end, so that every undecodable image is listed at once.
    """
    name = _shard_name(split, index)
    tmp = temporary_path(out / name)
    skipped, failed, count = [], [], 0
    with wds.TarWriter(str(tmp), encoder=False, mtime=0) as sink:  # fixed mtime: byte-identical re-runs
        for r in rows:
            read, error = next(decoded)
            bar.advance(task)
            if error:
                (failed if on_error == "raise" else skipped).append((int(r), ids[r], error))
                continue
            pixels, crop = read
            sink.write({
                "__key__": f"{count:06d}",
                "image.npy": _npy_bytes(pixels),
                "votes.npy": _npy_bytes(votes[r]),
                "id.txt": ids[r].encode(),
                **({"crop.json": json.dumps(crop.to_dict()).encode()} if crop else {}),
            })
            count += 1
    if failed:
        tmp.unlink()
        return failed
    record = {"count": count, "sha256": file_sha256(tmp), "skipped": [{"id_str": i, "reason": e} for _, i, e in skipped]}
    atomic_write_text(out / name.replace(".tar", ".json"), json.dumps(record))
    put_in_place(tmp, out / name)  # last: a tar with its record beside it is complete
    return []


def _write_manifest(out, schema, prep, plan, df, seed, val_fraction, test_fraction) -> dict[str, Any]:
    splits, skipped = {}, list(df.attrs.get("skipped", []))  # catalogue problems, with their row
    for split, shards in plan.items():
        entries = []
        for index in range(len(shards)):
            name = _shard_name(split, index)
            record = json.loads((out / name.replace(".tar", ".json")).read_text())
            skipped.extend(record["skipped"])
            entries.append({"name": name, "count": record["count"], "sha256": record["sha256"]})
        splits[split] = {"count": sum(e["count"] for e in entries), "shards": entries}
    if skipped:
        write_report([(s.get("row", ""), s["id_str"], s["reason"]) for s in skipped], out / "skipped.csv")
    manifest = {
        "format": FORMAT,
        "schema": schema.to_dict(),
        "preprocessing": prep.to_dict(),
        "split": {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction, "method": "sha256(seed, id_str)"},
        "splits": splits,
        "sample": {"image.npy": "uint8 (H, W, C)", "votes.npy": "float32 (answers,), NaN = not provided", "id.txt": "id_str"},
        "skipped": skipped,
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1))
    return manifest


def _is_url(source: str | Path) -> bool:
    return "://" in str(source) or str(source).startswith("pipe:")


def _location(source: str | Path, name: str) -> str:
    """Where file ``name`` of a shard source lives: a folder, a base URL, or a ``{name}`` template.

    A template such as ``pipe:aws s3 cp s3://bucket/gz2/{name} -`` lets webdataset stream
    from storage that has no URL scheme of its own; a base URL (``https://...``, ``gs://...``)
    gets ``/name`` appended.
    """
    text = str(source)
    if "{name}" in text:
        return text.replace("{name}", name)
    if _is_url(text):
        return f"{text.rstrip('/')}/{name}"
    return str(Path(text) / name)


def is_shard_source(source: str | Path) -> bool:
    """True for a shard folder holding ``manifest.json``, or any URL (checked when its manifest is read)."""
    return _is_url(source) or Path(source, "manifest.json").is_file()


def read_manifest(shard_dir: str | Path) -> dict[str, Any]:
    """The manifest of a shard folder or URL (schema dict, preprocessing dict, splits, checksums)."""
    location = _location(shard_dir, "manifest.json")
    if _is_url(shard_dir):
        try:
            with wds.gopen(location) as stream:
                text = stream.read().decode()
        except Exception as error:  # curl / gsutil / pipe failures come as assorted exception types
            raise FileNotFoundError(f"could not read {location}: {error}") from None
    elif Path(location).is_file():
        text = Path(location).read_text()
    else:
        raise FileNotFoundError(f"{location} not found: is {shard_dir} a finished shard directory? (run `galaxymorph shard`)")
    manifest = json.loads(text)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{location}: unknown shard format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def shard_files(shard_dir: str | Path, split: str, manifest: dict[str, Any] | None = None) -> list[tuple[str, int]]:
    """(path or URL, galaxies) of a split's non-empty shards: readers share them out by these counts."""
    manifest = manifest or read_manifest(shard_dir)
    if split not in manifest["splits"]:
        raise KeyError(f"no split {split!r} in {shard_dir}; have {sorted(manifest['splits'])}")
    return [(_location(shard_dir, s["name"]), s["count"]) for s in manifest["splits"][split]["shards"] if s["count"] > 0]


def shard_paths(shard_dir: str | Path, split: str, manifest: dict[str, Any] | None = None) -> list[str]:
    """Paths or URLs of a split's non-empty shards (WebDataset URLs)."""
    return [location for location, _ in shard_files(shard_dir, split, manifest)]


def check_shards_per_process(split: str, shards: int, world: int) -> None:
    """Splits are shared between processes by whole shards: one without a shard would wait forever or train on nothing."""
    if shards == 0:  # no --shard-size can help: the split holds no galaxy
        larger = {"train": "smaller --val-fraction and --test-fraction"}.get(split, f"a larger --{split}-fraction")
        raise ValueError(f"the {split} split has no galaxies: shard a catalogue with more galaxies, or with {larger}")
    if shards < world:
        raise ValueError(
            f"the {split} split has {shards} shard(s) for {world} processes; remake the shards with a "
            f"smaller --shard-size (each process needs at least one, so the split at least {world} galaxies) "
            "or use fewer --devices"
        )


def decode_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """A raw WebDataset sample (bytes) -> ``{"image": uint8 HWC, "votes": float32, "id_str": str}``, and
    ``"crop"`` (:class:`CropRecord`) from shards made with a size crop."""
    decoded = {
        "image": np.load(io.BytesIO(sample["image.npy"]), allow_pickle=False),
        "votes": np.load(io.BytesIO(sample["votes.npy"]), allow_pickle=False),
        "id_str": sample["id.txt"].decode(),
    }
    if "crop.json" in sample:
        decoded["crop"] = CropRecord.from_dict(json.loads(sample["crop.json"]))
    return decoded
