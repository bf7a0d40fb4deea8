"""How far an image is from the training distribution: deep k-nearest-neighbour distance to held-out galaxies.

Each galaxy is described by its L2-normalised pooled encoder features (Sun et al.
2022, "deep kNN") next to a few cheap image statistics (light profile, colour,
background noise, brightness quantiles), standardised on the reference set. The
statistics are there because an encoder trained on morphology learns to ignore
what does not change the votes: on real GZ2 images a small trained encoder alone
flagged only 16-51% of greyscale or channel-permuted copies, with the statistics
59-100% (BENCHMARKS.md, "Out of distribution").

The score is the distance to the ``k``-th nearest reference galaxy divided by the
95th percentile of the reference galaxies' own leave-one-out ``k``-th distances, so
``ood_score > 1`` for about 5% of new in-distribution galaxies (conformal-style),
and for most galaxies of a shifted catalogue (another zoom, colour stretch, bands).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["OODReference", "OOD_FILE", "image_statistics"]

OOD_FILE = "ood_reference.safetensors"
_EPS = 1e-3  # below any real image's light, noise or colour excess: keeps the logs finite for flat images
_STATS_WEIGHT = 2.0  # statistics block's norm relative to the unit-norm features (measured: BENCHMARKS.md)


def image_statistics(images: Tensor) -> Tensor:
    """(B, 4 + 2 C + 5) cheap statistics of model inputs (B, C, S, S) in [0, 1]: what zoom and colour change.

    Light fractions within 4 radii (zoom), each channel's light relative to the mean and
    the log mean spread across channels (colour, greyscale), each channel's background
    noise at the edge (bands), and 4 quantiles of the luminance (stretch).
    """
    side = images.shape[-1]
    axis = torch.arange(side, device=images.device, dtype=images.dtype) - (side - 1) / 2
    radius = (axis[:, None] ** 2 + axis[None, :] ** 2).sqrt() / side
    background = images.flatten(2).median(dim=2).values[:, :, None, None]
    excess = (images - background).clamp(min=0)
    light = excess.mean(dim=1)
    total = light.sum(dim=(1, 2)) + _EPS
    profile = torch.stack([(light * (radius < r)).sum(dim=(1, 2)) / total for r in (0.05, 0.1, 0.2, 0.3)], dim=1)
    channel_light = excess.sum(dim=(2, 3)) + _EPS
    colour = (channel_light / channel_light.mean(dim=1, keepdim=True)).log()
    spread = (images.std(dim=1, correction=0).mean(dim=(1, 2)) + _EPS).log()[:, None]
    edge = radius > 0.4
    noise = (((images - background).abs() * edge).sum(dim=(2, 3)) / edge.sum() + _EPS).log()
    levels = torch.tensor([0.1, 0.5, 0.9, 0.99], device=images.device, dtype=images.dtype)
    quantiles = torch.quantile(images.mean(dim=1).flatten(1), levels, dim=1).T
    return torch.cat([profile, colour, spread, noise, quantiles], dim=1)


class OODReference(nn.Module):
    """Reference galaxies' descriptions, their statistics' mean and std, ``k`` and the threshold.

    The tensors are buffers (they follow the model's device) but not in the model's
    ``state_dict``: they live in their own file (:data:`OOD_FILE`), so models saved
    without one load and predict exactly as before.
    """

    def __init__(self, reference: Tensor, stats_mean: Tensor, stats_std: Tensor, k: int, threshold: float = 1.0,
                 quantile: float = 0.95):
        super().__init__()
        self.register_buffer("reference", reference.float(), persistent=False)
        self.register_buffer("stats_mean", stats_mean.float(), persistent=False)
        self.register_buffer("stats_std", stats_std.float(), persistent=False)
        self.k, self.threshold, self.quantile = int(k), float(threshold), float(quantile)

    @classmethod
    def fit(cls, stats: Tensor, features: Tensor, k: int = 10, quantile: float = 0.95) -> "OODReference":
        """The reference of held-out in-distribution galaxies; the threshold at ``quantile`` of their own scores.

        ``stats`` are the galaxies' :func:`image_statistics`, computed batch by batch so
        that the images themselves need not be kept.
        """
        reference = cls(torch.empty(0), stats.mean(dim=0), stats.std(dim=0).clamp_min(_EPS), min(k, len(features) - 1),
                        quantile=quantile)
        reference.reference = reference.describe(None, features, stats)
        own = reference.kth_distance(reference.reference, skip_self=True)
        reference.threshold = max(float(torch.quantile(own, quantile)), _EPS)  # identical references: no zero division
        return reference

    def describe(self, images: Tensor | None, features: Tensor, stats: Tensor | None = None) -> Tensor:
        """(B, F + S): unit-norm features beside the standardised statistics, scaled to ``_STATS_WEIGHT`` norm."""
        stats = image_statistics(images) if stats is None else stats
        standard = (stats - self.stats_mean) / self.stats_std
        return torch.cat([F.normalize(features.float(), dim=1), standard * _STATS_WEIGHT / stats.shape[1] ** 0.5], dim=1)

    def kth_distance(self, queries: Tensor, skip_self: bool = False, chunk: int = 1024) -> Tensor:
        """Distance of each query to its ``k``-th nearest reference galaxy, ``chunk`` queries at a time (bounded memory)."""
        rank = self.k + int(skip_self)  # a reference galaxy's nearest neighbour is itself
        parts = [torch.cdist(q, self.reference).topk(rank, dim=1, largest=False).values[:, -1] for q in queries.split(chunk)]
        return torch.cat(parts) if parts else queries.new_zeros(0)

    def score(self, images: Tensor, features: Tensor) -> Tensor:
        """(B,) ``ood_score``: the k-th neighbour distance over the threshold; > 1 is flagged."""
        return self.kth_distance(self.describe(images, features)) / self.threshold

    def config(self) -> dict[str, Any]:
        """What ``config.json`` keeps (``"ood"``); the tensors go to :data:`OOD_FILE` beside it."""
        return {"k": self.k, "threshold": self.threshold, "quantile": self.quantile, "galaxies": len(self.reference)}

    def tensors(self) -> dict[str, Tensor]:
        return {"reference": self.reference, "stats_mean": self.stats_mean, "stats_std": self.stats_std}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], config: dict[str, Any]) -> "OODReference":
        return cls(**tensors, k=config["k"], threshold=config["threshold"], quantile=config["quantile"])
