"""Bayesian predictions: the encoder once per galaxy, the Dirichlet head N times (MC dropout).

Dropout lives only in the head, so N posterior samples cost one encoder pass
plus N cheap head passes instead of N full forward passes.

Output: one Parquet file, one row per galaxy, readable without this package:

- ``id_str`` (string) and ``file_loc`` (string, null for shard input);
- ``conc:<answer>``: fixed-size list of float32, the Dirichlet concentration of
  that answer in each of the N MC-dropout samples (sample ``s`` of every answer
  column belongs to the same dropout mask);
- ``<answer>_fraction``, ``<answer>_q05``, ``<answer>_q95``: posterior mean vote
  fraction within the question and its 5% / 95% credible bounds (mixture over samples);
- ``<question>_asked``: probability that a volunteer is asked that question.

The file's metadata key ``galaxymorph`` holds JSON with the schema, the number of
samples and the preprocessing, so :func:`read_predictions` needs nothing else, and
``made_by``: the checkpoint, the sha256 of its weights and config, the samples and
the preprocessing (lists of checkpoints and sha256s for an ensemble, whose
``samples`` per model are stacked: the file holds samples x models). Every part carries it too, and a re-run with another model or
settings is refused instead of mixing two posteriors in one file.

Fine-tuned classification and regression models (``config["task"]``) get the
columns of :mod:`galaxymorph.models.finetune_outputs` instead: ``sample:<output>``
(the N MC-dropout samples) and their summaries (class probabilities with 5% / 95%
bounds and ``predicted_class``, or the value with its spread); the metadata holds
the task and outputs in place of the schema.

Streaming and resuming: each process appends batches (row groups) to part files
in ``<out>.parts/``; a part is written as ``.tmp`` and renamed when complete, so a
killed run loses at most one unfinished part. A re-run skips every id already in
a complete part (or in ``<out>``), then the parts are merged into ``<out>``
without duplicates. Images that cannot be read go to ``<out stem>.errors.csv``
(``id_str, file_loc, reason``) and are retried by the next run.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from filelock import FileLock, Timeout
from lightning import pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter, RichProgressBar
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from galaxymorph.data.catalog import read_table, resolve_paths, unique_ids
from galaxymorph.data.datamodule import IMAGE_SUFFIXES
from galaxymorph.data.shards import decode_sample, read_manifest, shard_paths
from galaxymorph.data.transforms import Preprocessing, eval_transform
from galaxymorph.models.checkpoint import fingerprint
from galaxymorph.models.finetune_model import load_any_model
from galaxymorph.models.finetune_outputs import SUMMARISED_TASKS, outputs_layout, outputs_table
from galaxymorph.outputs import claim_file
from galaxymorph.quiet import quiet_lightning
from galaxymorph.schema import Schema
from galaxymorph.stats import credible_intervals, expected_fractions, probability_asked

__all__ = [
    "Ensemble",
    "PartWriter",
    "catalogue_records",
    "directory_records",
    "check_output_file",
    "exclusive_writer",
    "load_checkpoint",
    "made_by",
    "predict",
    "prediction_records",
    "predict_records",
    "read_concentrations",
    "read_predictions",
    "shard_records",
]

META_KEY = b"galaxymorph"
ERROR_FIELDS = ("id_str", "file_loc", "reason")

Record = tuple[str, Any]  # (id_str, image path, uint8 array (H, W, C) or raw shard sample)
Checkpoints = Union[str, Path, nn.Module, Sequence[Union[str, Path, nn.Module]]]  # one model, or an ensemble's
TableBuilder = Callable[[Sequence[str], np.ndarray, Sequence[str | None]], pa.Table]  # (ids, samples, file_locs)


# --------------------------------------------------------------------------- output format
def arrow_schema(schema: Schema, samples: int, metadata: dict[str, Any]) -> pa.Schema:
    """The Parquet layout documented in the module docstring."""
    fields = [pa.field("id_str", pa.string()), pa.field("file_loc", pa.string())]
    fields += [pa.field(f"conc:{a}", pa.list_(pa.float32(), samples)) for a in schema.answers]
    fields += [pa.field(f"{a}_{stat}", pa.float32()) for a in schema.answers for stat in ("fraction", "q05", "q95")]
    fields += [pa.field(f"{q}_asked", pa.float32()) for q in schema.question_names]
    meta = {"schema": schema.to_dict(), "samples": samples, **metadata}
    return pa.schema(fields, metadata={META_KEY: json.dumps(meta).encode()})


def posterior_table(
    ids: Sequence[str], concentrations: np.ndarray, file_locs: Sequence[str | None], schema: Schema, layout: pa.Schema
) -> pa.Table:
    """One batch of rows: concentrations (galaxies, answers, samples) and their posterior summaries."""
    conc = np.asarray(concentrations, dtype=np.float32)
    fractions = expected_fractions(conc, schema)
    bounds = credible_intervals(conc, schema, (0.05, 0.95))
    asked = probability_asked(conc, schema)
    samples = conc.shape[2]
    columns: dict[str, Any] = {"id_str": list(ids), "file_loc": list(file_locs)}
    for i, a in enumerate(schema.answers):
        flat = pa.array(np.ascontiguousarray(conc[:, i, :]).reshape(-1), pa.float32())
        columns[f"conc:{a}"] = pa.FixedSizeListArray.from_arrays(flat, samples)
    for i, a in enumerate(schema.answers):
        columns[f"{a}_fraction"] = fractions[:, i].astype(np.float32)
        columns[f"{a}_q05"] = bounds[:, i, 0].astype(np.float32)
        columns[f"{a}_q95"] = bounds[:, i, 1].astype(np.float32)
    for q, name in enumerate(schema.question_names):
        columns[f"{name}_asked"] = asked[:, q].astype(np.float32)
    return pa.table({f.name: columns[f.name] for f in layout}, schema=layout)


def output_format(config: dict[str, Any], samples: int, metadata: dict[str, Any]) -> tuple[pa.Schema, TableBuilder]:
    """The Parquet layout of a model's predictions and the function that turns one batch of samples into rows.

    Dirichlet models (trained, or fine-tuned on a tree) get the posterior columns;
    fine-tuned classification / regression models the ``finetune_outputs`` columns.
    """
    if config.get("task") in SUMMARISED_TASKS:
        layout = outputs_layout(config, samples, metadata)
        return layout, functools.partial(outputs_table, config=config, layout=layout)
    schema = Schema.from_dict(config["schema"])
    layout = arrow_schema(schema, samples, metadata)
    return layout, functools.partial(posterior_table, schema=schema, layout=layout)


def read_predictions(path: str | Path) -> tuple[pd.DataFrame, Schema, dict[str, Any]]:
    """A Dirichlet model's predictions file as (DataFrame, schema, metadata)."""
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"null"))
    if not meta or not {"schema", "task"} & set(meta):
        raise ValueError(f"{path}: not a galaxymorph predictions file (no {META_KEY.decode()!r} metadata)")
    if "schema" not in meta:
        raise ValueError(f"{path}: predictions of a fine-tuned {meta.get('task')} model have no answer schema; "
                         "read them with pandas.read_parquet")
    return table.to_pandas(), Schema.from_dict(meta["schema"]), meta


