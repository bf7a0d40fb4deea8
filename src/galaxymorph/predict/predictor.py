"""The MC-dropout predictor: the encoder once per galaxy, the head N times, rows streamed into parts.

Dropout lives only in the head, so N posterior samples cost one encoder pass
plus N cheap head passes instead of N full forward passes. Lightning runs it on
one process or many (``ddp_spawn`` on one node, ``ddp`` across nodes).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd
import pyarrow as pa
import torch
from lightning import pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter, RichProgressBar
from torch import nn
from torch.utils.data import DataLoader

from galaxymorph.accelerators import check_accelerator, pin_memory
from galaxymorph.data.inputs import (
    GalaxyStream,
    Record,
    Records,
    collate_galaxies,
    describe_inputs,
    prediction_records,
)
from galaxymorph.data.transforms import (
    DIHEDRAL,
    Preprocessing,
    dihedral_views,
    eval_transform,
)
from galaxymorph.models import load_model
from galaxymorph.models.head import galaxy_keys, subkeys
from galaxymorph.models.loading import Checkpoints
from galaxymorph.predict.layout import (
    TableBuilder,
    ood_flagged,
    output_format,
    with_ood_scores,
)
from galaxymorph.predict.parts import (
    ERRORS,
    ErrorLog,
    PartWriter,
    check_output_file,
    errors_path,
    made_by,
    merge_parts,
    parts_dir,
    resumable_output,
)
from galaxymorph.predict.progress import PendingProgressBar
from galaxymorph.quiet import quiet_lightning

__all__ = ["MCDropoutPredictor", "OODWarning", "posterior", "posterior_samples", "predict", "predict_records",
           "stream_predict"]

OOD_WARN_SHARE = 0.25  # more flagged than this (5% expected in distribution) is a catalogue problem, not a few odd galaxies


class OODWarning(UserWarning):
    """Most of a catalogue is unlike the model's training images, so its predictions may be confidently wrong."""


# How predict draws MC-dropout masks, in every output's made_by: files whose masks came from a
# shared random stream (before this) are not resumed with per-galaxy masks.
MASKS = "from each id_str"


def _made_by(model: nn.Module, checkpoint: Checkpoints, samples: int, tta: bool) -> dict[str, Any]:
    """What makes a predictions file's rows (:func:`made_by` with predict's own settings)."""
    masks = {"dropout_masks": MASKS} if samples > 1 else {}  # one sample is the head without dropout
    return made_by(model, checkpoint, "predict", samples=samples, tta=tta, **masks)


def _applied_calibration(model: nn.Module) -> dict[str, float] | None:
    """The calibration scale per question that every one of ``model``'s samples carries, or None.

    An ensemble's members were calibrated each on its own, and their samples lie in
    blocks per member and per TTA view (:func:`posterior`); undoing different scales
    would need that layout in evaluate, so an ensemble records its members' scales
    only when they are all the same (then every sample carries them), else none.
    """
    scales = [member.config.get("calibration") for member in getattr(model, "models", [model])]
    return scales[0] if all(s == scales[0] for s in scales) else None


def posterior_samples(model: nn.Module, images: torch.Tensor, samples: int, tta: bool = False,
                      keys: torch.Tensor | None = None) -> torch.Tensor:
    """(B, outputs, samples) head passes over one encoder pass; with ``tta`` (B, outputs, 8 x samples).

    The 8 rotation/flip views of each galaxy (:func:`dihedral_views`) go through the
    encoder as one batch, and each view's ``samples`` MC-dropout passes are further
    samples of the same posterior, view by view. ``keys`` (:func:`galaxy_keys`) fix
    each galaxy's dropout masks, each view its own.
    """
    return posterior(model, images, samples, tta, keys, ood=False)[0]


