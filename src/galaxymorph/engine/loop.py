"""The one loop that runs a model over galaxies: ``Trainer.predict`` with a module's predict step and callbacks.

``predict``, ``embed``, the finishing pass of a training run and the benchmarks all go
through :func:`run_over_galaxies`: devices, precision, DDP and moving batches to the
model's device are the Trainer's; what a step returns goes to the caller's callbacks
(a part writer) or comes back as a list.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable

import torch
from lightning import pytorch as pl
from lightning.pytorch.callbacks import Callback, RichProgressBar
from torch.utils.data import DataLoader

from galaxymorph.accelerators import check_accelerator, pin_memory
from galaxymorph.data.inputs import GalaxyStream, Record, Records, collate_galaxies
from galaxymorph.engine.progress import PendingProgressBar
from galaxymorph.engine.settings import RunSettings
from galaxymorph.engine.trainer import build_trainer
from galaxymorph.quiet import quiet_lightning

__all__ = ["GalaxyInputs", "run_over_galaxies", "share_threads"]


class GalaxyInputs(pl.LightningDataModule):
    """The galaxies of ``records`` not in ``skip``, read with the model's preprocessing; each process builds its
    loader once it knows its rank, and reads only its share (:class:`galaxymorph.data.inputs.Records`)."""

    def __init__(self, records: Callable[[], Iterable[Record]], preprocessing: dict[str, Any], run: RunSettings,
                 skip: frozenset[str] = frozenset()):
        super().__init__()
        self.records, self.preprocessing, self.run, self.skip = records, preprocessing, run, skip

    def predict_dataloader(self) -> DataLoader:
        stream = GalaxyStream(self.records, self.preprocessing, self.skip, self.trainer.global_rank,
                              self.trainer.world_size)
        return DataLoader(stream, batch_size=self.run.batch_size, num_workers=self.run.workers,
                          collate_fn=collate_galaxies, pin_memory=pin_memory(self.run.accelerator))

    def progress_bar(self) -> RichProgressBar:
        return _progress_bar(self.records, self.skip, self.run.batch_size, self.run.workers)


class _LoaderInputs(pl.LightningDataModule):
    def __init__(self, loader: DataLoader) -> None:
        super().__init__()
        self.loader = loader

    def predict_dataloader(self) -> DataLoader:
        return self.loader

    def progress_bar(self) -> RichProgressBar:
        # a stream of shard records has no length: it counts its batches from them (a map-style loader has one)
        return _progress_bar(getattr(self.loader.dataset, "records", None), frozenset(), self.loader.batch_size,
                             self.loader.num_workers)


def _progress_bar(records: Any, skip: frozenset[str], batch_size: int, workers: int) -> RichProgressBar:
    """With a total and an ETA when the records can count what is pending; else Lightning's own."""
    if isinstance(records, Records):
        return PendingProgressBar(records, skip, batch_size, workers)
    return RichProgressBar()


def share_threads(trainer: pl.Trainer) -> None:
    """Several processes on one machine share its cores instead of each taking them all."""
    if trainer.world_size > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // trainer.world_size))


def run_over_galaxies(module: pl.LightningModule, inputs: GalaxyInputs | DataLoader, run: RunSettings,
                      callbacks: list[Callback] | None = None, return_predictions: bool = False) -> tuple[int, list[Any]]:
    """Run ``module``'s predict step over ``inputs`` on ``run``'s devices; returns (this process's rank, outputs).

    ``inputs`` is a :class:`GalaxyInputs` (records, streamed and split between processes) or
    a ready ``DataLoader`` (one device). The outputs are returned only with
    ``return_predictions``; otherwise the ``callbacks`` (a writer) take them batch by batch.
    """
    check_accelerator(run.accelerator, run.devices)
    datamodule = inputs if isinstance(inputs, GalaxyInputs) else _LoaderInputs(inputs)
    progress = [datamodule.progress_bar()]
    # a stream has no sampler to take batch indices from; the writers need none
    with quiet_lightning("Couldn't infer the batch indices"):
        trainer = build_trainer(run, "predict", [*(callbacks or []), *(progress if run.progress else [])])
        outputs = trainer.predict(module, datamodule=datamodule, return_predictions=return_predictions)
    return trainer.global_rank, list(outputs or [])
