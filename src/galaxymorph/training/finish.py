"""Finish a run on its validation split: calibration scales and the OOD reference, saved with ``RUN/best``.

One pass over the validation galaxies, predicted as ``galaxymorph predict`` would
(eval transform, the encoder once, ``samples`` MC-dropout passes of the head):

- one scale per question fitted to their votes (:mod:`galaxymorph.calibration`), in
  ``config.json``'s ``"calibration"``;
- the first ``ood_galaxies`` of them as the reference that ``predict``'s ``ood_score``
  measures new galaxies against (:mod:`galaxymorph.models.ood`): held out from training
  and in distribution, so their own leave-one-out scores set the threshold.

The weights are not touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from galaxymorph.calibration import fit_scales
from galaxymorph.models import GalaxyModel, load_model, save_model
from galaxymorph.models.ood import OODReference, image_statistics

__all__ = ["finish_run"]


@torch.inference_mode()
def finish_run(best: Path, datamodule: L.LightningDataModule, calibrate: bool = True, ood_galaxies: int = 4000,
               samples: int = 5, seed: int = 0) -> dict[str, Any]:
    """Fit what is asked on ``datamodule``'s validation batches, save it with the model in ``best``; returns it.

    ``{"calibration": scales, "ood": {k, threshold, ...}}``, each only when fitted
    (``ood_galaxies=0`` or fewer than 2 validation galaxies: no reference).
    """
    model = load_model(best, check_files=False)  # saved again below, every file: also after an interrupted save
    model.set_calibration(None)  # fitted on the raw posterior; and an earlier attempt's
    model.set_ood_reference(None)  # calibration or reference goes when no longer asked for
    fitted: dict[str, Any] = {}
    if calibrate or ood_galaxies:
        fitted = _fit(model, datamodule, calibrate, ood_galaxies, samples, seed)
    save_model(model, best)
    return fitted


def _fit(model: GalaxyModel, datamodule: L.LightningDataModule, calibrate: bool, ood_galaxies: int, samples: int,
         seed: int) -> dict[str, Any]:
    """The one pass over the validation batches; sets what it fits on ``model`` and returns it."""
    torch.manual_seed(seed)  # the MC-dropout masks
    concentrations, votes, stats, features = [], [], [], []
    kept = 0
    for batch in datamodule.val_dataloader():
        batch = datamodule.on_after_batch_transfer(batch, 0)  # the deterministic evaluation transform
        batch_features = model.features(batch["image"])
        if calibrate:
            concentrations.append(model.sample(batch_features, samples).double().numpy())
            votes.append(batch["votes"].double().numpy())
        if kept < ood_galaxies:
            stats.append(image_statistics(batch["image"][: ood_galaxies - kept]))
            features.append(batch_features[: ood_galaxies - kept])
            kept += len(features[-1])
        elif not calibrate:
            break
    fitted: dict[str, Any] = {}
    if concentrations:
        fitted["calibration"] = fit_scales(np.concatenate(concentrations), np.concatenate(votes), model.schema)
        model.set_calibration(fitted["calibration"])
    if kept >= 2:
        model.set_ood_reference(OODReference.fit(torch.cat(stats), torch.cat(features)))
        fitted["ood"] = model.config["ood"]
    return fitted
