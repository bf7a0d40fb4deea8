"""The Bayesian CNN: a timm encoder and a Dirichlet head, rebuildable from a plain-data config."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from galaxymorph.models.encoder import create_encoder
from galaxymorph.models.head import DirichletHead
from galaxymorph.models.ood import OODReference
from galaxymorph.schema import Schema, get_schema

__all__ = ["EncoderWithHead", "GalaxyModel", "CONFIG_VERSION"]

CONFIG_VERSION = 2  # of config.json: 2 added model_type; galaxymorph.models.checkpoint.upgrade_config reads 1


class EncoderWithHead(nn.Module):
    """What every galaxymorph model shares: normalise, encode once, head (MC dropout) many times.

    Subclasses name their ``MODEL_TYPE`` (the config's ``model_type``), set ``encoder``, ``head``
    (with ``sample(features, n)``), ``channels_last``, ``_config`` and call :meth:`_set_input_normalisation`.
    """

    MODEL_TYPE: str
    encoder: nn.Module
    head: nn.Module
    channels_last: bool
    _config: dict[str, Any]

    @property
    def ood(self) -> OODReference | None:
        """The reference ``ood_score`` measures against, set after training (``training.finish``); None before."""
        return self._modules.get("_ood")  # type: ignore[return-value]

    @property
    def config(self) -> dict[str, Any]:
        """Plain data (JSON-safe) that rebuilds this model with its class's ``from_config``."""
        return copy.deepcopy(self._config)

    def _set_input_normalisation(self, mean: float | list[float], std: float | list[float]) -> None:
        """Scalar or per-channel input mean and std, kept as (1, C, 1, 1) buffers that follow the device."""
        self.register_buffer("_mean", _channel_stat(mean), persistent=False)
        self.register_buffer("_std", _channel_stat(std), persistent=False)

    def features(self, x: Tensor) -> Tensor:
        """Pooled encoder features (B, F) of images in [0, 1], normalised as the encoder was trained."""
        x = (x - self._mean) / self._std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def sample(self, features: Tensor, n: int, keys: Tensor | None = None) -> Tensor:
        """(B, K, n) outputs from n MC-dropout passes of the head, in train or eval mode alike.

        ``keys`` (one per galaxy) fix each galaxy's dropout masks (``galaxymorph.models.head``).
        """
        return self.head.sample(features, n, keys)

    def set_ood_reference(self, reference: OODReference | None) -> None:
        """Score new galaxies against ``reference`` (``None`` removes it); its k and threshold go in the config."""
        self._config["ood"] = None
        self._modules.pop("_ood", None)
        if reference is not None:
            self._ood = reference.to(self._mean.device)
            self._config["ood"] = reference.config()

    def ood_score(self, images: Tensor, features: Tensor) -> Tensor | None:
        """(B,) how far inputs ``images`` with ``features`` are from the training distribution (> 1: flagged), or None."""
        return None if self.ood is None else self.ood.score(images, features)


def _channel_stat(value: float | list[float]) -> Tensor:
    return torch.tensor(value, dtype=torch.float32).reshape(1, -1, 1, 1)


class GalaxyModel(EncoderWithHead):
    """Images (B, C, S, S) in [0, 1] to Dirichlet concentrations (B, A), one per schema answer.

    Inputs are normalised inside the model (``(x - input_mean) / input_std``), so
    every caller feeds the same [0, 1] tensors the data transforms produce.
    ``channels_last`` stores the encoder in NHWC and converts inputs to match:
    on CPU this roughly triples efficientnet_b0 training speed (see BENCHMARKS.md).

    Example:
        >>> model = GalaxyModel("gz2", arch="resnet10t", image_size=32)
        >>> model(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 37])
    """

    MODEL_TYPE = "galaxy"

    def __init__(
        self,
        schema: Schema | str,
        arch: str = "efficientnet_b0",
        channels: int = 3,
        dropout: float = 0.2,
        image_size: int | None = None,
        preprocessing: dict[str, Any] | None = None,
        input_mean: float | list[float] = 0.5,
        input_std: float | list[float] = 0.5,
        channels_last: bool = True,
        pretrained_from: str | None = None,
    ) -> None:
        super().__init__()
        self.schema = get_schema(schema) if isinstance(schema, str) else schema
        if image_size is None and preprocessing is not None:
            image_size = preprocessing.get("image_size")
        self.channels_last = channels_last
        self.encoder = create_encoder(arch, channels=channels)
        self.head = DirichletHead(self.encoder.num_features, self.schema.n_answers, dropout=dropout)
        if channels_last:
            self.encoder.to(memory_format=torch.channels_last)
        self._set_input_normalisation(input_mean, input_std)
        self.register_buffer("_calibration", None, persistent=False)
        self._config: dict[str, Any] = {
            "version": CONFIG_VERSION,
            "model_type": self.MODEL_TYPE,
            "schema": self.schema.to_dict(),
            "arch": arch,
            "channels": channels,
            "dropout": dropout,
            "image_size": image_size,
            "preprocessing": copy.deepcopy(preprocessing),
            "input_mean": input_mean,
            "input_std": input_std,
            "n_features": int(self.encoder.num_features),
            "answers": list(self.schema.answers),
            "pretrained_from": pretrained_from,  # the run or timm folder the encoder started from (train --init)
            "calibration": None,  # set_calibration
            "ood": None,  # set_ood_reference
        }

    def set_calibration(self, scales: dict[str, float] | None) -> None:
        """Multiply each question's concentrations by its scale in every sample (``galaxymorph.calibration``).

        Fitted on the validation votes after training; ``None`` removes it. Kept in the
        config (plain data), so a saved model predicts calibrated.
        """
        if scales is None:
            self._config["calibration"] = None
            self._calibration = None
            return
        per_answer = [float(scales.get(self.schema.question_names[q], 1.0)) for q in self.schema.question_index]
        self._config["calibration"] = {name: float(scales.get(name, 1.0)) for name in self.schema.question_names}
        self._calibration = torch.tensor(per_answer, dtype=torch.float32, device=self._mean.device)

    def sample(self, features: Tensor, n: int, keys: Tensor | None = None) -> Tensor:
        """(B, A, n) concentrations from n MC-dropout passes of the head, calibrated if the model is."""
        samples = super().sample(features, n, keys)
        return samples if self._calibration is None else samples * self._calibration.view(1, -1, 1)

    @classmethod
    def from_config(cls, config: dict[str, Any], channels_last: bool = True) -> "GalaxyModel":
        """The model ``config`` describes (of this version: see ``upgrade_config``), randomly initialised."""
        model = cls(
            Schema.from_dict(config["schema"]),
            arch=config["arch"],
            channels=config["channels"],
            dropout=config["dropout"],
            image_size=config["image_size"],
            preprocessing=config["preprocessing"],
            input_mean=config["input_mean"],
            input_std=config["input_std"],
            channels_last=channels_last,
            pretrained_from=config["pretrained_from"],
        )
        model.set_calibration(config["calibration"])
        return model
