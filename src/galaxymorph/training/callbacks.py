"""The callbacks a training or fine-tuning run uses: the best model exported, progress, atomic checkpoints."""

from __future__ import annotations

import math
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, RichProgressBar

from galaxymorph.models.checkpoint import save_model

__all__ = ["MONITOR", "AtomicCheckpointIO", "ExportBest", "TrainingProgress"]

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


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes beside the target then renames: a kill mid-save leaves the previous checkpoint intact."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        tmp = f"{path}.tmp"
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)
