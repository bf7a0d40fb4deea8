"""Segmentation: a pretrained encoder used at every scale, a U-Net decoder, and a Beta per pixel with MC dropout.

The encoder is any starting point :func:`galaxymorph.models.load_encoder` accepts, rebuilt
with timm's ``features_only`` so that it gives its feature maps at every stride; its
weights are the pretrained ones. The decoder goes from the deepest map up, each step
doubling the resolution and joining the encoder's map of that scale (U-Net, as
segmentation_models_pytorch's ``Unet``), back to the input size.

The head gives, for every class and pixel, the probability that a volunteer marks it;
volunteers draw independently of each other, so the number who marked a pixel is
Binomial (:func:`galaxymorph.losses.mask_nll`). What the model does not know of that
probability comes from MC dropout: dropout drops whole channels of the decoder's last
map, and, like the classification heads', draws each galaxy's masks from its
``id_str`` (:func:`galaxymorph.models.head.keyed_dropout`): the encoder and decoder run
once per galaxy, the cheap 1x1 head N times. (A Beta-Binomial head, which could also
say how much volunteers disagree, learned broad Betas of mean just under one half over
whole galaxies instead of their arms in the same training: docs/segmentation.md.)
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from galaxymorph.data.masks import class_names
from galaxymorph.models.finetune_model import Finetunable, PretrainedEncoder
from galaxymorph.models.galaxy_model import CONFIG_VERSION
from galaxymorph.models.head import keyed_dropout

__all__ = ["DECODER_CHANNELS", "MaskHead", "SegmentationModel", "UNetDecoder", "feature_encoder"]

DECODER_CHANNELS = (64, 48, 32, 24, 16)  # deepest scale first; smp's beside it: benchmarks segmentation --decoders
INITIAL_SHARE = 0.05  # every pixel's probability of being marked before training: most pixels are not


class _Matcher:
    """A timm model's ``group_matcher`` kept as plain data, for its ``features_only`` twin (which has none)."""

    def __init__(self, fine: Any, coarse: Any) -> None:
        self.fine, self.coarse = fine, coarse

    def __call__(self, coarse: bool = False) -> Any:
        return self.coarse if coarse else self.fine


def feature_encoder(arch: str, channels: int, encoder_args: dict[str, Any] | None = None) -> nn.Module:
    """timm's ``features_only`` form of ``arch`` (random weights), with the whole model's parameter groups.

    The groups (stem, stages, ...) decide what ``unfreeze`` trains and the layer-wise
    learning rates; the parameter names are those of the whole model, so a pretrained
    encoder's weights load into it as they are.
    """
    args = dict(encoder_args or {})
    encoder = timm.create_model(arch, pretrained=False, features_only=True, in_chans=channels, **args)
    with torch.device("meta"):  # for its group_matcher only: no memory, no initialisation
        whole = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=channels, **args)
    if hasattr(whole, "group_matcher"):
        encoder.group_matcher = _Matcher(whole.group_matcher(coarse=False), whole.group_matcher(coarse=True))
    return encoder


class _Block(nn.Sequential):
    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__(nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs),
                         nn.ReLU(inplace=True), nn.Conv2d(outputs, outputs, 3, padding=1, bias=False),
                         nn.BatchNorm2d(outputs), nn.ReLU(inplace=True))