def read_concentrations(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """The ``conc:<answer>`` columns of a predictions frame as float64 (galaxies, answers, samples)."""
    return np.stack([np.stack(frame[f"conc:{a}"].to_numpy()) for a in schema.answers], axis=1).astype(np.float64)


# --------------------------------------------------------------------------- part files
def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def errors_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".parquet") + ".errors.csv")


class PartWriter:
    """Streams Arrow tables (batches in ``layout``) into Parquet parts of at most ``rows_per_part`` rows.

    One row group per table. A part is written as ``.tmp`` and renamed only when
    closed, so every visible part is complete; memory holds one batch at a time.
    Predict and embed both write through it, each building its own tables.
    """

    def __init__(self, directory: Path, layout: pa.Schema, rank: int = 0, rows_per_part: int = 50_000):
        self.directory, self.layout = Path(directory), layout
        self.prefix = f"rank{rank:04d}-{uuid.uuid4().hex[:8]}"
        self.rows_per_part = rows_per_part
        self.directory.mkdir(parents=True, exist_ok=True)
        self._writer: pq.ParquetWriter | None = None
        self._rows = 0
        self._parts = 0
        self.rows_written = 0

    def write_table(self, table: pa.Table) -> None:
        if not len(table):
            return
        if self._writer is None:
            self._tmp = self.directory / f"{self.prefix}-{self._parts:05d}.parquet.tmp"
            self._writer = pq.ParquetWriter(self._tmp, self.layout)
        self._writer.write_table(table)
        self._rows += len(table)
        self.rows_written += len(table)
        if self._rows >= self.rows_per_part:
            self._commit()

    def _commit(self) -> None:
        assert self._writer is not None
        self._writer.close()
        self._tmp.rename(self._tmp.with_suffix(""))
        self._writer, self._rows = None, 0
        self._parts += 1

    def close(self) -> None:
        if self._writer is not None:
            self._commit()


