"""Evaluate a predictions file against a catalogue, in batches of rows, and write ``evaluation.json`` and the plots.

The file is read twice, ``batch_rows`` rows at a time: first only the ids, to find the
catalogue rows that were predicted and the constant baseline's means over them, then
the concentrations, batch by batch (:class:`~galaxymorph.evaluation.metrics.MetricSums`).
The catalogue's votes are held as arrays. ``evaluation.json`` records the predictions
file it was made from (``made_from``), so that a report never shows it beside others.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from galaxymorph.data.catalogue import check_votes, read_table, unique_ids
from galaxymorph.evaluation.metrics import BATCH_ROWS, LEVELS, MetricSums, check_min_votes
from galaxymorph.evaluation.references import Baselines, References, take_rows
from galaxymorph.kaggle import KAGGLE_PREFIX, kaggle_columns
from galaxymorph.outputs import claim_folder
from galaxymorph.prediction.layout import predictions_identity, read_concentrations, read_metadata
from galaxymorph.report.plots import PLOT_FILES, plot_evaluation
from galaxymorph.schema import Schema

__all__ = ["PLOT_GALAXIES", "TRUTH_PREFIX", "evaluate"]

TRUTH_PREFIX = "true_p:"
PLOT_GALAXIES = 20_000  # the scatter plots show at most this many galaxies, drawn at random


def _optional_columns(rows: pd.DataFrame, columns: list[str]) -> np.ndarray | None:
    """The catalogue's extra per-answer columns (truth, Kaggle fractions) as floats; None unless all are there."""
    return rows[columns].to_numpy(np.float64) if all(c in rows.columns for c in columns) else None


def evaluate(
    predictions: str | Path,
    catalogue: str | Path | pd.DataFrame,
    out: str | Path | None = None,
    min_votes: int = 10,
    confident: float = 0.8,
    levels: Sequence[float] = LEVELS,
    batch_rows: int = BATCH_ROWS,
) -> dict[str, Any]:
    """Metrics of a predictions file against a catalogue's votes (and ``true_p:`` / ``kaggle:`` columns if present).

    The file is read ``batch_rows`` rows at a time, twice: the ids, then the concentrations;
    the catalogue's votes are held as arrays. With ``out``, writes ``evaluation.json`` (with
    ``made_from``: the predictions file's sha256, rows, path and ``made_by``, and the catalogue)
    and the plots there (scatter plots of at most ``PLOT_GALAXIES`` galaxies drawn at random).
    A file that records calibration scales is also evaluated without them (see
    :func:`~galaxymorph.evaluation.evaluate_arrays`).
    """
    check_min_votes(min_votes)
    schema, meta = read_metadata(predictions)
    catalogue, path = read_table(catalogue)
    missing = [a for a in schema.answers if a not in catalogue.columns]
    if missing:
        raise ValueError(f"catalogue has no vote column {missing[0]!r} ({len(missing)} of schema {schema.name!r} "
                         "missing); evaluate against the catalogue the model's schema describes")
    name = str(path or "catalogue")
    index = pd.Index(unique_ids(catalogue, name))
    check_votes(catalogue, schema, name)
    counts = catalogue[list(schema.answers)].to_numpy(np.float64)
    truth = _optional_columns(catalogue, [TRUTH_PREFIX + a for a in schema.answers])
    kaggle = _optional_columns(catalogue, [KAGGLE_PREFIX + k for k in kaggle_columns(schema)]) if schema.name == "gz2" else None
    del catalogue
    file = pq.ParquetFile(predictions)

    def batches(columns: list[str]) -> Iterable[tuple[np.ndarray, pa.RecordBatch]]:
        """(catalogue row of each prediction, -1 if none; the batch) for every batch of the file."""
        for batch in file.iter_batches(batch_size=batch_rows, columns=columns):
            yield index.get_indexer(batch.column("id_str").to_numpy(zero_copy_only=False)), batch

    weights = np.zeros(len(index), dtype=np.int64)  # how often each catalogue row is predicted
    for rows, _ in batches(["id_str"]):
        weights += np.bincount(rows[rows >= 0], minlength=len(index))
    matched = int(weights.sum())
    if not matched:
        raise ValueError("no predicted id_str is in the catalogue; are these the right files?")
    chunks = (slice(s, s + batch_rows) for s in range(0, len(index), batch_rows))
    baselines = Baselines.over(((References.of_votes(counts[c], schema, take_rows(truth, c), take_rows(kaggle, c)),
                                 weights[c]) for c in chunks), schema)
    sums = MetricSums(schema, baselines, levels, min_votes, confident, meta.get("calibration"))
    shown = np.sort(np.random.default_rng(0).choice(matched, min(matched, PLOT_GALAXIES), replace=False))
    plotted: list[tuple[np.ndarray, References]] = []
    for rows, batch in batches(["id_str"] + [f"conc:{a}" for a in schema.answers]):
        keep = rows >= 0
        if not keep.any():
            continue
        rows = rows[keep]
        ref = References.of_votes(counts[rows], schema, take_rows(truth, rows), take_rows(kaggle, rows))
        predicted = sums.add(read_concentrations(batch, schema)[keep], ref)
        offset = sums.galaxies - len(rows)
        pick = shown[(shown >= offset) & (shown < sums.galaxies)] - offset
        plotted.append((predicted[pick], ref.take(pick)))
    result = sums.result()
    result["unmatched_predictions"] = int(file.metadata.num_rows - matched)
    if out is not None:
        result["made_from"] = {"predictions": predictions_identity(predictions),
                               "catalogue": None if path is None else str(path.resolve())}
        _write(Path(out), result, schema, plotted, has_truth=truth is not None)
    return result


def _write(out: Path, result: dict[str, Any], schema: Schema, plotted: list[tuple[np.ndarray, References]],
           has_truth: bool) -> None:
    """The plots of the sampled galaxies and ``evaluation.json`` (the result and its plots' names) in ``out``."""
    claim_folder(out, "evaluation.json", own_files=PLOT_FILES)
    out.mkdir(parents=True, exist_ok=True)
    predicted = np.concatenate([p for p, _ in plotted])
    observed = np.concatenate([r.observed for _, r in plotted])
    truth = np.concatenate([r.truth for _, r in plotted]) if has_truth else None
    result["plots"] = plot_evaluation(result, schema, predicted, observed, truth, out)
    (out / "evaluation.json").write_text(json.dumps(result, indent=2, allow_nan=True))
