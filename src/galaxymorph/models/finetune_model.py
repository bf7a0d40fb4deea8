"""A pretrained encoder with a new head for a new task, shaped like :class:`GalaxyModel` so predict can use it.

The encoder comes from a galaxymorph run (``RUN/`` or ``RUN/best/``) or from a
Hugging Face style timm folder (``config.json`` with ``architecture`` plus
``model.safetensors`` or ``pytorch_model.bin``, as Zoobot's encoders are
published), loaded by timm itself (``local-dir:``); nothing is downloaded.

The fine-tuned model exposes the same API as ``GalaxyModel``:
``features(x) -> (B, F)``, ``head(features)`` (raw outputs: logits, values or
concentrations), ``sample(features, n) -> (B, K, n)`` with MC dropout and
``config`` (plain data). ``config["task"]`` says what ``sample`` returns:

- ``"classification"``: class probabilities (softmax), K = ``len(config["classes"])``;
- ``"regression"``: predicted values, K = 1 (``config["target"]``), in [0, 1] if ``config["bounded"]``;
- ``"tree"``: Dirichlet concentrations over ``config["schema"]`` answers, exactly like ``GalaxyModel``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import timm
from timm.models import group_parameters
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from galaxymorph.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE, from_config, load_model, read_config
from galaxymorph.models.encoder import create_encoder
from galaxymorph.models.galaxy_model import EncoderWithHead, GalaxyModel
from galaxymorph.models.head import DirichletHead
from galaxymorph.schema import Schema

__all__ = [
    "TASKS",
    "ClassifierHead",
    "RegressionHead",
    "FinetunedModel",
    "PretrainedEncoder",
    "load_pretrained_encoder",
    "load_finetuned",
    "load_any_model",
]

TASKS = ("classification", "regression", "tree")
FINETUNE_CONFIG_VERSION = 1


class ClassifierHead(nn.Module):
    """Features to class logits: dropout then one linear layer; ``sample`` gives softmax probabilities."""

    def __init__(self, in_features: int, n_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"a classifier needs >= 2 classes, got {n_classes}")
        self.dropout = dropout
        self.linear = nn.Linear(in_features, n_classes)

    def forward(self, features: Tensor, mc_dropout: bool = False) -> Tensor:
        return self.linear(F.dropout(features, self.dropout, training=self.training or mc_dropout))

    def sample(self, features: Tensor, n: int) -> Tensor:
        return _mc_samples(self, features, n).softmax(dim=1)


class RegressionHead(nn.Module):
    """Features to one value: dropout, linear, and a sigmoid when the target is bounded to [0, 1]."""

    def __init__(self, in_features: int, dropout: float = 0.2, bounded: bool = False) -> None:
        super().__init__()
        self.dropout = dropout
        self.bounded = bounded
        self.linear = nn.Linear(in_features, 1)

    def forward(self, features: Tensor, mc_dropout: bool = False) -> Tensor:
        out = self.linear(F.dropout(features, self.dropout, training=self.training or mc_dropout))
        return torch.sigmoid(out) if self.bounded else out

    def sample(self, features: Tensor, n: int) -> Tensor:
        return _mc_samples(self, features, n)


def _mc_samples(head: nn.Module, features: Tensor, n: int) -> Tensor:
    """(B, K, n) head outputs from n dropout masks in one batched pass; n=1 is deterministic (no dropout)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n == 1:
        was_training = head.training
        head.eval()
        try:
            return head(features).unsqueeze(-1)
        finally:
            head.train(was_training)
    out = head(features.repeat(n, 1), mc_dropout=True)
    return out.view(n, features.shape[0], -1).permute(1, 2, 0)


class PretrainedEncoder:
    """A loaded encoder and everything needed to rebuild and feed it (plain data in ``config``)."""

    def __init__(self, encoder: nn.Module, config: dict[str, Any]) -> None:
        self.encoder = encoder
        self.config = config


def load_pretrained_encoder(source: str | Path, channels: int | None = None) -> PretrainedEncoder:
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