class ErrorLog:
    """Appends unreadable images to a per-process CSV, flushed at once so nothing is lost on a kill."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "w", newline="")
        self._csv = csv.writer(self._file)
        self._csv.writerow(ERROR_FIELDS)
        self.count = 0

    def write(self, rows: Iterable[tuple[str, str, str]]) -> None:
        for row in rows:
            self._csv.writerow(row)
            self.count += 1
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def made_by(model: nn.Module, checkpoint: Checkpoints, **settings: Any) -> dict[str, Any]:
    """What makes an output's rows: recorded in its metadata, compared on every resume (path excepted).

    An :class:`Ensemble` lists every model's path and sha256, in order.
    """
    members = list(model.models) if isinstance(model, Ensemble) else [model]
    given = list(checkpoint) if isinstance(checkpoint, (list, tuple)) else [checkpoint] * len(members)
    paths = [None if isinstance(c, nn.Module) else str(c) for c in given]
    shas = [fingerprint(m) for m in members]
    single = len(members) == 1
    return {"checkpoint": paths[0] if single else paths, "model_sha256": shas[0] if single else shas,
            "preprocessing": model.config["preprocessing"], **settings}


def _setting(key: str, value: Any) -> str:
    return f"weights sha256 {str(value)[:12]}" if key == "model_sha256" else f"{key}={value!r}"


def _check_made_by(path: Path, expected: dict[str, Any], out: Path) -> None:
    meta = json.loads((pq.read_schema(path).metadata or {}).get(META_KEY, b"{}"))
    if "made_by" not in meta:
        raise ValueError(f"{path} was not written by this version of galaxymorph predict or embed (no made_by "
                         f"metadata); choose a new --out instead of {out}")
    for key, value in expected.items():
        saved = meta["made_by"].get(key)
        if key != "checkpoint" and saved != value:
            raise ValueError(
                f"{out} holds rows made with {_setting(key, saved)} (model {meta['made_by'].get('checkpoint')}), "
                f"not {_setting(key, value)}; re-run with the same model and settings to resume, or choose a new --out"
            )


def completed_ids(out: Path, expected: dict[str, Any]) -> set[str]:
    """Ids already in ``out`` or in a complete part, all made as ``expected``; unfinished ``.tmp`` parts are removed.

    Call it holding :func:`exclusive_writer`, since the ``.tmp`` parts removed are this output's.
    """
    done: set[str] = set()
    sources = [out] if out.exists() else []
    if parts_dir(out).exists():
        for tmp in parts_dir(out).glob("*.tmp"):
            tmp.unlink()
        sources += sorted(parts_dir(out).glob("*.parquet"))
    for path in sources:
        _check_made_by(path, expected, out)
        done.update(pq.read_table(path, columns=["id_str"]).column("id_str").to_pylist())
    return done


def check_output_file(out: Path) -> None:
    """``--out`` of predict and embed: a Parquet file name, not a folder (whose rows a file holds, completed_ids checks)."""
    claim_file(out, is_own=True)
    if out.suffix.lower() not in (".parquet", ".pq"):
        raise ValueError(f"--out {out}: the output is Parquet; name it .parquet")


def _node_rank() -> tuple[str, bool]:
    """This node's rank and whether this process launched it (not a further local rank of a DDP job)."""
    node = os.environ.get("NODE_RANK") or os.environ.get("GROUP_RANK") or os.environ.get("SLURM_NODEID") or "0"
    local = os.environ.get("LOCAL_RANK") or os.environ.get("SLURM_LOCALID") or "0"
    return node, local == "0"


