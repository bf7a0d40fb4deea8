"""Share a trained model as safetensors weights plus a JSON config: no pickles to load."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from safetensors.torch import load_file, save_file

from galaxymorph.models.galaxy_model import GalaxyModel

__all__ = ["save_model", "load_model", "resolve_model_dir", "fingerprint", "WEIGHTS_FILE", "CONFIG_FILE"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_model(model: GalaxyModel, directory: str | Path) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed).

    Each file is written beside its final name then renamed, so a crash mid-write
    never leaves a half-written model where a good one was.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _replace(directory / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    text = json.dumps(model.config, indent=2)
    _replace(directory / CONFIG_FILE, lambda tmp: tmp.write_text(text))
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


def load_model(directory: str | Path, channels_last: bool = True) -> GalaxyModel:
    """Rebuild a :class:`GalaxyModel` from ``RUN/`` or ``RUN/best/``, in eval mode."""
    directory = resolve_model_dir(directory)
    config = json.loads((directory / CONFIG_FILE).read_text())
    model = GalaxyModel.from_config(config, channels_last=channels_last)
    state = load_file(str(directory / WEIGHTS_FILE))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{directory / WEIGHTS_FILE} does not match its {CONFIG_FILE} "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    return model.eval()


def fingerprint(model: nn.Module) -> str:
    """sha256 of a model's weights and config: what outputs record, so a resume with another model is refused."""
    digest = hashlib.sha256(json.dumps(getattr(model, "config", None), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _replace(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
