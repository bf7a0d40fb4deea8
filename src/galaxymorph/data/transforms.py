"""Everything that turns stored pixels into model inputs, as plain data plus batched transforms.

Training augmentation is one ``affine_grid`` + ``grid_sample`` per batch: each
galaxy gets its own rotation (any angle), flip, zoom-crop (Zoobot keeps about
75% of the frame) and shift, all resampled straight to the model size in
one pass on the batch tensor. Evaluation is a fixed central crop at the mean
zoom and an antialiased resize, so predictions never see random augmentation.
Pixels are divided by 255 here, exactly once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from galaxymorph.data.images import READERS, FitsStretch, load_measured_image
from galaxymorph.data.normalise import CropRecord, Photometry, SizeCrop

__all__ = ["DIHEDRAL", "PRESETS", "PRESET_NORMALISATION", "Preprocessing", "EvalTransform", "TrainTransform",
           "dihedral_views", "eval_transform", "preset_preprocessing", "train_transform", "to_channels", "with_masks"]

_LUMINANCE = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's convert("L")


@dataclass(frozen=True)
class Preprocessing:
    """From an image file to a model input.

    Attributes:
        stored_size: side in px of the stored (sharded) pixels.
        source_crop: fraction of the original frame kept before resizing to ``stored_size``.
        image_size: side in px of the model input.
        channels: 1 (luminance) or 3.
        train_zoom: range of the fraction of the stored frame kept by the random training crop.
        eval_zoom: fraction of the stored frame kept by the deterministic evaluation crop
            (the mean of ``train_zoom`` by default, so train and eval see galaxies at one scale).
        train_shift: largest offset of the random training crop's centre, as a fraction of
            the frame side. The evaluation crop is always central and survey cutouts are
            centred on their galaxy, so a few percent trains better (BENCHMARKS: GZ2) than
            letting the crop wander anywhere inside the frame as torchvision's
            RandomResizedCrop and Zoobot do; 0.5 restores that (up to 15% at zoom 0.7).
        stretch: how FITS fluxes became the stored 0..255 pixels; kept here so that
            prediction, embedding and fine-tuning read FITS files as the shards did.
        reader: how a file becomes the stored pixels (:func:`galaxymorph.data.images.load_image`):
            ``"galaxymorph"`` crops and resizes in one antialiased step, ``"zoobot"`` as zoobot
            2.9 does (see :func:`preset_preprocessing`).
        size_crop: None (the fixed central ``source_crop``), or a crop sized by each galaxy's
            measured radius (:class:`galaxymorph.data.normalise.SizeCrop`): for cut-outs made at
            other scales than the training ones. ``source_crop`` stays its fallback.
        photometry: None, or each image's sky and levels matched to the training set's
            (:class:`galaxymorph.data.normalise.Photometry`): for cut-outs stretched another way.
    """

    stored_size: int = 128
    source_crop: float = 1.0
    image_size: int = 64
    channels: int = 3
    train_zoom: tuple[float, float] = (0.7, 0.8)
    eval_zoom: float | None = None
    train_shift: float = 0.03
    stretch: FitsStretch = FitsStretch()
    reader: str = "galaxymorph"
    size_crop: SizeCrop | None = None
    photometry: Photometry | None = None

    def __post_init__(self) -> None:
        for name, kind in (("stretch", FitsStretch), ("size_crop", SizeCrop), ("photometry", Photometry)):
            if isinstance(getattr(self, name), dict):  # from plain data
                object.__setattr__(self, name, kind(**getattr(self, name)))
        object.__setattr__(self, "train_zoom", tuple(float(z) for z in self.train_zoom))
        if self.eval_zoom is None:
            object.__setattr__(self, "eval_zoom", sum(self.train_zoom) / 2)
        lo, hi = self.train_zoom
        checks = [  # each names the one setting at fault, never the whole object
            (self.channels in (1, 3), "channels", "must be 1 or 3"),
            (self.stored_size >= 1, "stored_size", "must be >= 1 px"),
            (self.image_size >= 1, "image_size", "must be >= 1 px"),
            (0 < self.source_crop <= 1, "source_crop", "must lie in (0, 1]: the central fraction of the frame kept"),
            (0 < lo <= hi <= 1, "train_zoom", "must be (low, high) with 0 < low <= high <= 1"),
            (0 < self.eval_zoom <= 1, "eval_zoom", "must lie in (0, 1]"),
            (0 <= self.train_shift <= 0.5, "train_shift", "must lie in [0, 0.5] (a fraction of the frame side)"),
            (self.reader in READERS, "reader", f"must be one of {READERS}"),
            (self.size_crop is None or self.reader == "galaxymorph", "reader",
             "cannot be used with size_crop, which needs reader='galaxymorph' (the other readers crop their own way)"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} {rule}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (tuples become lists); the normalisations only when on, so files written
        before they existed and files written without them are the same."""
        data = asdict(self, dict_factory=lambda items: {k: list(v) if isinstance(v, tuple) else v for k, v in items})
        return {key: value for key, value in data.items() if key not in _OPTIONAL or value is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessing":
        """Inverse of :meth:`to_dict`; unknown keys are an error (catches typos)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown Preprocessing keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    def read(self, path: str | Path) -> np.ndarray:
        """One image file as the stored pixels, uint8 (stored_size, stored_size, channels), as shards hold them."""
        return self.read_measured(path)[0]

    def read_measured(self, path: str | Path) -> tuple[np.ndarray, CropRecord | None]:
        """:meth:`read` and, with ``size_crop``, what the crop measured and applied (None without)."""
        return load_measured_image(path, self.stored_size, self.channels, self.source_crop, self.stretch, self.reader,
                                   size_crop=self.size_crop, photometry=self.photometry)

    @property
    def needs_fitting(self) -> bool:
        """A size crop or photometry asked for whose numbers come from the training galaxies (:meth:`fitted`)."""
        return (self.size_crop is not None and self.size_crop.multiple is None) or (
            self.photometry is not None and self.photometry.levels is None)

    def fitted(self, paths: Sequence[str | Path]) -> "Preprocessing":
        """This preprocessing with what :attr:`needs_fitting` measured on the images ``paths`` (training galaxies).

        The size crop's multiple first (so the median galaxy keeps the fixed crop), then the
        photometry on the images as that crop stores them.
        """
        prep = self
        if self.size_crop is not None and self.size_crop.multiple is None:
            trial = replace(self, size_crop=replace(self.size_crop, multiple=1.0), photometry=None)
            prep = replace(prep, size_crop=self.size_crop.fit(trial.read_measured(p)[1] for p in paths))
        if self.photometry is not None and self.photometry.levels is None:
            plain = replace(prep, photometry=None)
            prep = replace(prep, photometry=self.photometry.fit(plain.read(p) for p in paths))
        return prep


_OPTIONAL = ("size_crop", "photometry")  # left out of to_dict when off


# How each preset's [0, 1] images are normalised before the encoder: (mean, std), or None for what the
# encoder's own config.json says. Zoobot never normalises: galaxy-datasets' view configs have normalize=False.
PRESET_NORMALISATION: dict[str, tuple[float, float] | None] = {"galaxymorph": None, "zoobot": (0.0, 1.0)}
PRESETS = tuple(PRESET_NORMALISATION)
_ZOOBOT_ZOOM = 1.2  # galaxy-datasets' minimal_view_config: RandomAffine(scale=(1.2, 1.2)), no rotation or shift
_ZOOBOT_TRAIN_ZOOM = (1.2, 1.4)  # its default_view_config, for training


def preset_preprocessing(name: str, image_size: int | None = None, channels: int = 3,
                         source_crop: float = 1.0) -> Preprocessing:
    """A named way from image file to model input, for encoders that carry none of their own.

    - ``"galaxymorph"``: the central ``source_crop`` of the frame, stored at ``image_size / 0.75``
      px so the training zoom-crop keeps detail; ``image_size`` 64 px by default.
    - ``"zoobot"``: what zoobot 2.9 does before its encoder when it predicts (galaxy-datasets'
      ``minimal_view_config``), pixel for pixel: the full-resolution image zoomed 1.2x about its
      centre (a bilinear affine warp), resized (antialiased bilinear) to ``image_size`` (224 px by
      default, as zoobot), divided by 255, and fed without mean/std normalisation
      (:data:`PRESET_NORMALISATION`). Fine-tuning crops draw zoobot's training zoom (1.2-1.4x).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preprocessing {name!r}; choose one of {', '.join(PRESETS)}")
    if name == "galaxymorph":
        size = image_size or 64
        # Stored a little larger than the model input so the zoom-crop augmentation keeps detail.
        return Preprocessing(stored_size=round(size / 0.75), source_crop=source_crop, image_size=size, channels=channels)
    if source_crop != 1.0:
        raise ValueError(f"source_crop={source_crop} with the zoobot preprocessing, which always keeps the central "
                         f"1/{_ZOOBOT_ZOOM} of the frame as zoobot does; drop source_crop")
    size = image_size or 224
    low, high = _ZOOBOT_TRAIN_ZOOM
    return Preprocessing(stored_size=size, source_crop=1 / _ZOOBOT_ZOOM, image_size=size, channels=channels,
                         train_zoom=(_ZOOBOT_ZOOM / high, _ZOOBOT_ZOOM / low), eval_zoom=1.0, reader="zoobot")


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, C, H, W) with C in {1, 3} -> ``channels``: luminance or grey repeated."""
    if images.shape[1] == channels:
        return images
    if channels == 1:
        weights = torch.tensor(_LUMINANCE, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images * weights).sum(dim=1, keepdim=True)
    return images.expand(-1, 3, -1, -1)


def _as_float(images: torch.Tensor, channels: int) -> torch.Tensor:
    if images.dtype != torch.uint8:
        raise TypeError(f"transforms expect uint8 images (0..255), got {images.dtype}")
    if images.ndim != 4:
        raise ValueError(f"transforms expect a batch (B, C, H, W), got shape {tuple(images.shape)}")
    return to_channels(images.float().div_(255.0), channels)


class EvalTransform:
    """Deterministic: central crop of ``eval_zoom`` of the frame, antialiased resize, [0, 1]."""

    def __init__(self, prep: Preprocessing):
        self.prep = prep

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.geometry(_as_float(images, self.prep.channels))

    def geometry(self, x: torch.Tensor) -> torch.Tensor:
        """The crop and resize alone, of any float (B, C, H, W) in [0, 1]."""
        side = x.shape[-1]
        crop = max(1, round(side * self.prep.eval_zoom))
        start = (side - crop) // 2
        x = x[..., start : start + crop, start : start + crop]
        if crop != self.prep.image_size:
            x = F.interpolate(x, size=self.prep.image_size, mode="bilinear", antialias=True, align_corners=False)
        return x.clamp_(0.0, 1.0).contiguous()


class TrainTransform:
    """Random rotation (any angle), flip, zoom-crop and shift per galaxy, one resampling pass.

    When the crop would be shrunk by more than ~1.5x, the batch is first downsized
    with antialiasing so the bilinear ``grid_sample`` does not alias.
    """

    def __init__(self, prep: Preprocessing, generator: torch.Generator | None = None):
        self.prep = prep
        self.generator = generator

    def _rand(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.rand(n, generator=self.generator).to(device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.geometry(_as_float(images, self.prep.channels))

    def geometry(self, x: torch.Tensor) -> torch.Tensor:
        """The random rotation, flip, zoom-crop and shift alone, of any float (B, C, H, W) in [0, 1]."""
        b, out = x.shape[0], self.prep.image_size
        lo, hi = self.prep.train_zoom
        prefilter = math.ceil(1.5 * out / lo)
        if x.shape[-1] > prefilter:
            x = F.interpolate(x, size=prefilter, mode="bilinear", antialias=True, align_corners=False)
        zoom = lo + (hi - lo) * self._rand(b, x.device)
        angle = 2 * math.pi * self._rand(b, x.device)
        flip = torch.where(self._rand(b, x.device) < 0.5, -1.0, 1.0)
        # shift the crop centre, at most to where the box touches the frame edge (grid units: side = 2)
        reach = (1 - zoom).clamp(max=2 * self.prep.train_shift)
        shift = reach.unsqueeze(1) * (2 * torch.stack([self._rand(b, x.device), self._rand(b, x.device)], 1) - 1)
        cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
        theta = torch.stack(
            [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
        )
        grid = F.affine_grid(theta, [b, x.shape[1], out, out], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return x.clamp_(0.0, 1.0)


def train_transform(prep: Preprocessing, generator: torch.Generator | None = None) -> TrainTransform:
    """uint8 (B, C, stored, stored) -> float32 (B, channels, image_size, image_size) in [0, 1], random."""
    return TrainTransform(prep, generator)


def eval_transform(prep: Preprocessing) -> EvalTransform:
    """uint8 (B, C, stored, stored) -> float32 (B, channels, image_size, image_size) in [0, 1], deterministic."""
    return EvalTransform(prep)


def with_masks(transform: EvalTransform | TrainTransform, images: torch.Tensor,
               masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``transform`` of uint8 images and of their uint8 masks (B, K, H, W; 255 = every volunteer), as floats in [0, 1].

    Masks ride along as extra channels of one resampling, so each mask gets exactly
    its image's crop, rotation, flip and interpolation.
    """
    x = _as_float(images, transform.prep.channels)
    out = transform.geometry(torch.cat([x, masks.float().div_(255.0)], dim=1))
    return out[:, : x.shape[1]], out[:, x.shape[1] :]


# The 8 symmetries of the square, as (quarter turns, mirrored first): a galaxy's label does not depend on them.
DIHEDRAL = tuple((k, mirrored) for mirrored in (False, True) for k in range(4))


def dihedral_views(images: torch.Tensor) -> torch.Tensor:
    """(8, B, C, S, S): square images under the 4 rotations, then the 4 rotations of their mirror image."""
    return torch.stack([torch.rot90(images.flip(3) if mirrored else images, k, dims=(2, 3)) for k, mirrored in DIHEDRAL])