@contextmanager
def exclusive_writer(out: Path) -> Iterator[None]:
    """One job per output: a second predict or embed on the same ``out`` stops instead of deleting the first's parts.

    The lock is per node (each node of a multi-node job launches once) and is
    released when the process ends, however it ends.
    """
    node, launcher = _node_rank()
    if not launcher:
        yield
        return
    parts_dir(out).mkdir(parents=True, exist_ok=True)
    lock = FileLock(parts_dir(out) / f".lock-node{node}", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ValueError(f"another galaxymorph job is writing {out} (lock {lock.lock_file}); wait for it to "
                         "finish, or choose another --out") from None
    try:
        yield
    finally:
        lock.release()


def merge_parts(out: Path) -> tuple[int, int]:
    """Fold the parts (and an existing ``out``) into ``out``, each id once; returns (rows, parts merged)."""
    parts = sorted(parts_dir(out).glob("*.parquet")) if parts_dir(out).exists() else []
    sources = ([out] if out.exists() else []) + parts
    if not sources:
        return 0, 0
    layout = pq.read_schema(sources[-1])
    seen: set[str] = set()
    tmp = out.with_name(out.name + ".merging")
    with pq.ParquetWriter(tmp, layout) as writer:
        for path in sources:
            reader = pq.ParquetFile(path)
            for group in range(reader.num_row_groups):
                table = reader.read_row_group(group).cast(layout)
                ids = table.column("id_str").to_pylist()
                keep = [i not in seen and not seen.add(i) for i in ids]  # type: ignore[func-returns-value]
                if not all(keep):
                    table = table.filter(pa.array(keep))
                writer.write_table(table)
    tmp.replace(out)
    errors = sorted(parts_dir(out).glob("errors-*.csv")) if parts_dir(out).exists() else []
    if errors:
        merged = pd.concat([pd.read_csv(e, dtype=str, keep_default_na=False) for e in errors], ignore_index=True)
        merged = merged[~merged["id_str"].isin(seen)].drop_duplicates("id_str")
        if len(merged):
            merged.to_csv(errors_path(out), index=False)
        elif errors_path(out).exists():
            errors_path(out).unlink()
    shutil.rmtree(parts_dir(out), ignore_errors=True)
    return len(seen), len(parts)


# --------------------------------------------------------------------------- inputs
def catalogue_records(catalog: str | Path | pd.DataFrame, root: str | Path | None = None) -> list[Record]:
    """(id_str, absolute image path) from a catalogue; relative ``file_loc`` is relative to its folder."""
    if isinstance(catalog, pd.DataFrame):
        frame, base, name = catalog, Path(root or Path.cwd()), "catalogue"
    else:
        frame, path = read_table(catalog)
        base, name = Path(root) if root else path.parent, str(path)
    missing = sorted({"id_str", "file_loc"} - set(frame.columns))
    if missing:
        raise ValueError(f"{name} has no column(s) {missing}; it needs id_str and file_loc (image path) per galaxy")
    return list(zip(unique_ids(frame, name), resolve_paths(frame["file_loc"].astype(str), base)))


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


def prediction_records(images_dir: str | Path | None, catalog: str | Path | None, shards: str | Path | None,
                       split: str | None, preprocessing: dict[str, Any]) -> Callable[[], Iterable[Record]]:
    """The galaxies to predict or embed: exactly one of a folder of images, a catalogue or shards.

    Returns a picklable callable (spawned processes and loader workers call it).
    """
    given = [x for x in (images_dir, catalog, shards) if x is not None]
    if len(given) != 1:
        raise ValueError("give exactly one input: images_dir (--images), catalog (--catalog) or shards (--shards)")
    if images_dir is not None:
        return functools.partial(_listed, directory_records(images_dir))
    if catalog is not None:
        return functools.partial(_listed, catalogue_records(catalog))
    _check_shard_pixels(shards, preprocessing)
    return functools.partial(shard_records, shards, split)


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


# --------------------------------------------------------------------------- model
def load_checkpoint(checkpoint: Checkpoints) -> nn.Module:
    """A trained or fine-tuned model from ``RUN/`` or ``RUN/best/`` (safetensors + config), or a model passed as is.

    Several (a list) make one :class:`Ensemble`.
    """
    if isinstance(checkpoint, (list, tuple)):
        models = [load_checkpoint(c) for c in checkpoint]
        return models[0] if len(models) == 1 else Ensemble(models)
    return checkpoint if isinstance(checkpoint, nn.Module) else load_any_model(checkpoint)


class Ensemble(nn.Module):
    """Models trained with other seeds as one posterior: every model's MC-dropout samples, stacked.

    Dropout in the head alone spreads the samples less than models trained from
    other starts do (Lakshminarayanan et al. 2017); ``sample(features, n)`` gives
    ``n`` samples of each model, model after model, so the output has n x models.
    """

    _SAME = ("task", "schema", "classes", "target", "bounded", "preprocessing")  # what the output means and is fed

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        first = models[0].config
        for i, model in enumerate(models[1:], start=2):
            differs = [key for key in self._SAME if model.config.get(key) != first.get(key)]
            if differs:
                raise ValueError(f"--checkpoint {i} differs from the first in {differs[0]!r}; an ensemble's models "
                                 "need the same outputs and preprocessing")
        self.models = nn.ModuleList(models)
        self.config = first
        self.members = len(models)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [model.features(x) for model in self.models]

    def sample(self, features: list[torch.Tensor], n: int) -> torch.Tensor:
        return torch.cat([model.sample(f, n) for model, f in zip(self.models, features)], dim=-1)


class MCDropoutPredictor(pl.LightningModule):
    """The encoder once, then ``samples`` head passes; returns the head's samples (B, outputs, samples)."""

    def __init__(self, model: nn.Module, samples: int):
        super().__init__()
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.model, self.samples = model, samples
        self._transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    def on_predict_start(self) -> None:
        if self.trainer.world_size > 1:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.trainer.world_size))
        self._transform = eval_transform(Preprocessing.from_dict(self.model.config["preprocessing"]))
        self.model.eval()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if batch["image"] is None:
            return None
        assert self._transform is not None
        features = self.model.features(self._transform(batch["image"]))
        return self.model.sample(features, self.samples).float()


