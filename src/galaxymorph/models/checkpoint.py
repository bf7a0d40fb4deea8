"""Share a model as safetensors weights plus a JSON config (no pickles); :mod:`galaxymorph.models.loading` reads it back."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from safetensors.torch import save_file
from torch import nn

from galaxymorph.files import atomic_path, atomic_write_text, file_sha256, read_mapping
from galaxymorph.models.finetune_model import FinetunedModel
from galaxymorph.models.galaxy_model import CONFIG_VERSION, GalaxyModel
from galaxymorph.models.ood import OOD_FILE
from galaxymorph.models.segmentation import SegmentationModel

__all__ = ["save_model", "read_config", "resolve_model_dir", "fingerprint", "upgrade_config", "WEIGHTS_FILE",
           "CONFIG_FILE", "FILES_KEY"]

T = TypeVar("T")

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FILES_KEY = "files"  # in config.json: the sha256 of each tensor file saved with it

# What a key that older saves lack meant by its absence, per model_type (null: none).
_DEFAULTS: dict[str, dict[str, Any]] = {
    GalaxyModel.MODEL_TYPE: {"image_size": None, "preprocessing": None, "input_mean": 0.5, "input_std": 0.5,
                             "pretrained_from": None, "calibration": None, "ood": None, FILES_KEY: {}},
    FinetunedModel.MODEL_TYPE: {"channels_last": True, "encoder_args": {}, "ood": None, "temperature": None,
                                FILES_KEY: {}},
    SegmentationModel.MODEL_TYPE: {"channels_last": True, "encoder_args": {}, "ood": None, FILES_KEY: {}},
}


def save_model(model: GalaxyModel, directory: str | Path) -> Path:
    """Write ``model.safetensors``, ``config.json`` and, with an OOD reference, ``ood_reference.safetensors``.

    Each file is written beside its final name then renamed, so a crash mid-write never
    leaves a half-written file where a good one was. A crash between two renames can
    still leave files of two saves side by side: ``config.json``, written last, lists the
    sha256 of the tensor files it belongs with, and loading refuses any other.
    ``directory`` is created if needed.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {WEIGHTS_FILE: model.state_dict()}
    if getattr(model, "ood", None) is not None:
        tensors[OOD_FILE] = model.ood.tensors()
    else:
        (directory / OOD_FILE).unlink(missing_ok=True)  # a reference of other weights would score wrongly
    files = {}
    for name, values in tensors.items():
        with atomic_path(directory / name) as tmp:
            _save_tensors(values, tmp)
        files[name] = file_sha256(directory / name)
    atomic_write_text(directory / CONFIG_FILE, json.dumps({**model.config, FILES_KEY: files}, indent=2))
    return directory


def resolve_model_dir(path: str | Path) -> Path:
    """The folder holding ``config.json``: ``path`` itself, or ``path/best`` for a training run."""
    path = Path(path)
    for candidate in (path, path / "best"):
        if (candidate / CONFIG_FILE).is_file() and (candidate / WEIGHTS_FILE).is_file():
            return candidate
    raise FileNotFoundError(
        f"no {CONFIG_FILE} + {WEIGHTS_FILE} in {path} or {path / 'best'}; "
        "pass a training run folder (RUN/) or its RUN/best/"
    )


def read_config(directory: str | Path) -> tuple[Path, dict[str, Any]]:
    """The model folder (see :func:`resolve_model_dir`) and its ``config.json`` in this version's form
    (:func:`upgrade_config`), refused naming the file if broken."""
    directory = resolve_model_dir(directory)
    return directory, upgrade_config(read_mapping(directory / CONFIG_FILE, kind="JSON"), str(directory / CONFIG_FILE))


def upgrade_config(config: dict[str, Any], source: str = CONFIG_FILE) -> dict[str, Any]:
    """A model config of any version in this version's form, with every key, so the code reads them directly.

    Version 1 named no ``model_type`` (a fine-tuned model's config has a ``task``), and its
    older saves lack keys added since (``pretrained_from``, ``calibration``, ``ood``, ``temperature``, ``files``),
    filled with what their absence meant. A newer version is refused, naming ``source``.
    """
    version = config.get("version", 1)
    if not isinstance(version, int) or not 1 <= version <= CONFIG_VERSION:
        raise ValueError(f"{source}: config version {version!r} is not one this galaxymorph reads (1 to "
                         f"{CONFIG_VERSION}); upgrade galaxymorph, or save the model again with this one")
    if version == 1:
        config = {**config, "model_type": FinetunedModel.MODEL_TYPE if "task" in config else GalaxyModel.MODEL_TYPE}
    if config.get("model_type") not in _DEFAULTS:
        raise ValueError(f"{source}: unknown model_type {config.get('model_type')!r}; "
                         f"expected one of {list(_DEFAULTS)}")
    return {**copy.deepcopy(_DEFAULTS[config["model_type"]]), **config, "version": CONFIG_VERSION}


def from_config(build: Callable[[dict[str, Any]], T], config: dict[str, Any], directory: Path) -> T:
    """``build(config)``; an entry missing from a hand-edited ``config.json`` is named with the file."""
    try:
        return build(config)
    except KeyError as err:
        raise ValueError(f"{directory / CONFIG_FILE} has no {err.args[0]!r} entry; save the model again "
                         "with galaxymorph (save_model) or restore the file") from None


def fingerprint(model: nn.Module) -> str:
    """sha256 of a model's weights, config and OOD reference: what outputs record, so a resume with another is refused.

    The config is hashed as version 1 held it (:func:`_hashed_config`) and a model without a
    reference hashes as before references existed, so outputs of older models still resume.
    """
    digest = hashlib.sha256(json.dumps(_hashed_config(getattr(model, "config", None)), sort_keys=True).encode())
    ood = getattr(model, "ood", None)
    tensors = {**model.state_dict(), **({f"ood.{k}": v for k, v in ood.tensors().items()} if ood is not None else {})}
    for name, tensor in sorted(tensors.items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _hashed_config(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """``config`` as version 1 held it: no ``model_type``, and no ``calibration``, ``ood`` or ``temperature``
    when there are none (version 1 left them out), so that upgrading a config changes no model's fingerprint."""
    if config is None:
        return None
    unset = ("calibration", "ood", "temperature")
    kept = {k: v for k, v in config.items() if k != "model_type" and not (k in unset and v is None)}
    return {**kept, "version": 1}


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata={"format": "pt"})
