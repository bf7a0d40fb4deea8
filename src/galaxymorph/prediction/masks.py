"""A segmentation model's predictions: the mask store and the per-galaxy measurements beside it.

``predict`` with a segmentation model writes ``<out>.parquet``, one row per galaxy,
through the same parts, lock and ``made_by`` as every prediction (so it resumes, and
refuses another model or settings, exactly as they do):

- ``id_str``, ``file_loc``;
- ``mask:<class>:mean`` and ``mask:<class>:concentration``: fixed-size lists of float16,
  the model's input frame (``image_size`` squared, row by row): per pixel the posterior
  mean probability that a volunteer marks it (the share of volunteers expected to), and
  the concentration a + b of the Beta with the MC-dropout samples' mean and variance
  (:func:`galaxymorph.mask_stats.pixel_posteriors`).
  :func:`read_masks` gives the 90% interval (``q05``, ``q95``) of the galaxies it reads;
- per class the measurements of :func:`galaxymorph.mask_stats.measure_shapes` over the
  MC-dropout samples: ``<class>_area``, ``_pixels``, ``_length``, ``_angle``, each with
  ``_q05`` / ``_q95``.

Why Parquet and not an array store (zarr): the rows are written, resumed, merged and
refused by the machinery every prediction already uses, in one file that pyarrow and
pandas read without this package; a galaxy's masks are one row, read by id. The
measurements alone are also written as ``<out stem>.measurements.parquet`` once the
store is complete: small, for pandas.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from lightning import pytorch as pl

from galaxymorph.data.inputs import Record
from galaxymorph.engine import RunSettings
from galaxymorph.files import atomic_path
from galaxymorph.mask_stats import MEASUREMENTS, measure_shapes, pixel_intervals, pixel_posteriors, summarise_samples
from galaxymorph.models.ensemble import Ensemble
from galaxymorph.models.head import galaxy_keys
from galaxymorph.outputs import claim_file
from galaxymorph.prediction.layout import META_KEY
from galaxymorph.prediction.mc_dropout import MCDropoutPredictor
from galaxymorph.prediction.writer import write_outputs

__all__ = ["MASK_STORE", "MaskPredictor", "is_mask_store", "mask_arrays", "mask_columns", "mask_layout",
           "measurements_path", "read_mask_metadata", "read_masks", "write_masks"]

MASK_STORE = "segmentation"  # the metadata's task of a mask store
_STORED = ("mean", "concentration")
_STORED_TYPE = pa.float16()


class MaskPredictor(MCDropoutPredictor):
    """The encoder and decoder once per galaxy, the mask head ``samples`` times: (B, K, S, S, samples) probabilities."""

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:  # type: ignore[override]
        if batch["image"] is None:
            return None
        features = self.model.features(self.images(batch))
        return self.model.sample(features, self.samples, galaxy_keys(batch["id_str"])).float()


def _measurement_columns(classes: Sequence[str]) -> list[str]:
    return [f"{c}_{m}{end}" for c in classes for m in MEASUREMENTS for end in ("", "_q05", "_q95")]


def mask_layout(config: dict[str, Any], samples: int, metadata: dict[str, Any]) -> pa.Schema:
    """The mask store's columns (see the module docstring) and metadata: task, samples, ``metadata``, and the
    model's classes, image size, preprocessing and the catalogue columns it learned from (for evaluate)."""
    pixels = int(config["image_size"]) ** 2
    fields = [pa.field("id_str", pa.string()), pa.field("file_loc", pa.string())]
    fields += [pa.field(f"mask:{c}:{s}", pa.list_(_STORED_TYPE, pixels)) for c in config["classes"] for s in _STORED]
    fields += [pa.field(name, pa.float32()) for name in _measurement_columns(config["classes"])]
    meta = {"task": MASK_STORE, "samples": samples, **metadata,
            **{key: config[key] for key in ("classes", "image_size", "mask_cols", "volunteers_col", "preprocessing")}}
    return pa.schema(fields, metadata={META_KEY: json.dumps(meta).encode()})


def mask_table(ids: Sequence[str], samples: np.ndarray, file_locs: Sequence[str | None],
               classes: Sequence[str], layout: pa.Schema) -> pa.Table:
    """One batch of rows from MC-dropout probabilities (B, K, S, S, samples)."""
    columns: dict[str, Any] = {"id_str": list(ids), "file_loc": list(file_locs)}
    posterior = pixel_posteriors(samples)
    shapes = measure_shapes(np.moveaxis(samples, -1, 2))  # each (B, K, samples)
    pixels = posterior["mean"][0, 0].size if len(ids) else 0
    for k, name in enumerate(classes):
        for stat in _STORED:
            flat = pa.array(np.ascontiguousarray(posterior[stat][:, k], np.float16).reshape(-1), _STORED_TYPE)
            columns[f"mask:{name}:{stat}"] = pa.FixedSizeListArray.from_arrays(flat, pixels)
        for measurement in MEASUREMENTS:
            for key, value in summarise_samples(shapes[measurement][:, k], measurement).items():
                columns[f"{name}_{key}"] = value.astype(np.float32)
    return pa.table({f.name: columns[f.name] for f in layout}, schema=layout)