class _WriteParts(BasePredictionWriter):
    """Turns each batch's samples into rows (``to_table``) for this process's part writer; errors to its log."""

    def __init__(self, out: Path, layout: pa.Schema, to_table: TableBuilder, rows_per_part: int):
        super().__init__(write_interval="batch")
        self.out, self.layout, self.to_table, self.rows_per_part = out, layout, to_table, rows_per_part

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        directory = parts_dir(self.out)
        self.writer = PartWriter(directory, self.layout, trainer.global_rank, self.rows_per_part)
        self.errors = ErrorLog(directory / f"errors-{self.writer.prefix}.csv")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx) -> None:  # type: ignore[override]
        self.errors.write(batch["errors"])
        if prediction is not None:
            self.writer.write_table(self.to_table(batch["id_str"], prediction.cpu().numpy(), batch["file_loc"]))

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.writer.close()
        self.errors.close()
        trainer.strategy.barrier("parts written")  # rank 0 merges only once every rank (every node) is done


class _Inputs(pl.LightningDataModule):
    """Builds each process's loader once the process knows its rank."""

    def __init__(self, records: Callable[[], Iterable[Record]], preprocessing: dict[str, Any],
                 skip: frozenset[str], batch_size: int, workers: int):
        super().__init__()
        self.records, self.preprocessing, self.skip = records, preprocessing, skip
        self.batch_size, self.workers = batch_size, workers

    def predict_dataloader(self) -> DataLoader:
        stream = GalaxyStream(self.records, self.preprocessing, self.skip,
                              self.trainer.global_rank, self.trainer.world_size)
        return DataLoader(stream, batch_size=self.batch_size, num_workers=self.workers,
                          collate_fn=collate_galaxies, persistent_workers=False)


