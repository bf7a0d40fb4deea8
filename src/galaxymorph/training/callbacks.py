"""The callbacks a training or fine-tuning run adds to the engine's: the best model exported, the EMA, progress."""

from __future__ import annotations

import math
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback, RichProgressBar, WeightAveraging

from galaxymorph.models.checkpoint import save_model

__all__ = ["MONITOR", "ExportBest", "TrainingProgress", "WeightsEMA"]

MONITOR = "val/loss"


class ExportBest(Callback):
    """Writes ``RUN/best`` (safetensors + JSON) whenever the validation loss improves."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.best = float("inf")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or MONITOR not in trainer.callback_metrics:
            return
        loss = float(trainer.callback_metrics[MONITOR])
        if loss < self.best:
            self.best = loss
            if trainer.is_global_zero:
                save_model(pl_module.model, self.directory)
                info = {"val_loss": loss, "epoch": trainer.current_epoch, "global_step": trainer.global_step}
                (self.directory / "training.yaml").write_text(yaml.safe_dump(info))

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]


class WeightsEMA(WeightAveraging):
    """An exponential moving average of the weights, validated, exported and finally kept in their place.

    The decay warms up as ``(1 + n) / (10 + n)`` after ``n`` updates (TensorFlow's
    ``ExponentialMovingAverage(num_updates=n)``), so the average does not remember the
    random initialisation. Lightning swaps the average
    out again when the validation epoch ends, before ``on_validation_end`` where
    :class:`ExportBest` saves: here it stays in until then, so the exported weights are
    the ones validated (list this callback after ``ExportBest``).
    """

    def __init__(self, decay: float) -> None:
        def average(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
            """One update of a group of same-dtype tensors, in one fused call (not one per tensor)."""
            if not averaged[0].is_floating_point():  # counters such as batch norm's num_batches_tracked
                torch._foreach_copy_(averaged, current)
                return
            n = float(updates)
            torch._foreach_lerp_(averaged, current, 1 - min(decay, (1 + n) / (10 + n)))

        super().__init__(multi_avg_fn=average)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """The average on the device training runs on (Lightning's would stay where the model was built)."""
        self._device = self._device or trainer.strategy.root_device
        super().setup(trainer, pl_module, stage)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Keeps the average in for ExportBest (see the class docstring)."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_epoch_end(trainer, pl_module)


class TrainingProgress(RichProgressBar):
    """Lightning's progress bar, plus the time left for the whole run (every epoch), not only this epoch."""

    _start: tuple[float, int] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._start = (time.monotonic(), trainer.global_step)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        total = trainer.max_epochs * trainer.num_training_batches
        if self._start is not None and trainer.global_step > self._start[1] and math.isfinite(total):
            seconds_per_step = (time.monotonic() - self._start[0]) / (trainer.global_step - self._start[1])
            metrics["run left"] = str(timedelta(seconds=round(seconds_per_step * (total - trainer.global_step))))
        return metrics