def read_mask_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a mask store (classes, image size, samples, made_by); anything else is refused, naming it."""
    try:
        footer = pq.read_schema(path).metadata or {}
    except pa.ArrowInvalid as err:
        raise ValueError(f"{path}: cannot read it as a Parquet file ({err})") from err
    meta = json.loads(footer.get(META_KEY, b"null")) or {}
    if meta.get("task") != MASK_STORE:
        raise ValueError(f"{path}: not the masks of a segmentation model (galaxymorph predict with one)")
    return meta


def is_mask_store(path: str | Path) -> bool:
    """Whether ``path`` is a segmentation model's predictions (False for anything else, readable or not)."""
    try:
        read_mask_metadata(path)
    except (ValueError, OSError):
        return False
    return True


def mask_columns(meta: dict[str, Any]) -> list[str]:
    """The columns :func:`mask_arrays` needs, of a store with metadata ``meta``."""
    return ["id_str"] + [f"mask:{c}:{s}" for c in meta["classes"] for s in _STORED]


def mask_arrays(rows: pa.Table | pa.RecordBatch, meta: dict[str, Any]) -> tuple[list[str], dict[str, np.ndarray]]:
    """(ids, ``mean`` and ``concentration`` float32 (N, K, S, S)) of rows of a store holding :func:`mask_columns`."""
    size = int(meta["image_size"])

    def stacked(stat: str) -> np.ndarray:
        per_class = []
        for c in meta["classes"]:
            column = rows.column(f"mask:{c}:{stat}")
            lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
            per_class.append(lists.flatten().to_numpy(zero_copy_only=False).reshape(-1, size, size))
        return np.stack(per_class, axis=1).astype(np.float32)

    return rows.column("id_str").to_pylist(), {stat: stacked(stat) for stat in _STORED}


def read_masks(path: str | Path, ids: Iterable[str] | None = None,
               intervals: bool = False) -> tuple[list[str], dict[str, np.ndarray]]:
    """(ids, arrays) of the galaxies ``ids`` (all without), each array float32 (N, K, S, S) for the K classes.

    Arrays: ``mean`` (the posterior mean share of volunteers who would mark each pixel),
    ``concentration`` and, with ``intervals``, the 90% interval as ``q05`` and ``q95``
    (slow: about 20 microseconds a pixel on a CPU). Only the rows asked for are read.
    """
    meta = read_mask_metadata(path)
    filters = None if ids is None else [("id_str", "in", list(ids))]
    found, arrays = mask_arrays(pq.read_table(path, columns=mask_columns(meta), filters=filters), meta)
    if intervals:
        low, high = pixel_intervals(arrays["mean"], arrays["concentration"])
        arrays.update(q05=low.astype(np.float32), q95=high.astype(np.float32))
    return found, arrays


def measurements_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".parquet") + ".measurements.parquet")


def _write_measurements(out: Path) -> Path:
    """The store's measurement columns, row group by row group, into :func:`measurements_path` (replaced whole)."""
    target = measurements_path(out)
    own = is_mask_store(target) if target.exists() else True
    claim_file(target, is_own=own)
    store = pq.ParquetFile(out)
    names = ["id_str", "file_loc", *_measurement_columns(read_mask_metadata(out)["classes"])]
    layout = pa.schema([store.schema_arrow.field(n) for n in names], metadata=store.schema_arrow.metadata)
    with atomic_path(target) as tmp, pq.ParquetWriter(tmp, layout) as writer:  # a kill leaves the previous file
        for group in range(store.num_row_groups):
            writer.write_table(store.read_row_group(group, columns=names))
    return target


def write_masks(model: torch.nn.Module, records: Callable[[], Iterable[Record]], out: Path, samples: int, tta: bool,
                run: RunSettings, metadata: dict[str, Any], rows_per_part: int = 50_000,
                callbacks: list[pl.Callback] | None = None) -> dict[str, int]:
    """``predict_records`` for a segmentation model: the mask store at ``out``, then its measurements file."""
    if tta:
        raise ValueError("--tta: a segmentation model's masks would have to be turned back view by view; "
                         "predict masks without --tta")
    if isinstance(model, Ensemble):
        raise ValueError("an ensemble of segmentation models is not supported; give one --checkpoint")
    layout = mask_layout(model.config, samples, metadata)
    to_table = functools.partial(mask_table, classes=model.config["classes"], layout=layout)
    counts = write_outputs(MaskPredictor(model, samples), records, out, metadata["made_by"], layout, to_table, run,
                           rows_per_part, callbacks)
    if counts["rows"]:
        _write_measurements(out)
    return counts
