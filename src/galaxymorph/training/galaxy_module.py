"""What one training step is: Dirichlet-Multinomial loss of the votes, logged per question."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor

from galaxymorph.losses import DirichletMultinomialLoss
from galaxymorph.models.galaxy_model import GalaxyModel

__all__ = ["GalaxyLightningModule", "warmup_cosine"]


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate factor: linear warm-up from ~0 to 1, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class GalaxyLightningModule(L.LightningModule):
    """Trains a :class:`GalaxyModel` with AdamW, optional warm-up + cosine schedule.

    Logs ``{train,val}/loss`` (mean over galaxies of the NLL summed over questions)
    and ``{train,val}/loss_<question>`` (each question's share, so they add up to
    the total; a question not provided for a galaxy counts 0 there).
    """

    def __init__(
        self,
        model: GalaxyModel,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        cosine: bool = True,
        warmup_fraction: float = 0.05,
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = DirichletMultinomialLoss(model.schema, reduction="none")
        self.lr = lr
        self.weight_decay = weight_decay
        self.cosine = cosine
        self.warmup_fraction = warmup_fraction
        self.question_names = model.schema.question_names
        # per-question loss sums and galaxy counts of the current epoch, by stage: summed here
        # and logged once per epoch, because a dozen self.log calls per step cost ~3% of a CPU step.
        # The training sums travel in checkpoints, so an epoch resumed mid-way reports all its steps.
        self._question_sums: dict[str, list[Tensor | float]] = {}
        self._restored_epoch: int | None = None

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def _step(self, batch: dict[str, Any], stage: str) -> Tensor:
        concentrations = self.model(batch["image"])
        per_question = self.loss(concentrations.float(), batch["votes"]).mean(dim=0)
        loss = per_question.sum()
        batch_size = batch["image"].shape[0]
        if stage == "train":
            self.log("train/loss_step", loss, prog_bar=True, batch_size=batch_size)
        else:
            self.log(f"{stage}/loss", loss, prog_bar=True, on_epoch=True, batch_size=batch_size, sync_dist=True)
        sums = self._question_sums.setdefault(stage, [torch.zeros_like(per_question), 0.0])
        sums[0] += per_question.detach() * batch_size
        sums[1] += batch_size
        return loss

    def _log_epoch_losses(self, stage: str) -> None:
        if stage not in self._question_sums:
            return
        total, galaxies = self._question_sums.pop(stage)
        means = total / galaxies
        losses = {f"{stage}/loss_{q}": v for q, v in zip(self.question_names, means)}
        if stage == "train":
            losses["train/loss_epoch"] = means.sum()
        self.log_dict(losses, sync_dist=True)

    def on_train_epoch_start(self) -> None:
        if self._restored_epoch is not None and self._restored_epoch != self.current_epoch:
            self._question_sums.pop("train", None)  # a finished epoch's sums: that epoch was logged before the stop
        elif "train" in self._question_sums:  # restored on the CPU; summed on the training device
            self._question_sums["train"][0] = self._question_sums["train"][0].to(self.device)
        self._restored_epoch = None

    def on_train_epoch_end(self) -> None:
        self._log_epoch_losses("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_losses("val")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "train" not in self._question_sums:
            return
        total, galaxies = self._question_sums["train"]
        sums = torch.cat([total.detach().float(), torch.tensor([galaxies], device=total.device)])
        if self.trainer.world_size > 1:  # every rank saves at once; each resumes with the ranks' mean share
            sums = self.trainer.strategy.reduce(sums, reduce_op="mean")
        checkpoint["epoch_loss_sums"] = {"epoch": self.current_epoch, "train": sums.cpu()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("epoch_loss_sums")
        if saved is not None:
            sums = saved["train"]
            self._question_sums["train"] = [sums[:-1].clone(), float(sums[-1])]
            self._restored_epoch = saved["epoch"]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        total = self.trainer.estimated_stepping_batches
        if not self.cosine or not math.isfinite(total):
            return optimizer
        total = int(total)
        warmup = int(self.warmup_fraction * total)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
