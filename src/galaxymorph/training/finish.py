"""Finish a run on its validation split: calibration scales and the OOD reference, saved with ``RUN/best``.

One pass over every validation galaxy, run as ``galaxymorph predict`` runs a model
(:class:`galaxymorph.prediction.mc_dropout.MCDropoutPredictor` in the one loop,
:func:`galaxymorph.engine.run_over_galaxies`: the evaluation transform, the encoder
once, ``samples`` MC-dropout passes of the head with each galaxy's masks from its
``id_str``), in one process on the device and in the precision the run trained with:

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
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from galaxymorph.calibration import fit_scales
from galaxymorph.data.datamodule import GalaxyDataModule
from galaxymorph.engine import RunSettings, run_over_galaxies
from galaxymorph.models import GalaxyModel, load_model, save_model
from galaxymorph.models.ood import OODReference, image_statistics
from galaxymorph.prediction.mc_dropout import DEFAULT_SAMPLES, MCDropoutPredictor

__all__ = ["finish_run"]


class _ValidationPass(MCDropoutPredictor):
    """Per batch: the head's samples and the votes (to calibrate), image statistics and features (the reference)."""

    def __init__(self, model: GalaxyModel, samples: int, calibrate: bool, ood_galaxies: int,
                 datamodule: L.LightningDataModule | None) -> None:
        super().__init__(model, samples)
        self.calibrate, self.ood_galaxies, self.kept = calibrate, ood_galaxies, 0
        self.datamodule = datamodule

    def images(self, batch: dict[str, Any]) -> torch.Tensor:
        """uint8 pixels through the model's evaluation transform; another data module's batches through its own."""
        if self.datamodule is None:
            return super().images(batch)
        return self.datamodule.on_after_batch_transfer(batch, 0)["image"]

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        images, samples, features = self.run(batch)
        out: dict[str, torch.Tensor] = {}
        if self.calibrate:
            out["samples"], out["votes"] = samples.double().cpu(), batch["votes"].double().cpu()
        keep = max(0, min(len(images), self.ood_galaxies - self.kept))
        if keep:
            out["stats"], out["features"] = image_statistics(images[:keep]).cpu(), features[:keep].float().cpu()
            self.kept += keep
        return out


def _validation_loader(datamodule: L.LightningDataModule) -> tuple[DataLoader, L.LightningDataModule | None]:
    """Every validation galaxy for one process (also after a DDP fit, whose loaders give each rank its share),
    and the data module whose transform its batches need (None: uint8 pixels, the model's own transform)."""
    if isinstance(datamodule, GalaxyDataModule):
        return datamodule.evaluation_loader("val"), None
    return datamodule.val_dataloader(), datamodule


def finish_run(best: Path, datamodule: L.LightningDataModule, calibrate: bool = True, ood_galaxies: int = 4000,
               samples: int = DEFAULT_SAMPLES, run: RunSettings | None = None,
               callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Fit what is asked on ``datamodule``'s validation galaxies, save it with the model in ``best``; returns it.

    ``{"calibration": scales, "ood": {k, threshold, ...}}``, each only when fitted
    (``ood_galaxies=0`` or fewer than 2 validation galaxies: no reference). ``run`` gives
    the accelerator and precision (the pass uses one device); ``callbacks`` are extra
    Lightning callbacks of the pass.
    """
    model = load_model(best, check_files=False)  # saved again below, every file: also after an interrupted save
    model.set_calibration(None)  # fitted on the raw posterior; and an earlier attempt's
    model.set_ood_reference(None)  # calibration or reference goes when no longer asked for
    fitted: dict[str, Any] = {}
    if calibrate or ood_galaxies:
        one_device = RunSettings.of(run, devices=1, num_nodes=1)
        loader, transforming = _validation_loader(datamodule)
        _, outputs = run_over_galaxies(_ValidationPass(model, samples, calibrate, ood_galaxies, transforming), loader,
                                       one_device, callbacks, return_predictions=True)
        fitted = _fit(model, outputs)
    save_model(model.cpu(), best)
    return fitted


def _fit(model: GalaxyModel, outputs: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Sets on ``model`` what the pass's outputs fit, and returns it."""
    def joined(key: str) -> torch.Tensor | None:
        parts = [batch[key] for batch in outputs if key in batch]
        return torch.cat(parts) if parts else None

    fitted: dict[str, Any] = {}
    samples, votes, stats, features = (joined(key) for key in ("samples", "votes", "stats", "features"))
    if samples is not None:
        fitted["calibration"] = fit_scales(samples.numpy(), votes.numpy(), model.schema)
        model.set_calibration(fitted["calibration"])
    if features is not None and len(features) >= 2:
        model.set_ood_reference(OODReference.fit(stats, features))
        fitted["ood"] = model.config["ood"]
    return fitted

