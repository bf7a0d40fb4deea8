"""One way in: :func:`load_model` for any galaxymorph model folder, :func:`load_encoder` for a starting point.

A model folder is ``RUN/`` or ``RUN/best/`` of ``galaxymorph train`` or ``finetune``
(``model.safetensors`` + ``config.json``, no pickle); its config says which kind it
is (``model_type``; read in this version's form, whatever version saved it). An encoder
to start from may also be a Hugging Face style timm folder (``config.json`` with
``architecture`` plus ``model.safetensors`` or ``pytorch_model.bin``, as Zoobot's encoders
are published), or one on the Hugging Face hub by name (``hf_hub:ORG/NAME``, through
huggingface_hub's cache: :mod:`galaxymorph.models.hub`). timm builds the architecture;
the weights are read here, a ``.bin`` with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import timm
import torch
from safetensors.torch import load_file
from torch import nn

from galaxymorph.data.transforms import PRESET_NORMALISATION, preset_preprocessing
from galaxymorph.files import file_sha256, read_mapping
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
from galaxymorph.models.hub import WEIGHT_FILES, hub_folder, is_hub_name, is_zoobot_encoder
from galaxymorph.models.ood import OOD_FILE, OODReference
from galaxymorph.models.segmentation import SegmentationModel

__all__ = ["EXPORT_KEY", "Checkpoints", "load_encoder", "load_features_model", "load_model",
           "read_timm_weights"]

EXPORT_KEY = "galaxymorph"  # in a timm config.json written by `galaxymorph export`: how the run prepared its images


Checkpoints = Union[str, Path, nn.Module, Sequence[Union[str, Path, nn.Module]]]  # one model, or an ensemble's


def load_model(directory: Checkpoints, channels_last: bool = True,
               check_files: bool = True) -> GalaxyModel | FinetunedModel | SegmentationModel | Ensemble:
    """The model in ``RUN/`` or ``RUN/best/``, in eval mode: a :class:`GalaxyModel`, :class:`FinetunedModel` or
    :class:`SegmentationModel`.

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
    saved_with = config.pop(FILES_KEY)
    if not config["preprocessing"]:
        raise ValueError(
            f"{folder / CONFIG_FILE} has no 'preprocessing' (the image size, crop and channels it was trained on), "
            "so new images cannot be prepared the same way; copy into it the \"preprocessing\" entry of the "
            "manifest.json of the shards it was trained on"
        )
    if config["ood"] is not None and not (folder / OOD_FILE).is_file():
        raise ValueError(f"{folder / CONFIG_FILE} has an 'ood' entry but {OOD_FILE} is missing; copy it from "
                         "the run's best/ folder, or delete the entry to predict without ood_score")
    used = [WEIGHTS_FILE] + ([OOD_FILE] if config["ood"] is not None else [])
    for name in used if check_files else ():
        if name in saved_with and file_sha256(folder / name) != saved_with[name]:
            raise ValueError(f"{folder / name} is not the file {CONFIG_FILE} was saved with (a save was interrupted, "
                             "or the folder mixes files of two saves); copy the whole folder again from where the "
                             "model was saved, or re-run the training command to save it again")
    if config["model_type"] == SegmentationModel.MODEL_TYPE:
        model = from_config(SegmentationModel.from_config, config, folder)
    elif config["model_type"] == FinetunedModel.MODEL_TYPE:
        model = from_config(FinetunedModel.from_config, config, folder)
    else:
        model = from_config(lambda c: GalaxyModel.from_config(c, channels_last=channels_last), config, folder)
    missing, unexpected = model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{folder / WEIGHTS_FILE} does not match its {CONFIG_FILE} "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    if config["ood"] is not None:
        model.set_ood_reference(OODReference.from_tensors(load_file(str(folder / OOD_FILE)), config["ood"]))
    return model.eval()


