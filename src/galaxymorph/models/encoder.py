"""Image encoders: any timm architecture by name, randomly initialised, any number of channels."""

from __future__ import annotations

import difflib

import timm
from torch import nn

__all__ = ["UnknownArchitectureError", "create_encoder"]


class UnknownArchitectureError(ValueError):
    """An architecture name timm does not know, with the closest names it does."""


def create_encoder(arch: str, channels: int = 3, **timm_kwargs) -> nn.Module:
    """A timm backbone without its classifier, so ``encoder(x)`` gives pooled features (B, F).

    Weights are random: nothing is downloaded (local weights are the fine-tuning
    module's job). ``encoder.num_features`` is F.

    Args:
        arch: any name from ``timm.list_models()``, e.g. ``efficientnet_b0``,
            ``resnet18``, ``convnext_nano``, ``maxvit_nano_rw_256``.
        channels: input channels (1 for single-band images, 3 for colour).
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``drop_path_rate``).

    Raises:
        UnknownArchitectureError: ``arch`` is not a timm model; the message lists close names.

    Example:
        >>> create_encoder("resnet10t", channels=1).num_features
        512
    """
    name = timm.models.split_model_name_tag(arch)[0]
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise UnknownArchitectureError(
            f"unknown architecture {arch!r}{hint} (all names: python -c 'import timm; print(timm.list_models())')"
        )
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    return timm.create_model(arch, pretrained=False, num_classes=0, in_chans=channels, **timm_kwargs)
