"""How good are predicted masks: Dice and IoU against the truth or the volunteers' majority, and per-pixel calibration.

Each galaxy's masks in the catalogue (the volunteers' counts and, for simulated data,
the truth in ``true_<mask column>``) are checked and framed exactly as the model saw
its image (:func:`galaxymorph.data.masks.frame_masks`, then the evaluation crop), so
they line up with the predicted masks pixel for pixel.

- A mask is the pixels with an expected share of volunteers above one half; the
  volunteers' majority mask is the pixels more than half of them marked.
- Dice and IoU add up the pixels of every galaxy (so galaxies without the class count
  through their false positives, not as 0/0), per class: the model against the
  majority, and where the truth is known, the model and the majority (the noise floor
  the model should beat) against the truth.
- Calibration: the share of pixels whose volunteers' count lies in its central 90%
  predictive interval (the Beta-Binomial of the pixel's posterior and the galaxy's
  number of volunteers; randomised PIT in [0.05, 0.95]). Over every pixel, and over the
  pixels that matter: where a volunteer drew or the model expects more than 5%
  (empty sky is easily covered). Counts of masks resampled to the model's frame are
  rounded to whole volunteers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from galaxymorph.data.catalogue import read_table
from galaxymorph.data.masks import TRUE_MASK, frame_masks, read_mask_table
from galaxymorph.data.transforms import Preprocessing, eval_transform
from galaxymorph.mask_stats import THRESHOLD, dice_iou, overlap, predictive_pit
from galaxymorph.outputs import claim_folder
from galaxymorph.prediction.layout import predictions_identity
from galaxymorph.prediction.masks import mask_arrays, mask_columns, read_mask_metadata

__all__ = ["evaluate_masks"]

ACTIVE = 0.05  # calibration "where it matters": a volunteer drew, or the model expects more than this share
EVALUATION_FILE = "evaluation.json"


def _framed(table: pd.DataFrame, columns: Sequence[str], volunteers: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Shares (N, K, S, S) in [0, 1] of the catalogue's masks in the model's frame."""
    stored = np.stack([frame_masks(row.id_str, row.file_loc, [getattr(row, c) for c in columns], n, prep)
                       for row, n in zip(table.itertuples(index=False), volunteers)])
    return eval_transform(prep).geometry(torch.from_numpy(stored).float().div_(255.0)).numpy()