def load_encoder(source: str | Path, channels: int | None = None, preprocessing: str | None = None,
                 image_size: int | None = None, source_crop: float = 1.0) -> PretrainedEncoder:
    """The encoder of a galaxymorph run (``RUN/``, ``RUN/best/``), of a Hugging Face style timm folder, or of a hub name.

    A hub name is ``hf_hub:ORG/NAME[@REVISION]`` (:mod:`galaxymorph.models.hub`), read through
    huggingface_hub's cache. ``config`` holds ``arch``, ``channels``, ``encoder_args`` (timm kwargs
    to rebuild it), ``input_mean``/``input_std``, ``n_features``, ``preprocessing`` and ``image_size``.

    A run, or a folder written by ``galaxymorph export``, says how its images were prepared.
    Other timm folders do not: ``preprocessing`` names a preset for them
    (:func:`galaxymorph.data.transforms.preset_preprocessing`, with ``image_size`` and
    ``source_crop``), ``"zoobot"`` by default for Zoobot's published encoders
    (``hf_hub:mwalmsley/zoobot-encoder-...``), else ``"galaxymorph"``; it also fixes the input
    normalisation (Zoobot's encoders were trained on unnormalised [0, 1] images, whatever
    their config.json says).

    Raises:
        FileNotFoundError: ``source`` is none of these (the message says what each needs),
            or a hub name that is neither cached nor downloadable.
        ValueError: a preset for a source that has its own preprocessing, or a weights file
            that is not a plain state dict.

    Example:
        >>> encoder = load_encoder("hf_hub:mwalmsley/zoobot-encoder-convnext_nano")  # doctest: +SKIP
        >>> encoder.config["preprocessing"].get("reader")  # doctest: +SKIP
        'zoobot'
    """
    folder = _encoder_folder(source)
    if folder is not None:
        return _timm_folder_encoder(folder, source, channels, preprocessing, image_size, source_crop)
    _refuse_preset(preprocessing, source)
    try:
        model = load_model(source)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"--checkpoint {source}: neither a galaxymorph run (RUN/ or RUN/best/ with {CONFIG_FILE} + {WEIGHTS_FILE}), "
            "a Hugging Face style timm folder (config.json with 'architecture' + model.safetensors or pytorch_model.bin) "
            "nor a hub name (hf_hub:ORG/NAME)"
        ) from None
    if isinstance(model, SegmentationModel):
        raise ValueError(f"--checkpoint {source} is a segmentation model; start from the run its encoder came from "
                         f"({model.config['pretrained_from']}, its config.json's pretrained_from)")
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
            "input_mean": cfg["input_mean"],
            "input_std": cfg["input_std"],
            "n_features": int(model.encoder.num_features),
            "preprocessing": cfg["preprocessing"],
            "image_size": cfg["image_size"],
            "channels_last": model.channels_last,
            "source": str(source),
        },
    )


def load_features_model(source: Checkpoints, preprocessing: str | None = None,
                        image_size: int | None = None) -> nn.Module:
    """What ``embed`` runs: any galaxymorph model (:func:`load_model`), or an encoder alone (:func:`load_encoder`)."""
    folder = None if isinstance(source, (nn.Module, list, tuple)) else _encoder_folder(source)
    if folder is None:
        _refuse_preset(preprocessing, source)
        return load_model(source)
    return _timm_folder_encoder(folder, source, None, preprocessing, image_size, 1.0).eval()


def _refuse_preset(preprocessing: str | None, source: Checkpoints) -> None:
    if preprocessing is not None:
        raise ValueError(f"--preprocessing {preprocessing}: {source} is a galaxymorph model, which is always fed as it "
                         "was trained; drop --preprocessing")


def _encoder_folder(source: str | Path) -> Path | None:
    """The timm folder ``source`` names (a hub name resolved through the cache), or None for anything else."""
    if is_hub_name(source):
        return hub_folder(str(source))
    folder = Path(source)
    timm_config = folder / CONFIG_FILE
    if timm_config.is_file() and "architecture" in read_mapping(timm_config, kind="JSON"):
        return folder
    return None


