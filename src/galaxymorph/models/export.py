"""A galaxymorph encoder as a timm / Hugging Face folder (``galaxymorph export``), for timm, zoobot and the hub.

The folder holds what timm's own ``save_for_hf`` writes: ``model.safetensors`` (the encoder
alone, no head) and ``config.json`` (``architecture``, ``num_features``, ``model_args`` and a
``pretrained_cfg`` whose ``mean``, ``std``, ``input_size`` and ``crop_pct`` are the ones the
run was trained with). Its ``galaxymorph`` entry keeps the run's full preprocessing, so that
:func:`galaxymorph.models.load_encoder` feeds the folder exactly as the run was fed.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import torch
from timm.models import save_for_hf

from galaxymorph.data.transforms import Preprocessing
from galaxymorph.files import file_sha256, put_in_place, read_mapping
from galaxymorph.models.checkpoint import CONFIG_FILE, FILES_KEY, WEIGHTS_FILE
from galaxymorph.models.ensemble import Ensemble
from galaxymorph.models.loading import EXPORT_KEY, Checkpoints, load_model
from galaxymorph.models.onnx import ONNX_FILE
from galaxymorph.outputs import OutputInUse, claim_folder

__all__ = ["export_encoder"]


def _per_channel(value: float | list[float], channels: int) -> list[float]:
    return [float(v) for v in value] if isinstance(value, list) else [float(value)] * channels


def export_encoder(source: Checkpoints, folder: str | Path) -> Path:
    """Write the encoder of a training or fine-tuning run as a timm / Hugging Face folder; returns the folder.

    ``folder`` must be new, empty or an earlier export (nothing else is overwritten). Load the
    result with ``timm.create_model("local-dir:FOLDER", pretrained=True, num_classes=0)``, or by
    name (``hf_hub:ORG/NAME``) once uploaded with ``hf upload ORG/NAME FOLDER``. Feed it images in
    [0, 1] normalised with the config's ``mean`` and ``std`` (zoobot: its view config's ``normalize``).

    Example:
        >>> export_encoder("runs/gz2", "exported/gz2-encoder")  # doctest: +SKIP
        PosixPath('exported/gz2-encoder')
    """
    folder = Path(folder)
    model = load_model(source)
    if isinstance(model, Ensemble):
        raise ValueError("export writes one encoder; give one run, not several")
    if claim_folder(folder, CONFIG_FILE, own_files=(WEIGHTS_FILE, ONNX_FILE)) and \
            EXPORT_KEY not in read_mapping(folder / CONFIG_FILE, kind="JSON"):
        raise OutputInUse(f"{folder} holds a model (config.json) that galaxymorph export did not write; choose a new "
                          "or empty folder (nothing there is overwritten)")
    config = model.config
    channels = int(config["channels"])
    prep = Preprocessing.from_dict(config["preprocessing"])
    encoder = copy.deepcopy(model.encoder).to(memory_format=torch.contiguous_format)  # safetensors wants contiguous
    # not timm's ImageNet weights: their tag and licence would say they were (as in Zoobot's published configs)
    encoder.pretrained_cfg = {k: v for k, v in encoder.pretrained_cfg.items() if k not in ("tag", "license")}
    data_config = {
        "input_size": (channels, prep.image_size, prep.image_size),
        "mean": _per_channel(config["input_mean"], channels),
        "std": _per_channel(config["input_std"], channels),
        "interpolation": "bilinear",
        "crop_pct": prep.source_crop * prep.eval_zoom,  # of the original frame, as timm's eval transform crops it
        "crop_mode": "center",
    }
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as tmp:
        save_for_hf(encoder, tmp, safe_serialization=True, data_config=data_config)
        own = {"preprocessing": prep.to_dict(), "exported_from": str(source),
               FILES_KEY: {WEIGHTS_FILE: file_sha256(Path(tmp) / WEIGHTS_FILE)}}
        timm_config = read_mapping(Path(tmp) / CONFIG_FILE, kind="JSON")
        (Path(tmp) / CONFIG_FILE).write_text(json.dumps({**timm_config, EXPORT_KEY: own}, indent=2))
        for name in (WEIGHTS_FILE, CONFIG_FILE):  # the config last: it names the weights it belongs with
            put_in_place(Path(tmp) / name, folder / name)
    return folder