def posterior(model: nn.Module, images: torch.Tensor, samples: int, tta: bool = False,
              keys: torch.Tensor | None = None, ood: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`posterior_samples` and, with ``ood``, each galaxy's ``ood_score`` (None without an OOD reference).

    The score reuses the encoder pass: the unrotated view's features, as the reference was made.
    """
    views = dihedral_views(images) if tta else images[None]  # the first view is the image itself
    features = model.features(views.flatten(0, 1))
    view_keys = None if keys is None else torch.cat([subkeys(keys, v) for v in range(len(views))])
    per_view = model.sample(features, samples, view_keys)  # (views x B, outputs, samples)
    unrotated = [f[: len(images)] for f in features] if isinstance(features, list) else features[: len(images)]
    score = getattr(model, "ood_score", None) if ood else None
    scores = None if score is None else score(images, unrotated)
    return per_view.unflatten(0, views.shape[:2]).permute(1, 2, 0, 3).flatten(2), scores


class MCDropoutPredictor(pl.LightningModule):
    """The encoder once, then ``samples`` head passes; returns the head's samples (B, outputs, samples) and ood scores.

    With ``tta`` the encoder sees the 8 rotation/flip views at once and the samples are 8 x ``samples``.
    The scores (B,) are None for a model without an OOD reference (see :func:`posterior`).
    """

    def __init__(self, model: nn.Module, samples: int, tta: bool = False):
        super().__init__()
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.model, self.samples, self.tta = model, samples, tta
        self._transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    def on_predict_start(self) -> None:
        if self.trainer.world_size > 1:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.trainer.world_size))
        self._transform = eval_transform(Preprocessing.from_dict(self.model.config["preprocessing"]))
        self.model.eval()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        if batch["image"] is None:
            return None
        assert self._transform is not None
        keys = galaxy_keys(batch["id_str"])
        samples, scores = posterior(self.model, self._transform(batch["image"]), self.samples, self.tta, keys)
        return samples.float(), scores


class _WriteParts(BasePredictionWriter):
    """Turns each batch's samples into rows (``to_table``) for this process's part writer; errors to its log."""

    def __init__(self, out: Path, layout: pa.Schema, to_table: TableBuilder, rows_per_part: int):
        super().__init__(write_interval="batch")
        self.out, self.layout, self.to_table, self.rows_per_part = out, layout, to_table, rows_per_part

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        directory = parts_dir(self.out)
        self.writer = PartWriter(directory, self.layout, trainer.global_rank, self.rows_per_part)
        self.errors = ErrorLog(directory / f"errors-{self.writer.prefix}.csv")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx) -> None:  # type: ignore[override]
        self.errors.write(batch["errors"])
        if prediction is None:
            return
        rows, scores = prediction if isinstance(prediction, tuple) else (prediction, None)  # embed: features alone
        table = self.to_table(batch["id_str"], rows.cpu().numpy(), batch["file_loc"])
        self.writer.write_table(table if scores is None else with_ood_scores(table, scores.float().cpu().numpy()))

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.writer.close()
        self.errors.close()
        trainer.strategy.barrier("parts written")  # rank 0 merges only once every rank (every node) is done


class _Inputs(pl.LightningDataModule):
    """Builds each process's loader once the process knows its rank."""

    def __init__(self, records: Callable[[], Iterable[Record]], preprocessing: dict[str, Any],
                 skip: frozenset[str], batch_size: int, workers: int, pin_memory: bool = False):
        super().__init__()
        self.records, self.preprocessing, self.skip = records, preprocessing, skip
        self.batch_size, self.workers, self.pin_memory = batch_size, workers, pin_memory

    def predict_dataloader(self) -> DataLoader:
        stream = GalaxyStream(self.records, self.preprocessing, self.skip,
                              self.trainer.global_rank, self.trainer.world_size)
        return DataLoader(stream, batch_size=self.batch_size, num_workers=self.workers,
                          collate_fn=collate_galaxies, persistent_workers=False, pin_memory=self.pin_memory)


def _progress_bar(records: Callable[[], Iterable[Record]], done: frozenset[str], batch_size: int,
                  workers: int) -> RichProgressBar:
    if isinstance(records, Records):
        return PendingProgressBar(records, done, batch_size, workers)
    return RichProgressBar()  # a generator of unknown length: batches done, no total


def stream_predict(module: pl.LightningModule, records: Callable[[], Iterable[Record]], out: Path,
                   skip: frozenset[str], layout: pa.Schema, to_table: TableBuilder, batch_size: int = 64,
                   workers: int = 0, devices: int = 1, num_nodes: int = 1, accelerator: str = "auto",
                   precision: str = "32-true", rows_per_part: int = 50_000, progress: bool = True,
                   callbacks: list[pl.Callback] | None = None) -> int:
    """Run ``module``'s predict step over the pending records into ``out``'s parts; returns this process's rank.

    The one Lightning loop behind ``predict`` and ``embed``: devices, precision and
    moving batches to the model's device are the Trainer's. Records that can count
    their pending galaxies (``data.inputs.Records``) give the progress bar a total and an ETA.
    """
    check_accelerator(accelerator, devices)
    distributed = devices > 1 or num_nodes > 1
    inputs = _Inputs(records, module.model.config["preprocessing"], skip, batch_size, workers, pin_memory(accelerator))
    # a stream has no sampler to take batch indices from; the writer needs none
    with quiet_lightning("Couldn't infer the batch indices"):
        trainer = pl.Trainer(
            accelerator=accelerator,
            devices=devices,
            num_nodes=num_nodes,
            precision=precision,
            strategy=("ddp_spawn" if num_nodes == 1 else "ddp") if distributed else "auto",
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress,
            callbacks=[_WriteParts(out, layout, to_table, rows_per_part), *(callbacks or [])]
            + ([_progress_bar(records, skip, batch_size, workers)] if progress else []),
        )
        trainer.predict(module, datamodule=inputs, return_predictions=False)
    return trainer.global_rank


def predict_records(
    model: nn.Module,
    records: Callable[[], Iterable[Record]],
    out: str | Path,
    samples: int = 5,
    batch_size: int = 64,
    workers: int = 0,
    devices: int = 1,
    num_nodes: int = 1,
    accelerator: str = "auto",
    rows_per_part: int = 50_000,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    precision: str = "32-true",
    callbacks: list[pl.Callback] | None = None,
    tta: bool = False,
) -> dict[str, int]:
    """Predict every record not yet in ``out``, then merge; returns counts (rows, new, errors, parts).

    ``records`` is a picklable callable giving (id_str, image path or uint8 pixels).
    With ``devices`` > 1 (or ``num_nodes`` > 1) each process predicts its share of the
    pending records (:class:`galaxymorph.data.inputs.Records`) and writes its own parts. ``accelerator``, ``devices``
    and ``precision`` are Lightning's; ``callbacks`` are extra Lightning callbacks.
    ``tta`` adds the 8 rotation/flip views as samples (8 x ``samples`` per galaxy).
    """
    out = Path(out)
    check_output_file(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"preprocessing": model.config["preprocessing"], **(metadata or {})}
    meta["made_by"] = meta.get("made_by") or _made_by(model, model, samples, tta)
    if scales := _applied_calibration(model):  # for evaluate's "before"; made_by's fingerprint covers them already
        meta["calibration"] = scales
    with resumable_output(out, meta["made_by"]) as done:
        views = len(DIHEDRAL) if tta else 1
        layout, to_table = output_format(model.config, samples * views * getattr(model, "members", 1), meta)
        rank = stream_predict(MCDropoutPredictor(model, samples, tta), records, out, frozenset(done), layout, to_table,
                              batch_size, workers, devices, num_nodes, accelerator, precision, rows_per_part, progress,
                              callbacks)
        if rank != 0:
            return {"rows": 0, "new": 0, "errors": 0, "parts": 0}
        had_errors = any(parts_dir(out).glob(ERRORS))
        rows, parts = merge_parts(out)
    warn_if_out_of_distribution(out)
    errors = len(pd.read_csv(errors_path(out))) if had_errors and errors_path(out).exists() else 0
    return {"rows": rows, "new": rows - len(done), "errors": errors, "parts": parts}


def warn_if_out_of_distribution(out: Path) -> None:
    """One :class:`OODWarning` when over :data:`OOD_WARN_SHARE` of the galaxies in ``out`` (all, resumed ones too) are flagged."""
    counts = ood_flagged(out) if out.exists() else None
    if not counts or counts[0] <= OOD_WARN_SHARE * counts[1]:
        return
    flagged, total = counts
    warnings.warn(
        f"{flagged / total:.0%} of the galaxies in {out} ({flagged} of {total}) have ood_score > 1: they look unlike "
        "the images the model was trained on, so their predictions may be confidently wrong. Usual causes: another "
        "cut-out scale (zoom), another colour stretch, other bands or greyscale, another survey; prepare the images "
        "as the training ones were, or sort and filter by ood_score", OODWarning, stacklevel=3)


def predict(
    checkpoint: Checkpoints,
    out: str | Path,
    images_dir: str | Path | None = None,
    catalogue: str | Path | None = None,
    shards: str | Path | None = None,
    split: str | None = None,
    samples: int = 5,
    batch_size: int = 64,
    workers: int = 0,
    devices: int = 1,
    num_nodes: int = 1,
    progress: bool = True,
    accelerator: str = "auto",
    precision: str = "32-true",
    tta: bool = False,
) -> dict[str, int]:
    """A trained or fine-tuned model's predictions for a folder of images, a catalogue, or shards (exactly one).

    A list of checkpoints (the same outputs, e.g. other seeds) predicts as one ensemble:
    ``samples`` from each model, stacked into one posterior.

    Example:
        >>> predict("runs/demo", "preds.parquet", catalogue="galaxies.csv", samples=5)  # doctest: +SKIP
        {'rows': 1000, 'new': 1000, 'errors': 0}
    """
    model = load_model(checkpoint)
    records = prediction_records(images_dir, catalogue, shards, split, model.config["preprocessing"])
    return predict_records(model, records, out, samples=samples, batch_size=batch_size, workers=workers,
                           devices=devices, num_nodes=num_nodes, progress=progress, accelerator=accelerator,
                           precision=precision, tta=tta,
                           metadata={"source": describe_inputs(images_dir, catalogue, shards),
                                     "made_by": _made_by(model, checkpoint, samples, tta)})
