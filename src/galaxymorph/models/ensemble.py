"""Several models as one posterior: every model's MC-dropout samples, stacked (``predict --checkpoint A --checkpoint B``)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from galaxymorph.models.head import subkeys

__all__ = ["Ensemble"]


class Ensemble(nn.Module):
    """Models trained with other seeds as one posterior: every model's MC-dropout samples, stacked.

    Dropout in the head alone spreads the samples less than models trained from
    other starts do (Lakshminarayanan et al. 2017); ``sample(features, n)`` gives
    ``n`` samples of each model, model after model, so the output has n x models.
    """

    _SAME = ("task", "schema", "classes", "target", "bounded", "preprocessing")  # what the output means and is fed

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        first = models[0].config
        for i, model in enumerate(models[1:], start=2):
            differs = [key for key in self._SAME if model.config.get(key) != first.get(key)]
            if differs:
                raise ValueError(f"--checkpoint {i} differs from the first in {differs[0]!r}; an ensemble's models "
                                 "need the same outputs and preprocessing")
        self.models = nn.ModuleList(models)
        self.config = first
        self.members = len(models)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [model.features(x) for model in self.models]

    def sample(self, features: list[torch.Tensor], n: int, keys: torch.Tensor | None = None) -> torch.Tensor:
        """Each model's ``n`` samples; with ``keys``, each model draws its own masks from them (:func:`subkeys`)."""
        return torch.cat([model.sample(f, n, None if keys is None else subkeys(keys, i))
                          for i, (model, f) in enumerate(zip(self.models, features))], dim=-1)
