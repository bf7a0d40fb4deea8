"""``predict``: posterior samples of every galaxy of a catalogue or shards, rows streamed into parts.

Lightning runs :class:`~galaxymorph.prediction.mc_dropout.MCDropoutPredictor` on one
process or many (``ddp_spawn`` on one node, ``ddp`` across nodes).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

from lightning import pytorch as pl
from torch import nn

from galaxymorph.accelerators import device_type
from galaxymorph.data.inputs import Record, describe_inputs, prediction_records
from galaxymorph.data.transforms import DIHEDRAL
from galaxymorph.engine import RunSettings
from galaxymorph.models import load_model
from galaxymorph.models.loading import Checkpoints
from galaxymorph.prediction.backends import check_backend, numerics
from galaxymorph.prediction.layout import ood_flagged, output_format
from galaxymorph.prediction.masks import write_masks
from galaxymorph.prediction.mc_dropout import MCDropoutPredictor
from galaxymorph.prediction.parts import made_by
from galaxymorph.prediction.writer import claim_output, write_outputs

__all__ = ["OODWarning", "predict", "predict_records"]

OOD_WARN_SHARE = 0.25  # more flagged than this (5% expected in distribution) is a catalogue problem, not a few odd galaxies


class OODWarning(UserWarning):
    """Most of a catalogue is unlike the model's training images, so its predictions may be confidently wrong."""


# How predict draws MC-dropout masks, in every output's made_by: files whose masks came from a
# shared random stream (before this) are not resumed with per-galaxy masks.
MASKS = "from each id_str"


def _made_by(model: nn.Module, checkpoint: Checkpoints, samples: int, tta: bool, precision: str,
             backend: str) -> dict[str, Any]:
    """What makes a predictions file's rows (:func:`made_by` with predict's own settings)."""
    masks = {"dropout_masks": MASKS} if samples > 1 else {}  # one sample is the head without dropout
    return made_by(model, checkpoint, "predict", samples=samples, tta=tta, **masks, **numerics(precision, backend))


def _applied_calibration(model: nn.Module) -> dict[str, float] | None:
    """The calibration scale per question that every one of ``model``'s samples carries, or None.

    An ensemble's members were calibrated each on its own, and their samples lie in
    blocks per member and per TTA view (:func:`posterior`); undoing different scales
    would need that layout in evaluate, so an ensemble records its members' scales
    only when they are all the same (then every sample carries them), else none.
    """
    scales = [member.config.get("calibration") for member in getattr(model, "models", [model])]
    return scales[0] if all(s == scales[0] for s in scales) else None


def predict_records(model: nn.Module, records: Callable[[], Iterable[Record]], out: str | Path, samples: int = 5,
                    tta: bool = False, run: RunSettings | None = None, metadata: dict[str, Any] | None = None,
                    rows_per_part: int = 50_000, callbacks: list[pl.Callback] | None = None, backend: str = "eager",
                    **run_options: Any) -> dict[str, int]:
    """Predict every record not yet in ``out``, then merge; returns counts (rows, new, errors, parts).

    ``records`` is a picklable callable giving (id_str, image path or uint8 pixels).
    ``run`` (or its fields as keywords: ``batch_size``, ``workers``, ``devices``, ...) says
    where and how: with several processes each predicts its share of the pending records
    (:class:`galaxymorph.data.inputs.Records`) into its own parts. ``tta`` adds the 8
    rotation/flip views as samples (8 x ``samples`` per galaxy); ``callbacks`` are extra
    Lightning callbacks. ``backend`` runs the encoder (:mod:`galaxymorph.prediction.backends`:
    eager, onnx, openvino, or auto for the fastest installed).
    """
    run = RunSettings.of(run, **run_options)
    check_backend(backend, device_type(run.accelerator), run.precision)  # refused before anything is read
    module = MCDropoutPredictor(model, samples, tta, backend)
    out = claim_output(out)
    meta = {"preprocessing": model.config["preprocessing"], **(metadata or {})}
    meta["made_by"] = meta.get("made_by") or _made_by(model, model, samples, tta, run.precision, backend)
    if model.config.get("task") == "segmentation":
        if backend not in ("eager", "auto"):
            raise ValueError(f"--backend {backend} runs a classification model's encoder; predict a segmentation "
                             "model with --backend eager")
        return write_masks(model, records, out, samples, tta, run, meta, rows_per_part, callbacks)
    if scales := _applied_calibration(model):  # for evaluate's "before"; made_by's fingerprint covers them already
        meta["calibration"] = scales
    views = len(DIHEDRAL) if tta else 1
    layout, to_table = output_format(model.config, samples * views * getattr(model, "members", 1), meta)
    counts = write_outputs(module, records, out, meta["made_by"], layout, to_table, run, rows_per_part, callbacks)
    if out.exists() and counts["rows"]:
        warn_if_out_of_distribution(out)
    return counts


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


def predict(checkpoint: Checkpoints, out: str | Path, images_dir: str | Path | None = None,
            catalogue: str | Path | None = None, shards: str | Path | None = None, split: str | None = None,
            samples: int = 5, tta: bool = False, run: RunSettings | None = None, backend: str = "eager",
            **run_options: Any) -> dict[str, int]:
    """A trained or fine-tuned model's predictions for a folder of images, a catalogue, or shards (exactly one).

    A list of checkpoints (the same outputs, e.g. other seeds) predicts as one ensemble:
    ``samples`` from each model, stacked into one posterior. ``run`` (or its fields as
    keywords) says where and how (:class:`galaxymorph.engine.RunSettings`); ``backend`` what
    runs the encoder (:mod:`galaxymorph.prediction.backends`; ``auto``: the fastest installed).

    Example:
        >>> predict("runs/demo", "preds.parquet", catalogue="galaxies.csv", samples=5, batch_size=128)  # doctest: +SKIP
        {'rows': 1000, 'new': 1000, 'errors': 0, 'parts': 1}
    """
    run = RunSettings.of(run, **run_options)
    model = load_model(checkpoint)
    records = prediction_records(images_dir, catalogue, shards, split, model.config["preprocessing"])
    return predict_records(model, records, out, samples=samples, tta=tta, run=run, backend=backend,
                           metadata={"source": describe_inputs(images_dir, catalogue, shards),
                                     "made_by": _made_by(model, checkpoint, samples, tta, run.precision, backend)})