def read_timm_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The weights of a timm folder: ``model.safetensors``, else ``pytorch_model.bin`` read with ``weights_only=True``.

    A ``.bin`` is a pickle; ``weights_only`` lets torch rebuild only tensors and plain
    containers from it, never run code, and anything but a mapping of names to tensors is refused.
    """
    safe, pickled = (folder / name for name in WEIGHT_FILES)
    if safe.is_file():
        return load_file(str(safe))
    if not pickled.is_file():
        raise FileNotFoundError(f"{folder} has a timm config.json but none of {', '.join(WEIGHT_FILES)}; "
                                "copy the weights file beside it")
    try:
        state = torch.load(pickled, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError for the same problem
        raise ValueError(f"{pickled} is not a plain state dict (torch.load with weights_only=True refused it: "
                         f"{str(err).splitlines()[0]}); ask its authors for model.safetensors") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"{pickled} holds a {type(state).__name__}, not a state dict (parameter names to tensors); "
                         "save the encoder's state_dict() alone, as timm's save_for_hf does")
    return state


def _timm_folder_encoder(folder: Path, source: str | Path, channels: int | None, preset: str | None,
                         image_size: int | None, source_crop: float) -> PretrainedEncoder:
    """timm builds the architecture and adapts the weights to ``channels``; the weights are read by us, safely."""
    info = read_mapping(folder / CONFIG_FILE, kind="JSON")
    pretrained = info.get("pretrained_cfg", {})
    model_args = {k: v for k, v in info.get("model_args", {}).items() if k not in ("num_classes", "in_chans")}
    own = info.get(EXPORT_KEY)  # a folder galaxymorph exported: fed as the run it came from
    if own is not None:
        prep = own["preprocessing"]
        if preset is not None:
            raise ValueError(f"--preprocessing {preset}: {source} was exported by galaxymorph with the preprocessing "
                             "it was trained on; drop --preprocessing")
        if channels is not None and channels != prep["channels"]:
            raise ValueError(f"--channels {channels} but {source} was trained on {prep['channels']}-channel images; "
                             f"drop --channels or use {prep['channels']}")
        saved_sha = own.get(FILES_KEY, {}).get(WEIGHTS_FILE)
        if saved_sha and file_sha256(folder / WEIGHTS_FILE) != saved_sha:
            raise ValueError(f"{folder / WEIGHTS_FILE} is not the file {CONFIG_FILE} was exported with (an export "
                             "was interrupted, or the folder mixes two); run galaxymorph export again")
    else:
        saved_channels = info.get("model_args", {}).get("in_chans") or pretrained.get("input_size", [3])[0]
        preset = preset or ("zoobot" if is_zoobot_encoder(source) else "galaxymorph")
        prep = preset_preprocessing(preset, image_size, channels or int(saved_channels), source_crop).to_dict()
    channels = prep["channels"]
    encoder = timm.create_model(info["architecture"], pretrained=True, num_classes=0, in_chans=channels,
                                pretrained_cfg_overlay={"state_dict": read_timm_weights(folder)}, **model_args)
    own_stats = (pretrained.get("mean", 0.5), pretrained.get("std", 0.5))
    mean, std = PRESET_NORMALISATION.get(preset or "galaxymorph") or own_stats
    if isinstance(mean, list) and len(mean) != channels:  # colour statistics for a single band: average them
        mean, std = sum(mean) / len(mean), sum(std) / len(std)
    return PretrainedEncoder(
        encoder,
        {
            "arch": info["architecture"],
            "channels": channels,
            "encoder_args": model_args,
            "input_mean": mean,
            "input_std": std,
            "n_features": int(encoder.num_features),
            "preprocessing": prep,
            "image_size": prep["image_size"],
            "channels_last": True,
            "source": f"{source}@{folder.name}" if is_hub_name(source) and "@" not in str(source) else str(source),
        },
    )