class FinetunedModel(EncoderWithHead):
    """A pretrained encoder plus a task head, with ``GalaxyModel``'s API (see the module docstring).

    Build one with :meth:`create` (a loaded encoder and a task) or :meth:`from_config`
    (architecture only, random weights, for loading a saved fine-tuned model).
    """

    def __init__(self, encoder: nn.Module, config: dict[str, Any]) -> None:
        super().__init__()
        task = config["task"]
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.encoder = encoder
        self.channels_last = bool(config.get("channels_last", True))
        n_features, dropout = int(config["n_features"]), float(config["dropout"])
        if task == "classification":
            self.head: nn.Module = ClassifierHead(n_features, len(config["classes"]), dropout)
        elif task == "regression":
            self.head = RegressionHead(n_features, dropout, bounded=bool(config["bounded"]))
        else:
            self.schema = Schema.from_dict(config["schema"])
            self.head = DirichletHead(n_features, self.schema.n_answers, dropout)
        if self.channels_last:
            self.encoder.to(memory_format=torch.channels_last)
        self._set_input_normalisation(config["input_mean"], config["input_std"])
        self._config = copy.deepcopy(config)

    @classmethod
    def create(
        cls,
        pretrained: PretrainedEncoder,
        task: str,
        dropout: float = 0.2,
        classes: list[str] | None = None,
        bounded: bool = False,
        schema: Schema | None = None,
        target: str | None = None,
        preprocessing: dict[str, Any] | None = None,
    ) -> "FinetunedModel":
        """A new head for ``task`` on a loaded encoder; ``preprocessing`` defaults to the encoder's own."""
        config = {
            "version": FINETUNE_CONFIG_VERSION,
            "task": task,
            "target": target,
            "dropout": dropout,
            **{k: v for k, v in pretrained.config.items() if k != "source"},
            "pretrained_from": pretrained.config["source"],
        }
        config["preprocessing"] = preprocessing or pretrained.config["preprocessing"]
        if config["preprocessing"] is None:
            raise ValueError(f"{pretrained.config['source']} holds no preprocessing; pass one (image size, crop)")
        config["image_size"] = config["preprocessing"].get("image_size")
        if task == "classification":
            if not classes:
                raise ValueError("classification needs the class names")
            config["classes"] = [str(c) for c in classes]
            config["outputs"] = config["classes"]
        elif task == "regression":
            config["bounded"] = bounded
            config["outputs"] = [target or "value"]
        elif task == "tree":
            if schema is None:
                raise ValueError("the tree task needs a schema (the new decision tree)")
            config["schema"] = schema.to_dict()
            config["answers"] = list(schema.answers)
            config["outputs"] = config["answers"]
        return cls(pretrained.encoder, config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "FinetunedModel":
        """The architecture of a saved fine-tuned model, randomly initialised (weights are loaded after)."""
        if config.get("version", 1) > FINETUNE_CONFIG_VERSION:
            raise ValueError(f"fine-tuned model config version {config['version']} is newer than this galaxymorph; upgrade")
        encoder = create_encoder(config["arch"], channels=config["channels"], **config.get("encoder_args", {}))
        return cls(encoder, config)

    @property
    def task(self) -> str:
        return self._config["task"]

    def encoder_blocks(self) -> list[list[str]]:
        """Encoder parameter names in timm's coarse groups (stem, stages, ...), from input to output."""
        if not hasattr(self.encoder, "group_matcher"):
            return [[name] for name, _ in self.encoder.named_parameters()]
        groups = group_parameters(self.encoder, self.encoder.group_matcher(coarse=True))
        return [list(names) for _, names in sorted(groups.items())]

    def set_trainable(self, unfreeze: int | str = 0) -> None:
        """Train the head and the last ``unfreeze`` encoder blocks (0: head only; ``"all"``: everything).

        Frozen parts also stay in eval mode while training (see :meth:`train`), so
        their BatchNorm statistics and any dropout are those of the pretrained encoder.
        """
        blocks = self.encoder_blocks()
        if unfreeze == "all":
            unfreeze = len(blocks)
        if not isinstance(unfreeze, int) or unfreeze < 0:
            raise ValueError(f"unfreeze must be a number of blocks >= 0 or 'all', got {unfreeze!r}")
        trainable = {name for block in blocks[len(blocks) - unfreeze:] for name in block} if unfreeze else set()
        for name, param in self.encoder.named_parameters():
            param.requires_grad_(name in trainable)
        self.head.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> "FinetunedModel":
        """As ``nn.Module.train``, but every encoder part with only frozen parameters stays in eval mode."""
        super().train(mode)
        if mode:
            for module in self.encoder.modules():
                params = list(module.parameters())
                if params and not any(p.requires_grad for p in params):
                    module.eval()
        return self


def load_finetuned(directory: str | Path) -> FinetunedModel:
    """Rebuild a :class:`FinetunedModel` from ``RUN2/`` or ``RUN2/best/``, in eval mode."""
    directory, config = read_config(directory)
    if "task" not in config:
        raise ValueError(f"{directory / CONFIG_FILE} is not a fine-tuned model (no 'task'); use galaxymorph.models.load_model")
    model = from_config(FinetunedModel.from_config, config, directory)
    missing, unexpected = model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{directory / WEIGHTS_FILE} does not match its {CONFIG_FILE} "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    return model.eval()


def load_any_model(directory: str | Path) -> GalaxyModel | FinetunedModel:
    """A trained (``GalaxyModel``) or fine-tuned (``FinetunedModel``) model, told apart by ``config["task"]``.

    For predicting and embedding, so the model must say how its images were prepared.
    """
    folder, config = read_config(directory)
    if not config.get("preprocessing"):
        raise ValueError(
            f"{folder / CONFIG_FILE} has no 'preprocessing' (the image size, crop and channels it was trained on), "
            "so new images cannot be prepared the same way; copy into it the \"preprocessing\" entry of the "
            "manifest.json of the shards it was trained on"
        )
    return load_finetuned(folder) if "task" in config else load_model(folder)
