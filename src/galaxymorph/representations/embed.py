"""Encoder features per galaxy (``galaxymorph embed``), streamed to Parquet and resumable.

Output: one Parquet file, one row per galaxy: ``id_str``, ``file_loc`` (null for
shard input) and ``embedding`` (fixed-size list of float32: the pooled encoder
features, or their first ``k`` principal components with ``pca=k``). The file's
``galaxymorph`` metadata holds the checkpoint, the feature count, the
preprocessing and, with PCA, the explained variance ratios.

Streaming, resuming and unreadable images work exactly as in
:mod:`galaxymorph.prediction`, whose part files, reader stream and error log are
reused: a re-run skips galaxies already written. With PCA the full features are
kept in ``<out stem>.features.parquet`` (that is the resumable file) and the
components are fitted on all of them at the end (scikit-learn ``PCA``, seeded).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from galaxymorph.data.inputs import describe_inputs, prediction_records
from galaxymorph.engine import RunSettings
from galaxymorph.files import atomic_path
from galaxymorph.prediction import META_KEY
from galaxymorph.prediction.mc_dropout import MCDropoutPredictor
from galaxymorph.prediction.parts import made_by
from galaxymorph.prediction.writer import claim_output, write_outputs

__all__ = ["EMBEDDING", "embed", "embedding_layout", "read_embeddings", "features_path"]

EMBEDDING = "embedding"


def embedding_layout(n_features: int, metadata: dict[str, Any]) -> pa.Schema:
    """The Parquet layout documented in the module docstring."""
    fields = [
        pa.field("id_str", pa.string()),
        pa.field("file_loc", pa.string()),
        pa.field(EMBEDDING, pa.list_(pa.float32(), n_features)),
    ]
    return pa.schema(fields, metadata={META_KEY: json.dumps({"n_features": n_features, **metadata}).encode()})


def _embedding_table(ids: Sequence[str], features: np.ndarray, file_locs: Sequence[str | None], layout: pa.Schema) -> pa.Table:
    features = np.ascontiguousarray(features, dtype=np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(features.reshape(-1), pa.float32()), features.shape[1])
    return pa.table({"id_str": list(ids), "file_loc": list(file_locs), EMBEDDING: column}, schema=layout)


def read_embeddings(path: str | Path) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    """(``id_str``/``file_loc`` frame, embeddings float32 (N, F), metadata) of an embeddings file."""
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"null"))
    if not meta or EMBEDDING not in table.column_names:
        raise ValueError(f"{path}: not a galaxymorph embeddings file (make one with `galaxymorph embed`)")
    column = table.column(EMBEDDING).combine_chunks()
    vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(len(table), -1).astype(np.float32)
    return table.drop_columns([EMBEDDING]).to_pandas(), vectors, meta


class _Features(MCDropoutPredictor):
    """The predictor's image preparation, then the pooled encoder features instead of head samples."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, samples=1)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if batch["image"] is None:
            return None
        return self.model.features(self.images(batch)).float()


def features_path(out: Path, pca: int | None) -> Path:
    """Where the full features are streamed: ``out`` itself, or beside it when ``out`` will hold PCA components."""
    return out if pca is None else out.with_name(out.name.removesuffix(".parquet") + ".features.parquet")


def _check_pca(k: int, galaxies: int, features: int) -> None:
    """PCA has at most min(galaxies, features) components."""
    if not 1 <= k <= min(galaxies, features):
        raise ValueError(f"--pca {k}: must be between 1 and min(galaxies, features) = min({galaxies}, {features})")


def _write_pca(source: Path, out: Path, k: int, seed: int) -> list[float]:
    from sklearn.decomposition import PCA

    frame, vectors, meta = read_embeddings(source)
    _check_pca(k, *vectors.shape)  # again: unreadable images may have left fewer galaxies
    pca = PCA(n_components=k, random_state=seed).fit(vectors)
    ratios = [float(r) for r in pca.explained_variance_ratio_]
    layout = embedding_layout(k, {**{m: v for m, v in meta.items() if m != "n_features"},
                                  "pca": {"components": k, "explained_variance_ratio": ratios, "features_file": source.name}})
    with atomic_path(out) as tmp:
        pq.write_table(_embedding_table(frame["id_str"], pca.transform(vectors), frame["file_loc"], layout), tmp)
    return ratios


def embed(checkpoint: str | Path | nn.Module, out: str | Path, images_dir: str | Path | None = None,
          catalogue: str | Path | None = None, shards: str | Path | None = None, split: str | None = None,
          pca: int | None = None, preprocessing: str | None = None, image_size: int | None = None, seed: int = 0,
          run: RunSettings | None = None, rows_per_part: int = 50_000, callbacks: list[Callback] | None = None,
          **run_options: Any) -> dict[str, int]:
    """Encoder features of every galaxy not yet in the output, then merge (and PCA); returns counts.

    ``checkpoint`` is a training run, a fine-tuning run (either ``RUN/`` or ``RUN/best/``),
    a model with ``features`` and ``config["preprocessing"]``, or an encoder alone (a timm
    folder or ``hf_hub:ORG/NAME``, prepared by the ``preprocessing`` preset at ``image_size``:
    :func:`galaxymorph.models.load_encoder`). ``run`` (or its fields as
    keywords) says where and how, as for :func:`galaxymorph.prediction.predict`; ``callbacks``
    are extra Lightning callbacks.

    Example:
        >>> embed("runs/gz2", "emb.parquet", catalogue="galaxies.csv", pca=32)  # doctest: +SKIP
        {'rows': 1000, 'new': 1000, 'errors': 0, 'parts': 1}
    """
    from galaxymorph.models import load_features_model

    run = RunSettings.of(run, **run_options)
    model = load_features_model(checkpoint, preprocessing, image_size)
    prep = model.config["preprocessing"]
    records = prediction_records(images_dir, catalogue, shards, split, prep)
    if pca is not None:  # before any output is claimed or embedding computed
        _check_pca(pca, records.pending(frozenset()), int(model.config["n_features"]))
    out = claim_output(out)
    target = features_path(out, pca)
    meta = {
        "checkpoint": str(checkpoint) if not isinstance(checkpoint, nn.Module) else None,
        "arch": model.config.get("arch"),
        "preprocessing": prep,
        "source": describe_inputs(images_dir, catalogue, shards),
        "made_by": made_by(model, checkpoint, "embed"),
    }
    layout = embedding_layout(int(model.config["n_features"]), meta)
    counts = write_outputs(_Features(model), records, target, meta["made_by"], layout,
                           functools.partial(_embedding_table, layout=layout), run, rows_per_part, callbacks)
    if pca is not None and counts["rows"]:
        _write_pca(target, out, pca, seed)
    return counts