def _listed(records: list[Record]) -> list[Record]:
    """A list as the picklable records callable that spawned processes and loader workers call."""
    return records


def predict_records(
    model: nn.Module,
    records: Callable[[], Iterable[Record]],
    out: str | Path,
    samples: int = 5,
    batch_size: int = 64,
    workers: int = 0,
    devices: int = 1,
    num_nodes: int = 1,
    accelerator: str = "auto",
    rows_per_part: int = 50_000,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Predict every record not yet in ``out``, then merge; returns counts (rows, new, errors, parts).

    ``records`` is a picklable callable giving (id_str, image path or uint8 pixels).
    With ``devices`` > 1 (or ``num_nodes`` > 1) each process predicts every
    world-size-th pending record and writes its own parts.
    """
    out = Path(out)
    check_output_file(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"preprocessing": model.config["preprocessing"], **(metadata or {})}
    meta["made_by"] = meta.get("made_by") or made_by(model, model, samples=samples)
    with exclusive_writer(out):
        done = completed_ids(out, meta["made_by"])
        for stale in parts_dir(out).glob("errors-*.csv"):
            stale.unlink()  # unreadable images of an earlier run are retried
        layout, to_table = output_format(model.config, samples * getattr(model, "members", 1), meta)
        distributed = devices > 1 or num_nodes > 1
        inputs = _Inputs(records, model.config["preprocessing"], frozenset(done), batch_size, workers)
        # a stream has no sampler to take batch indices from; the writer needs none
        with quiet_lightning("Couldn't infer the batch indices"):
            trainer = pl.Trainer(
                accelerator=accelerator,
                devices=devices,
                num_nodes=num_nodes,
                strategy=("ddp_spawn" if num_nodes == 1 else "ddp") if distributed else "auto",
                logger=False,
                enable_checkpointing=False,
                enable_model_summary=False,
                enable_progress_bar=progress,
                callbacks=[_WriteParts(out, layout, to_table, rows_per_part)] + ([RichProgressBar()] if progress else []),
            )
            trainer.predict(MCDropoutPredictor(model, samples), datamodule=inputs, return_predictions=False)
        if trainer.global_rank != 0:
            return {"rows": 0, "new": 0, "errors": 0, "parts": 0}
        had_errors = any(parts_dir(out).glob("errors-*.csv"))
        rows, parts = merge_parts(out)
    errors = len(pd.read_csv(errors_path(out))) if had_errors and errors_path(out).exists() else 0
    return {"rows": rows, "new": rows - len(done), "errors": errors, "parts": parts}


def predict(
    checkpoint: Checkpoints,
    out: str | Path,
    images_dir: str | Path | None = None,
    catalog: str | Path | None = None,
    shards: str | Path | None = None,
    split: str | None = None,
    samples: int = 5,
    batch_size: int = 64,
    workers: int = 0,
    devices: int = 1,
    num_nodes: int = 1,
    progress: bool = True,
) -> dict[str, int]:
    """A trained or fine-tuned model's predictions for a folder of images, a catalogue, or shards (exactly one).

    A list of checkpoints (the same outputs, e.g. other seeds) predicts as one :class:`Ensemble`:
    ``samples`` from each model, stacked into one posterior.

    Example:
        >>> predict("runs/demo", "preds.parquet", catalog="galaxies.csv", samples=5)  # doctest: +SKIP
        {'rows': 1000, 'new': 1000, 'errors': 0}
    """
    model = load_checkpoint(checkpoint)
    records = prediction_records(images_dir, catalog, shards, split, model.config["preprocessing"])
    source = {"images": images_dir, "catalog": catalog, "shards": shards}
    return predict_records(model, records, out, samples=samples, batch_size=batch_size, workers=workers,
                           devices=devices, num_nodes=num_nodes, progress=progress,
                           metadata={"source": {k: str(v) for k, v in source.items() if v is not None},
                                     "made_by": made_by(model, checkpoint, samples=samples)})