class UNetDecoder(nn.Module):
    """Feature maps (shallow to deep) to one map at the input size: up x2, join the skip, two 3x3 conv-BN-ReLU."""

    def __init__(self, encoder_channels: Sequence[int], widths: Sequence[int] = DECODER_CHANNELS) -> None:
        super().__init__()
        if len(widths) < len(encoder_channels):
            raise ValueError(f"decoder_channels needs one width per encoder scale ({len(encoder_channels)}), "
                             f"got {list(widths)}")
        skips = list(encoder_channels[-2::-1]) + [0] * (len(widths) - len(encoder_channels) + 1)
        inputs = [encoder_channels[-1], *widths[:-1]]
        self.blocks = nn.ModuleList(_Block(i + s, w) for i, s, w in zip(inputs, skips, widths))
        self.channels = widths[-1]

    def forward(self, features: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
        skips = list(features[-2::-1])
        x = features[-1]
        for index, block in enumerate(self.blocks):
            skip = skips[index] if index < len(skips) else None
            target = skip.shape[-2:] if skip is not None else size
            x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
            x = block(x if skip is None else torch.cat([x, skip], dim=1))
        return x


class MaskHead(nn.Module):
    """Decoder, then channel dropout and a 1x1 convolution to one logit per class and pixel: (B, K, H, W).

    ``forward`` gives logits (the loss takes them); ``sample`` probabilities.
    """

    def __init__(self, encoder_channels: Sequence[int], reduction: int, n_classes: int, dropout: float = 0.2,
                 widths: Sequence[int] = DECODER_CHANNELS) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.decoder = UNetDecoder(encoder_channels, widths)
        self.out = nn.Conv2d(self.decoder.channels, n_classes, 1)
        with torch.no_grad():  # start where most pixels are: marked by few volunteers
            self.out.bias.fill_(math.log(INITIAL_SHARE / (1 - INITIAL_SHARE)))
        self.reduction, self.dropout = reduction, dropout

    def decode(self, features: Sequence[Tensor]) -> Tensor:
        """The decoder's last map (B, D, H, W) at the input size."""
        first = features[0].shape[-2:]
        return self.decoder(features, (first[0] * self.reduction, first[1] * self.reduction))

    def forward(self, features: Sequence[Tensor], mc_dropout: bool = False) -> Tensor:
        return self.out(F.dropout2d(self.decode(features), self.dropout, training=self.training or mc_dropout))

    def sample(self, features: Sequence[Tensor], n: int, keys: Tensor | None = None) -> Tensor:
        """(B, K, H, W, n) probabilities from n dropout masks over the decoder's channels; n=1 drops nothing.

        With ``keys`` (one per galaxy) each galaxy's masks come from its key alone.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        decoded = self.decode(features)
        if n == 1:
            return torch.sigmoid(self.out(decoded)).unsqueeze(-1)
        b, channels = decoded.shape[:2]
        if keys is None:
            keep = F.dropout(decoded.new_ones(n * b, channels), self.dropout, training=True)
        else:
            keep = keyed_dropout(decoded.new_ones(b, channels), n, self.dropout, keys)
        dropped = decoded.unsqueeze(0) * keep.view(n, b, channels, 1, 1)
        return torch.sigmoid(self.out(dropped.flatten(0, 1))).unflatten(0, (n, b)).movedim(0, -1)


class SegmentationModel(Finetunable):
    """Images (B, C, S, S) in [0, 1] to logits (B, K, S, S) that a volunteer marks each pixel (module docstring).

    ``features(x)`` gives the encoder's maps (a list), ``head`` the decoder and the
    mask head, ``sample(features, n, keys)`` MC-dropout probabilities (B, K, S, S, n);
    ``config["classes"]`` names the K classes. Build one with :meth:`create` or
    :meth:`from_config` (random weights, for loading a saved one).

    Example:
        >>> from galaxymorph.models import create_encoder
        >>> encoder = PretrainedEncoder(create_encoder("test_resnet"), {"arch": "test_resnet", "channels": 3,
        ...     "encoder_args": {}, "input_mean": 0.5, "input_std": 0.5, "preprocessing": {"image_size": 32},
        ...     "source": "random"})
        >>> model = SegmentationModel.create(encoder, ["mask_spiral", "mask_bar"])
        >>> model(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 2, 32, 32])
    """

    MODEL_TYPE = "segmentation"

    def __init__(self, encoder: nn.Module, config: dict[str, Any]) -> None:
        super().__init__()
        self.encoder = encoder
        info = encoder.feature_info
        self.head = MaskHead(info.channels(), info.reduction()[0], len(config["classes"]), float(config["dropout"]),
                             config["decoder_channels"])
        self.channels_last = bool(config["channels_last"])
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        self._set_input_normalisation(config["input_mean"], config["input_std"])
        self._config = copy.deepcopy(config)

    @classmethod
    def create(cls, pretrained: PretrainedEncoder, mask_cols: Sequence[str], dropout: float = 0.2,
               preprocessing: dict[str, Any] | None = None, volunteers_col: str | None = None,
               decoder_channels: Sequence[int] = DECODER_CHANNELS) -> "SegmentationModel":
        """A decoder and head for the classes of ``mask_cols`` on the encoder of ``pretrained``, whose weights it keeps.

        The catalogue columns it learned from (``mask_cols``, ``volunteers_col``) are kept
        in its config: evaluate reads the same columns by default.
        """
        if not mask_cols:
            raise ValueError("segmentation needs at least one class (a mask column)")
        config = {
            "version": CONFIG_VERSION, "model_type": cls.MODEL_TYPE, "task": "segmentation",
            "classes": class_names(mask_cols), "mask_cols": list(mask_cols), "volunteers_col": volunteers_col,
            "dropout": dropout, "decoder_channels": [int(w) for w in decoder_channels],
            **{k: pretrained.config[k] for k in ("arch", "channels", "encoder_args", "input_mean", "input_std")},
            "channels_last": pretrained.config.get("channels_last", True),
            "pretrained_from": pretrained.config["source"],
            "preprocessing": preprocessing or pretrained.config["preprocessing"],
            "ood": None,  # no reference is fitted for masks
        }
        if config["preprocessing"] is None:
            raise ValueError(f"{pretrained.config['source']} holds no preprocessing; pass one (image size, crop)")
        config["image_size"] = config["preprocessing"].get("image_size")
        encoder = feature_encoder(config["arch"], config["channels"], config["encoder_args"])
        missing, _ = encoder.load_state_dict(pretrained.encoder.state_dict(), strict=False)  # its classifier: unused
        if missing:
            raise ValueError(f"the encoder of {pretrained.config['source']} lacks weights that {config['arch']} "
                             f"used at every scale needs ({missing[:3]}); is it a timm {config['arch']}?")
        return cls(encoder, config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "SegmentationModel":
        """The architecture of a saved segmentation model (``config`` of this version: see ``upgrade_config``),
        randomly initialised (weights are loaded after)."""
        return cls(feature_encoder(config["arch"], config["channels"], config["encoder_args"]), config)

    def features(self, x: Tensor) -> list[Tensor]:  # type: ignore[override]
        """The encoder's feature maps at every scale, shallow to deep."""
        return list(super().features(x))
