"""One way in: :func:`load_model` for any galaxymorph model folder, :func:`load_encoder` for a starting point.

A model folder is ``RUN/`` or ``RUN/best/`` of ``galaxymorph train`` or ``finetune``
(``model.safetensors`` + ``config.json``, no pickle); its config says which kind it
is (``task`` for fine-tuned models). An encoder to start from may also be a Hugging
Face style timm folder (``config.json`` with ``architecture`` plus ``model.safetensors``
or ``pytorch_model.bin``, as Zoobot's encoders are published), loaded by timm's own
``local-dir:`` loader; nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence, Union

import timm
from safetensors.torch import load_file
from torch import nn

from galaxymorph.files import file_sha256
from galaxymorph.models.checkpoint import (
    CONFIG_FILE,
    FILES_KEY,
    WEIGHTS_FILE,
    from_config,
    read_config,
)
from galaxymorph.models.ensemble import Ensemble
from galaxymorph.models.finetune_model import FinetunedModel, PretrainedEncoder
from galaxymorph.models.galaxy_model import GalaxyModel
from galaxymorph.models.ood import OOD_FILE, OODReference

__all__ = ["Checkpoints", "load_encoder", "load_model"]


Checkpoints = Union[str, Path, nn.Module, Sequence[Union[str, Path, nn.Module]]]  # one model, or an ensemble's


def load_model(directory: Checkpoints, channels_last: bool = True,
               check_files: bool = True) -> GalaxyModel | FinetunedModel | Ensemble:
    """The model in ``RUN/`` or ``RUN/best/``, in eval mode: a :class:`GalaxyModel`, or a :class:`FinetunedModel`.

    A model already in memory is returned as it is, so every command that takes a
    checkpoint takes a model too; several (a list) make one :class:`Ensemble`.

    The config must say how its images were prepared (``preprocessing``), or new images
    could not be read the way it was trained on. Tensor files other than those the
    config was saved with (an interrupted save, files copied from two runs) are refused;
    ``check_files=False`` is for the end of training, which saves every file again.

    Example:
        >>> model = load_model("runs/gz2")  # doctest: +SKIP
        >>> model.sample(model.features(images), 5).shape  # doctest: +SKIP
        torch.Size([64, 37, 5])
    """
    if isinstance(directory, (list, tuple)):
        models = [load_model(one, channels_last, check_files) for one in directory]
        return models[0] if len(models) == 1 else Ensemble(models)
    if isinstance(directory, nn.Module):
        return directory
    folder, config = read_config(directory)
    saved_with = config.pop(FILES_KEY, {})  # absent in models saved before this check
    if not config.get("preprocessing"):
        raise ValueError(
            f"{folder / CONFIG_FILE} has no 'preprocessing' (the image size, crop and channels it was trained on), "
            "so new images cannot be prepared the same way; copy into it the \"preprocessing\" entry of the "
            "manifest.json of the shards it was trained on"
        )
    if "ood" in config and not (folder / OOD_FILE).is_file():
        raise ValueError(f"{folder / CONFIG_FILE} has an 'ood' entry but {OOD_FILE} is missing; copy it from "
                         "the run's best/ folder, or delete the entry to predict without ood_score")
    used = [WEIGHTS_FILE] + ([OOD_FILE] if "ood" in config else [])
    for name in used if check_files else ():
        if name in saved_with and file_sha256(folder / name) != saved_with[name]:
            raise ValueError(f"{folder / name} is not the file {CONFIG_FILE} was saved with (a save was interrupted, "
                             "or the folder mixes files of two saves); copy the whole folder again from where the "
                             "model was saved, or re-run the training command to save it again")
    if "task" in config:
        model = from_config(FinetunedModel.from_config, config, folder)
    else:
        model = from_config(lambda c: GalaxyModel.from_config(c, channels_last=channels_last), config, folder)
    missing, unexpected = model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{folder / WEIGHTS_FILE} does not match its {CONFIG_FILE} "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    if "ood" in config:  # absent in models saved before the OOD reference: no ood_score, as before
        model.set_ood_reference(OODReference.from_tensors(load_file(str(folder / OOD_FILE)), config["ood"]))
    return model.eval()


def load_encoder(source: str | Path, channels: int | None = None) -> PretrainedEncoder:
    """The encoder of a galaxymorph run (``RUN/``, ``RUN/best/``) or of a Hugging Face style timm folder.

    ``config`` holds ``arch``, ``channels``, ``encoder_args`` (timm kwargs to rebuild it),
    ``input_mean``/``input_std``, ``n_features`` and, for galaxymorph runs, ``preprocessing``
    and ``image_size`` (``None`` for timm folders: the caller chooses).

    Raises:
        FileNotFoundError: ``source`` is neither kind of folder (the message says what each needs).
    """
    source = Path(source)
    timm_config = source / "config.json"
    if timm_config.is_file() and "architecture" in json.loads(timm_config.read_text()):
        return _timm_folder_encoder(source, channels)
    try:
        model = load_model(source)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"--checkpoint {source}: neither a galaxymorph run (RUN/ or RUN/best/ with {CONFIG_FILE} + {WEIGHTS_FILE}) "
            "nor a Hugging Face style timm folder (config.json with 'architecture' + model.safetensors or pytorch_model.bin)"
        ) from None
    if channels is not None and channels != model.config["channels"]:
        raise ValueError(
            f"--channels {channels} but {source} was trained on {model.config['channels']}-channel images; "
            f"drop --channels or use {model.config['channels']}"
        )
    cfg = model.config
    return PretrainedEncoder(
        model.encoder,
        {
            "arch": cfg["arch"],
            "channels": cfg["channels"],
            "encoder_args": {},
            "input_mean": cfg.get("input_mean", 0.5),
            "input_std": cfg.get("input_std", 0.5),
            "n_features": int(model.encoder.num_features),
            "preprocessing": cfg.get("preprocessing"),
            "image_size": cfg.get("image_size"),
            "channels_last": model.channels_last,
            "source": str(source),
        },
    )


def _timm_folder_encoder(folder: Path, channels: int | None) -> PretrainedEncoder:
    """timm's own ``local-dir:`` loader: config.json + safetensors (or a .bin read with weights_only=True)."""
    info = json.loads((folder / "config.json").read_text())
    channels = channels or int(info.get("model_args", {}).get("in_chans", 3))
    encoder = timm.create_model(f"local-dir:{folder.resolve()}", pretrained=True, num_classes=0, in_chans=channels)
    pretrained = info.get("pretrained_cfg", {})
    mean, std = pretrained.get("mean", 0.5), pretrained.get("std", 0.5)
    if isinstance(mean, list) and len(mean) != channels:  # colour statistics for a single band: average them
        mean, std = sum(mean) / len(mean), sum(std) / len(std)
    model_args = {k: v for k, v in info.get("model_args", {}).items() if k not in ("num_classes", "in_chans")}
    return PretrainedEncoder(
        encoder,
        {
            "arch": info["architecture"],
            "channels": channels,
            "encoder_args": model_args,
            "input_mean": mean,
            "input_std": std,
            "n_features": int(encoder.num_features),
            "preprocessing": None,
            "image_size": None,
            "channels_last": True,
            "source": str(folder),
        },
    )
