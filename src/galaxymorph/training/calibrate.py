"""Calibrate a finished run on its validation split: one scale per question, saved in ``RUN/best/config.json``.

See :mod:`galaxymorph.calibration` for what the scales are and why. The validation
galaxies are predicted as ``galaxymorph predict`` would (eval transform, the encoder
once, ``samples`` MC-dropout passes of the head), and the scales are fitted to their
votes; the weights are not touched.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch

from galaxymorph.calibration import fit_scales
from galaxymorph.models import load_model, save_model

__all__ = ["calibrate_run"]


@torch.inference_mode()
def calibrate_run(best: Path, datamodule: L.LightningDataModule, samples: int = 5, seed: int = 0) -> dict[str, float]:
    """Fit the scales on ``datamodule``'s validation batches and save them with the model in ``best``."""
    model = load_model(best)
    model.set_calibration(None)  # fitted on the raw posterior, also when a resumed run is calibrated again
    torch.manual_seed(seed)  # the MC-dropout masks
    concentrations, votes = [], []
    for batch in datamodule.val_dataloader():
        batch = datamodule.on_after_batch_transfer(batch, 0)  # the deterministic evaluation transform
        concentrations.append(model.sample(model.features(batch["image"]), samples).double().numpy())
        votes.append(batch["votes"].double().numpy())
    if not concentrations:
        return {}
    scales = fit_scales(np.concatenate(concentrations), np.concatenate(votes), model.schema)
    model.set_calibration(scales)
    save_model(model, best)
    return scales
