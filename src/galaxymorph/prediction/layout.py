"""The predictions file: one Parquet row per galaxy, readable without this package.

- ``id_str`` (string) and ``file_loc`` (string, null for shard input);
- ``conc:<answer>``: fixed-size list of float32, the Dirichlet concentration of
  that answer in each of the N MC-dropout samples (sample ``s`` of every answer
  column belongs to the same dropout mask);
- ``<answer>_fraction``, ``<answer>_q05``, ``<answer>_q95``: posterior mean vote
  fraction within the question and its 5% / 95% credible bounds (mixture over samples);
- ``<question>_asked``: probability that a volunteer is asked that question;
- ``ood_score`` (float32; only for models with an OOD reference, i.e. trained
  since it exists): how far the image is from the training distribution, > 1 flagged
  (about 5% of in-distribution galaxies; see :mod:`galaxymorph.models.ood`);
- ``crop_measured``, ``crop_scale`` (float32) and ``crop_status`` (string), last and only
  for models whose preprocessing has a size crop: the galaxy's measured size relative to
  the training galaxies' median (NaN when not found), the side of the square cut relative
  to the fixed crop, and ``measured``, ``lower bound`` (the galaxy overfills its frame) or
  ``not found`` (the fixed crop was used): see :class:`galaxymorph.data.normalise.CropRecord`.

The file's metadata key ``galaxymorph`` holds JSON with the schema, the number of
samples and the preprocessing, so :func:`read_predictions` needs nothing else,
``made_by`` (see :mod:`galaxymorph.prediction.parts`) and, from a calibrated model,
``calibration``: the scale per question its concentrations carry (see
:mod:`galaxymorph.calibration`), so that evaluate can report them before and after.

Fine-tuned classification and regression models (``config["task"]``) get other
columns: ``sample:<output>`` (the N MC-dropout samples) and their summaries (class
probabilities with 5% / 95% bounds and ``predicted_class``, or the value with its
spread, see :func:`summarise_samples`); the metadata holds the task and outputs in
place of the schema.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from galaxymorph.data.normalise import CropRecord
from galaxymorph.files import file_sha256
from galaxymorph.schema import Schema
from galaxymorph.stats import credible_intervals, expected_fractions, probability_asked

__all__ = ["CROP_COLUMNS", "META_KEY", "OOD_SCORE", "ood_flagged", "output_format", "predictions_identity",
           "read_concentrations",
           "read_metadata", "read_predictions", "summarise_samples", "with_crop_records", "with_ood_scores"]

META_KEY = b"galaxymorph"
OOD_SCORE = "ood_score"
CROP_COLUMNS = {"crop_measured": pa.float32(), "crop_scale": pa.float32(), "crop_status": pa.string()}
TableBuilder = Callable[[Sequence[str], np.ndarray, Sequence[str | None]], pa.Table]  # (ids, samples, file_locs)


SUMMARISED_TASKS = ("classification", "regression")


def summarise_samples(config: dict[str, Any], samples: np.ndarray) -> dict[str, np.ndarray]:
    """Per-galaxy columns from (B, K, n) samples of a classification or regression model.

    classification: ``<class>_probability`` (mean over samples), ``<class>_q05`` / ``_q95``
    (5% / 95% over samples) and ``predicted_class`` (largest mean probability).
    regression: ``<target>`` (mean), ``<target>_std``, ``<target>_q05`` / ``_q95``.
    """
    samples = np.asarray(samples, dtype=np.float64)
    task = config["task"]
    if samples.ndim != 3 or samples.shape[1] != len(config["outputs"]):
        raise ValueError(f"expected samples (galaxies, {len(config['outputs'])}, n), got {samples.shape}")
    low, high = np.quantile(samples, [0.05, 0.95], axis=2)
    mean = samples.mean(axis=2)
    columns: dict[str, np.ndarray] = {}
    if task == "classification":
        for i, name in enumerate(config["classes"]):
            columns[f"{name}_probability"] = mean[:, i]
            columns[f"{name}_q05"], columns[f"{name}_q95"] = low[:, i], high[:, i]
        columns["predicted_class"] = np.asarray(config["classes"], dtype=object)[mean.argmax(axis=1)]
        return columns
    if task == "regression":
        name = config["outputs"][0]
        return {name: mean[:, 0], f"{name}_std": samples[:, 0].std(axis=1), f"{name}_q05": low[:, 0], f"{name}_q95": high[:, 0]}
    raise ValueError(f"task {task!r}: use predict's Dirichlet posterior summaries for the tree task")


def outputs_layout(config: dict[str, Any], samples: int, metadata: dict[str, Any] | None = None) -> pa.Schema:
    """Parquet layout of a classification / regression model's predictions.

    ``id_str``, ``file_loc``, ``sample:<output>`` (fixed-size float32 list: the MC-dropout
    samples), then the :func:`summarise_samples` columns; metadata holds the task,
    the outputs and ``metadata``.
    """
    fields = [pa.field("id_str", pa.string()), pa.field("file_loc", pa.string())]
    fields += [pa.field(f"sample:{o}", pa.list_(pa.float32(), samples)) for o in config["outputs"]]
    example = summarise_samples(config, np.full((1, len(config["outputs"]), samples), 0.5))
    fields += [pa.field(k, pa.string() if k == "predicted_class" else pa.float32()) for k in example]
    meta = {"task": config["task"], "outputs": config["outputs"], "samples": samples, **(metadata or {})}
    return pa.schema(fields, metadata={META_KEY: json.dumps(meta).encode()})


def outputs_table(ids: Sequence[str], samples: np.ndarray, file_locs: Sequence[str | None],
                  config: dict[str, Any], layout: pa.Schema) -> pa.Table:
    """One batch of rows in :func:`outputs_layout` from samples (galaxies, outputs, n)."""
    samples = np.asarray(samples, dtype=np.float32)
    columns: dict[str, Any] = {"id_str": list(ids), "file_loc": list(file_locs)}
    for i, name in enumerate(config["outputs"]):
        flat = pa.array(np.ascontiguousarray(samples[:, i, :]).reshape(-1), pa.float32())
        columns[f"sample:{name}"] = pa.FixedSizeListArray.from_arrays(flat, samples.shape[2])
    columns.update(summarise_samples(config, samples))
    return pa.table({f.name: columns[f.name] for f in layout}, schema=layout)


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
    fine-tuned classification / regression models the columns of :func:`summarise_samples`.
    A model with an OOD reference (``config["ood"]``) adds ``ood_score``, filled by
    :func:`with_ood_scores`, and one with a size crop the :data:`CROP_COLUMNS` after it, filled
    by :func:`with_crop_records`; the builder leaves them out, so the same rows serve all.
    """
    if config.get("task") in SUMMARISED_TASKS:
        layout = outputs_layout(config, samples, metadata)
        build = functools.partial(outputs_table, config=config)
    else:
        schema = Schema.from_dict(config["schema"])
        layout = arrow_schema(schema, samples, metadata)
        build = functools.partial(posterior_table, schema=schema)
    scored = layout.append(pa.field(OOD_SCORE, pa.float32())) if config.get("ood") else layout
    if (config.get("preprocessing") or {}).get("size_crop"):
        for name, kind in CROP_COLUMNS.items():
            scored = scored.append(pa.field(name, kind))
    return scored, functools.partial(build, layout=layout)


