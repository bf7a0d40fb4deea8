"""The one builder of Lightning's ``Trainer``: the same guarantees for every command that runs a model.

- ``"fit"`` (train, fine-tune): checkpoints written beside their target and renamed (a
  kill mid-save keeps the previous one); torch's random state inside them, so a resumed
  run draws the augmentations and dropout masks an uninterrupted one would; DDP over
  gloo on CPU and NCCL on GPUs; no sanity check; logging at most once per epoch when an
  epoch is shorter than the logging interval.
- ``"predict"`` (predict, embed, the finishing pass of a training run): no logger and no
  checkpoints; processes spawned on one node (``ddp_spawn``), launched per node on many.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies import DDPStrategy

from galaxymorph.engine.settings import RunSettings
from galaxymorph.files import atomic_path

__all__ = ["AtomicCheckpointIO", "RandomState", "build_trainer"]

LOG_EVERY_N_STEPS = 10


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes beside the target then renames: a kill mid-save leaves the previous checkpoint intact."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class RandomState(Callback):
    """Keeps torch's random state in checkpoints: a resumed run draws the dropout masks and augmentations it would have.

    Lightning restores the weights, optimiser and position in the epoch, not the
    generators, so without this a resumed run trains on the same batches but not on
    the same numbers. Only torch's generators (CPU, and the current CUDA device's): training
    draws from no other. Rank 0 writes the checkpoint; every rank is seeded alike and draws
    alike, so its state is every rank's.
    """

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        cuda = torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None
        checkpoint["torch_rng"] = {"cpu": torch.get_rng_state(), **({"cuda": cuda} if cuda is not None else {})}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("torch_rng")  # absent in checkpoints written before this existed
        if state is not None:
            torch.set_rng_state(state["cpu"])
            if "cuda" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state(state["cuda"])  # this rank's current device


def _strategy(run: RunSettings, purpose: str) -> Any:
    if run.world_size == 1:
        return "auto"
    if purpose == "predict":
        return "ddp_spawn" if run.num_nodes == 1 else "ddp"
    cpu = run.accelerator == "cpu" or not torch.cuda.is_available()
    return DDPStrategy(process_group_backend="gloo") if cpu else "ddp"


def build_trainer(run: RunSettings, purpose: Literal["fit", "predict"], callbacks: list[Callback] | None = None,
                  steps_per_epoch: int | None = None, **options: Any) -> L.Trainer:
    """A ``Trainer`` on ``run``'s devices for ``purpose`` (see the module docstring).

    ``steps_per_epoch`` (fit) sets the logging interval for short epochs and, when the loader
    has no length (a shard stream), the epoch's length. ``options`` are further ``Trainer``
    arguments (``max_epochs``, ``logger``, ...). Build it inside :func:`galaxymorph.quiet.quiet_lightning`.
    """
    settings: dict[str, Any] = dict(
        accelerator=run.accelerator, devices=run.devices, num_nodes=run.num_nodes, precision=run.precision,
        strategy=_strategy(run, purpose), enable_progress_bar=run.progress, enable_model_summary=False,
    )
    callbacks = list(callbacks or [])
    if purpose == "fit":
        settings.update(
            plugins=[AtomicCheckpointIO()], num_sanity_val_steps=0,
            log_every_n_steps=min(LOG_EVERY_N_STEPS, steps_per_epoch or LOG_EVERY_N_STEPS),
        )
        callbacks.insert(0, RandomState())
    elif purpose == "predict":
        settings.update(logger=False, enable_checkpointing=False)
    else:
        raise ValueError(f"purpose must be 'fit' or 'predict', got {purpose!r}")
    return L.Trainer(**settings, callbacks=callbacks, **options)
