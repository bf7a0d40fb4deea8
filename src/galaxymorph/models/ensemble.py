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
    Heads fine-tuned on one frozen encoder share it: models whose encoders compute
    the same features (same weights and input normalisation) run it once.
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
        scored = all(model.config["ood"] is not None for model in models)  # ood_score only if every model gives one
        self.config = first if scored else {**first, "ood": None}
        self.members = len(models)
        self._encoder_of = [next(j for j in range(i + 1) if _same_features(models[j], model))
                            for i, model in enumerate(models)]  # the first member computing the same features

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        computed: dict[int, torch.Tensor] = {}
        for j in self._encoder_of:
            if j not in computed:
                computed[j] = self.models[j].features(x)
        return [computed[j] for j in self._encoder_of]

    def sample(self, features: list[torch.Tensor], n: int, keys: torch.Tensor | None = None) -> torch.Tensor:
        """Each model's ``n`` samples; with ``keys``, each model draws its own masks from them (:func:`subkeys`)."""
        return torch.cat([model.sample(f, n, None if keys is None else subkeys(keys, i))
                          for i, (model, f) in enumerate(zip(self.models, features))], dim=-1)

    def ood_score(self, images: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor | None:
        """The mean of the members' scores, each from its own encoder and reference; None unless all have one.

        Each score is in units of its own model's threshold, so the mean keeps "> 1 is
        flagged" and averages out one encoder's quirks; the max would flag every galaxy
        any member happens to find odd (about the union of their ~5% false alarms).
        """
        scores = [model.ood_score(images, f) for model, f in zip(self.models, features)]
        return None if any(s is None for s in scores) else torch.stack(scores).mean(dim=0)


def _same_features(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models' ``features`` are one computation: the same input normalisation and encoder weights."""
    if a.channels_last != b.channels_last or not (torch.equal(a._mean, b._mean) and torch.equal(a._std, b._std)):
        return False
    if a.encoder is b.encoder:
        return True
    mine, theirs = a.encoder.state_dict(), b.encoder.state_dict()
    return (type(a.encoder) is type(b.encoder) and mine.keys() == theirs.keys()
            and all(torch.equal(mine[k], theirs[k]) for k in mine))