def with_ood_scores(table: pa.Table, scores: np.ndarray) -> pa.Table:
    """A batch's rows with their ``ood_score`` appended (the last column of :func:`output_format`'s layout)."""
    return table.append_column(pa.field(OOD_SCORE, pa.float32()), pa.array(np.asarray(scores, np.float32)))


def with_crop_records(table: pa.Table, records: Sequence[CropRecord | None]) -> pa.Table:
    """A batch's rows with what the size crop did to each galaxy (:data:`CROP_COLUMNS`; null for arrays)."""
    rows = [tuple(r) if r is not None else (None,) * len(CROP_COLUMNS) for r in records]
    for i, (name, kind) in enumerate(CROP_COLUMNS.items()):
        table = table.append_column(pa.field(name, kind), pa.array([row[i] for row in rows], kind))
    return table


def ood_flagged(path: str | Path) -> tuple[int, int] | None:
    """(galaxies with ``ood_score`` > 1, galaxies) of a predictions file, one row group at a time; None without scores."""
    file = pq.ParquetFile(path)
    if OOD_SCORE not in file.schema_arrow.names:
        return None
    flagged = 0
    for group in range(file.num_row_groups):
        scores = file.read_row_group(group, columns=[OOD_SCORE]).column(0).to_numpy(zero_copy_only=False)
        flagged += int((scores > 1).sum())
    return flagged, file.metadata.num_rows


def read_metadata(path: str | Path) -> tuple[Schema, dict[str, Any]]:
    """(schema, metadata) of a Dirichlet model's predictions file, from its footer alone (no rows read)."""
    try:
        footer = pq.read_schema(path).metadata or {}
    except pa.ArrowInvalid as err:
        raise ValueError(f"{path}: cannot read it as a Parquet file ({err})") from err
    meta = json.loads(footer.get(META_KEY, b"null"))
    if not meta or not {"schema", "task"} & set(meta):
        raise ValueError(f"{path}: not a galaxymorph predictions file (no {META_KEY.decode()!r} metadata)")
    if "schema" not in meta:
        raise ValueError(f"{path}: predictions of a fine-tuned {meta.get('task')} model have no answer schema; "
                         "read them with pandas.read_parquet")
    return Schema.from_dict(meta["schema"]), meta


def read_predictions(path: str | Path) -> tuple[pd.DataFrame, Schema, dict[str, Any]]:
    """A Dirichlet model's predictions file as (DataFrame, schema, metadata), all rows in memory."""
    schema, meta = read_metadata(path)
    return pq.read_table(path).to_pandas(), schema, meta


def read_concentrations(rows: pd.DataFrame | pa.Table | pa.RecordBatch, schema: Schema) -> np.ndarray:
    """The ``conc:<answer>`` columns of prediction rows as float64 (galaxies, answers, samples).

    ``rows``: a frame from :func:`read_predictions`, or Arrow rows as read from the file
    (a table, or one batch of a file read in batches).
    """
    names = [f"conc:{a}" for a in schema.answers]
    if isinstance(rows, pd.DataFrame):
        rows = pa.Table.from_pandas(rows[names], pa.schema([(n, pa.list_(pa.float64())) for n in names]),
                                    preserve_index=False)
    flat = [pc.list_flatten(rows.column(name)).to_numpy() for name in names]  # each (galaxies x samples,)
    shape = (len(rows), len(flat[0]) // max(len(rows), 1))
    return np.stack([values.reshape(shape) for values in flat], axis=1).astype(np.float64)


def predictions_identity(path: str | Path) -> dict[str, Any]:
    """What an output made from a predictions file records of it, so it is never shown beside other predictions.

    ``sha256`` (of the file's bytes) identifies the rows; ``path``, ``rows`` and ``made_by``
    (the model and settings, see :mod:`galaxymorph.prediction.parts`) say which file that was.
    """
    file = pq.ParquetFile(path)
    meta = json.loads((file.schema_arrow.metadata or {}).get(META_KEY, b"{}"))
    return {"path": str(Path(path).resolve()), "rows": file.metadata.num_rows, "sha256": file_sha256(path),
            "made_by": meta.get("made_by")}


