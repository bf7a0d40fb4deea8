"""One batch through the model: the encoder once per galaxy, the head N times with each galaxy's own masks.

Dropout lives only in the head, so N posterior samples cost one encoder pass plus N
cheap head passes instead of N full forward passes. The Lightning module here is what
``predict``, ``embed``, mask prediction and the end of training run over galaxies.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from lightning import pytorch as pl
from torch import nn

from galaxymorph.data.transforms import Preprocessing, dihedral_views, eval_transform
from galaxymorph.engine import share_threads
from galaxymorph.models.head import galaxy_keys, subkeys
from galaxymorph.prediction.backends import Encode, encoder_backend

__all__ = ["MCDropoutPredictor", "posterior", "posterior_samples"]


def posterior_samples(model: nn.Module, images: torch.Tensor, samples: int, tta: bool = False,
                      keys: torch.Tensor | None = None, encode: Encode | None = None) -> torch.Tensor:
    """(B, outputs, samples) head passes over one encoder pass; with ``tta`` (B, outputs, 8 x samples).

    The 8 rotation/flip views of each galaxy (:func:`dihedral_views`) go through the
    encoder as one batch, and each view's ``samples`` MC-dropout passes are further
    samples of the same posterior, view by view. ``keys`` (:func:`galaxy_keys`) fix
    each galaxy's dropout masks, each view its own; ``encode`` runs the encoder (a backend).
    """
    return posterior(model, images, samples, tta, keys, encode)[0]


def posterior(model: nn.Module, images: torch.Tensor, samples: int, tta: bool = False,
              keys: torch.Tensor | None = None, encode: Encode | None = None) -> tuple[torch.Tensor, Any]:
    """:func:`posterior_samples` and the encoder features of the images as given (the unrotated view).

    ``encode`` runs the encoder instead of ``model.features`` (a backend, :mod:`galaxymorph.prediction.backends`).
    """
    views = dihedral_views(images) if tta else images[None]  # the first view is the image itself
    features = (encode or model.features)(views.flatten(0, 1))
    view_keys = None if keys is None else torch.cat([subkeys(keys, v) for v in range(len(views))])
    per_view = model.sample(features, samples, view_keys)  # (views x B, outputs, samples)
    unrotated = [f[: len(images)] for f in features] if isinstance(features, list) else features[: len(images)]
    return per_view.unflatten(0, views.shape[:2]).permute(1, 2, 0, 3).flatten(2), unrotated


DEFAULT_SAMPLES = 5  # predict's --samples: also what a run's validation pass calibrates on


class MCDropoutPredictor(pl.LightningModule):
    """The encoder once, then ``samples`` head passes, each galaxy's masks from its ``id_str``.

    A step returns the head's samples (B, outputs, samples) and each galaxy's ood score
    (None for a model without an OOD reference). With ``tta`` the encoder sees the 8
    rotation/flip views at once and the samples are 8 x ``samples``. ``backend`` says what
    runs the encoder (:mod:`galaxymorph.prediction.backends`), built in each process as it starts.
    """

    def __init__(self, model: nn.Module, samples: int, tta: bool = False, backend: str = "eager"):
        super().__init__()
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.model, self.samples, self.tta, self.backend = model, samples, tta, backend
        self._transform: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._encode: Encode | None = None
        self._exported = False

    def on_predict_start(self) -> None:
        share_threads(self.trainer)
        self._transform = eval_transform(Preprocessing.from_dict(self.model.config["preprocessing"]))
        self.model.eval()
        name, self._encode = encoder_backend(self.model, self.backend, self.device, self.trainer.precision)
        self._exported = name != "eager"

    def on_predict_end(self) -> None:
        self._encode = None  # an exported copy of the weights, not kept beyond the run

    def images(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's uint8 images as the model sees them (the deterministic evaluation transform)."""
        assert self._transform is not None
        return self._transform(batch["image"])

    def run(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """(images as the model sees them, head samples, encoder features) of a batch."""
        images = self.images(batch)
        samples, features = posterior(self.model, images, self.samples, self.tta, galaxy_keys(batch["id_str"]),
                                      self._encode)
        return images, samples, features

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        if batch["image"] is None:
            return None
        # an exported encoder computes at its own precision (OpenVINO's bf16); the head and OOD score after it stay
        # float32 whatever autocast --precision opened, as BENCHMARKS measured them
        with torch.autocast(self.device.type, enabled=False) if self._exported else contextlib.nullcontext():
            images, samples, features = self.run(batch)
            score = getattr(self.model, "ood_score", None)
            return samples.float(), None if score is None else score(images, features)