class _Sums:
    """What every metric is a ratio of, added galaxy batch by batch: overlap counts and covered pixels per class."""

    def __init__(self, classes: int) -> None:
        self.overlaps: dict[str, np.ndarray] = {}
        self.covered = np.zeros((classes, 2, 2))  # (class, all / active, covered / pixels)

    def add_overlap(self, name: str, predicted: np.ndarray, reference: np.ndarray) -> None:
        self.overlaps[name] = self.overlaps.get(name, 0) + overlap(predicted, reference)

    def add_coverage(self, pit: np.ndarray, active: np.ndarray) -> None:
        inside = (pit >= 0.05) & (pit <= 0.95)
        axes = (0, 2, 3)
        self.covered[:, 0] += np.stack([inside.sum(axes), np.full(inside.shape[1], inside[:, 0].size)], axis=1)
        self.covered[:, 1] += np.stack([(inside & active).sum(axes), active.sum(axes)], axis=1)

    def result(self, classes: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, name in enumerate(classes):
            entry: dict[str, Any] = {}
            for comparison, counts in self.overlaps.items():
                dice, iou = dice_iou(counts[k])
                entry[comparison] = {"dice": float(dice), "iou": float(iou), "pixels": int(counts[k][2])}
            with np.errstate(invalid="ignore"):
                share = self.covered[k, :, 0] / self.covered[k, :, 1]
            entry["coverage_90"] = {"all_pixels": float(share[0]), "drawn_or_predicted": float(share[1]),
                                    "drawn_or_predicted_pixels": int(self.covered[k, 1, 1])}
            out[name] = entry
        return out


def evaluate_masks(predictions: str | Path, catalogue: str | Path | pd.DataFrame, out: str | Path | None = None,
                   mask_cols: Sequence[str] | None = None, volunteers_col: str | None = None, seed: int = 0,
                   batch_rows: int = 256) -> dict[str, Any]:
    """Metrics of a mask store against a catalogue's masks (see the module docstring); with ``out``, ``evaluation.json``
    (which records the predictions it was made from, as :func:`galaxymorph.evaluation.evaluate` does).

    ``mask_cols`` and ``volunteers_col`` default to the columns the model learned from
    (recorded in the predictions); the truth is read from ``true_<mask column>`` where
    the catalogue has it. Predictions of galaxies not in the catalogue are left out. The store is
    read ``batch_rows`` galaxies at a time, so memory does not grow with it.
    """
    meta = read_mask_metadata(predictions)
    mask_cols = list(mask_cols or meta["mask_cols"])
    volunteers_col = volunteers_col if volunteers_col is not None else meta.get("volunteers_col")
    if len(mask_cols) != len(meta["classes"]):
        raise ValueError(f"--mask-cols {','.join(mask_cols)}: the model predicts {len(meta['classes'])} classes "
                         f"({', '.join(meta['classes'])}); give one mask column for each, in that order")
    table = read_mask_table(catalogue, mask_cols, volunteers_col).set_index("id_str")
    truth_cols = [TRUE_MASK + c for c in mask_cols]
    columns, path = read_table(catalogue)
    has_truth = set(truth_cols) <= set(columns.columns)
    truth = read_mask_table(catalogue, truth_cols).set_index("id_str") if has_truth else None
    prep = Preprocessing.from_dict(meta["preprocessing"])
    rng = np.random.default_rng(seed)
    sums, galaxies = _Sums(len(mask_cols)), 0
    file = pq.ParquetFile(predictions)
    for batch in file.iter_batches(batch_size=batch_rows, columns=mask_columns(meta)):
        batch = batch.filter(pa.array([i in table.index for i in batch.column("id_str").to_pylist()], pa.bool_()))
        if not len(batch):
            continue
        ids, predicted = mask_arrays(batch, meta)
        rows = table.loc[ids].reset_index()
        shares = _framed(rows, mask_cols, rows["volunteers"].to_numpy(), prep)
        volunteers = rows["volunteers"].to_numpy()[:, None, None, None]
        counts = np.rint(shares * volunteers)
        model, majority = predicted["mean"] > THRESHOLD, shares > THRESHOLD
        sums.add_overlap("model_vs_volunteer_majority", model, majority)
        if truth is not None:
            true_rows = truth.loc[ids].reset_index()
            true = _framed(true_rows, truth_cols, np.ones(len(ids)), prep) > THRESHOLD
            sums.add_overlap("model_vs_truth", model, true)
            sums.add_overlap("volunteer_majority_vs_truth", majority, true)
        pit = predictive_pit(predicted["mean"], predicted["concentration"], counts, volunteers, rng)
        sums.add_coverage(pit, (counts > 0) | (predicted["mean"] > ACTIVE))
        galaxies += len(ids)
    if not galaxies:
        raise ValueError("no predicted id_str is in the catalogue; are these the right files?")
    result = {"galaxies": galaxies, "samples": meta["samples"], "threshold": THRESHOLD, "truth": has_truth,
              "classes": sums.result(meta["classes"])}
    if out is not None:
        result["made_from"] = {"predictions": predictions_identity(predictions),
                               "catalogue": None if path is None else str(path.resolve())}
        out = Path(out)
        claim_folder(out, EVALUATION_FILE)
        out.mkdir(parents=True, exist_ok=True)
        (out / EVALUATION_FILE).write_text(json.dumps(result, indent=2, allow_nan=True))
    return result
