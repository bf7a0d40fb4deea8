"""What a fine-tuned model's MC-dropout samples mean, as named per-galaxy columns (for predict).

``FinetunedModel.sample(features, n)`` gives (B, K, n): class probabilities
(classification), values (regression) or Dirichlet concentrations (tree). For
the tree task predict's usual posterior summaries apply unchanged; this module
summarises the other two over the n dropout samples.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

__all__ = ["SUMMARISED_TASKS", "summarise_samples", "outputs_layout", "outputs_table"]

SUMMARISED_TASKS = ("classification", "regression")
META_KEY = b"galaxymorph"  # as galaxymorph.predict


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
