"""Per-galaxy normalisation when an image is read: a crop sized by the galaxy, its light matched to the training set's.

Both are settings of a :class:`galaxymorph.data.transforms.Preprocessing`, so shards,
training, prediction, embedding and fine-tuning read every image the same way.

- :class:`SizeCrop`: measure the galaxy (:func:`galaxymorph.data.extent.measure_extent`)
  and cut a square of ``multiple`` Petrosian-like radii about its centre, so a galaxy cut
  out 2x larger by another service is stored as the training galaxies were. Where the
  square leaves the frame, the rest is sky: the frame's measured sky level and noise.
  ``multiple`` is fitted on the training galaxies so that the median one keeps the fixed
  crop (``source_crop``). What was measured and applied is a :class:`CropRecord` per galaxy.
- :class:`Photometry`: each band's sky level and the luminance above it at a few
  percentiles, mapped (piecewise linearly, the same curve for every band, so colours
  keep their order) onto the training set's median levels, so a cut-out stretched
  another way (a brighter sky, asinh instead of linear) is stored as the training ones were.
  With both, the galaxy is measured twice: the second time on its frame mapped by the first
  crop's curve, so that another stretch does not change its measured size (an asinh stretch
  of GZ2 frames made it 20% larger, median of 60).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, NamedTuple

import numpy as np

from galaxymorph.data.extent import Extent, sky_level

__all__ = ["CROP_STATUSES", "CropRecord", "Photometry", "SizeCrop"]

# what happened to each galaxy: the measurement itself, or (fallback) the fixed crop
CROP_STATUSES = ("measured", "lower bound", "not found")


class CropRecord(NamedTuple):
    """What the size crop did to one galaxy (a named tuple: it rides in batches, which Lightning moves as collections).

    ``measured``: the galaxy's size relative to the training galaxies' median (2 = twice as
    large in its frame; NaN when no central source was found); ``scale``: the side of the
    square cut, relative to the fixed crop (``measured`` within :attr:`SizeCrop.limits`, 1 for
    the fallback); ``status``: ``"measured"``, ``"lower bound"`` (the galaxy overfills
    the frame, so it is at least that large) or ``"not found"`` (fixed crop, flagged).
    """

    measured: float
    scale: float
    status: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (NaN as None)."""
        return {"measured": None if math.isnan(self.measured) else self.measured, "scale": self.scale,
                "status": self.status}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CropRecord":
        return cls(math.nan if data["measured"] is None else float(data["measured"]), float(data["scale"]),
                   str(data["status"]))


@dataclass(frozen=True)
class SizeCrop:
    """Cut each frame to ``multiple`` radii (Petrosian ``ratio``), the scale within ``limits`` of the fixed crop.

    ``multiple`` None: not yet fitted (``write_shards`` fits it on the training galaxies).
    """

    multiple: float | None = None
    ratio: float = 0.5
    limits: tuple[float, float] = (0.125, 8.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits", tuple(float(v) for v in self.limits))
        low, high = self.limits
        if not 0 < low <= 1 <= high:
            raise ValueError(f"size_crop limits must satisfy 0 < low <= 1 <= high, got {self.limits}")
        if not 0 < self.ratio < 1:
            raise ValueError(f"size_crop ratio (the Petrosian ratio that defines the radius) must lie in (0, 1), "
                             f"got {self.ratio}")
        if self.multiple is not None and not self.multiple > 0:
            raise ValueError(f"size_crop multiple must be positive, got {self.multiple}")

    def check_fitted(self) -> None:
        if self.multiple is None:
            raise ValueError(_not_fitted("size_crop.multiple", "a SizeCrop with a multiple"))

    def box(self, extent: Extent, width: int, height: int, crop_fraction: float
            ) -> tuple[tuple[float, float, float, float], CropRecord]:
        """The square to cut from a ``width`` x ``height`` frame (PIL box, may leave the frame) and its record."""
        self.check_fitted()
        fixed = min(width, height) * crop_fraction
        if extent.status == "not found":
            record = CropRecord(math.nan, 1.0, extent.status)
            x, y = width / 2, height / 2
        else:
            measured = self.multiple * extent.radius / fixed
            record = CropRecord(measured, float(np.clip(measured, *self.limits)), extent.status)
            x, y = extent.x, extent.y
        half = fixed * record.scale / 2
        return (x - half, y - half, x + half, y + half), record

    def fit(self, records: Iterable[CropRecord]) -> "SizeCrop":
        """This crop with ``multiple`` set so the median galaxy measured (with ``multiple`` 1) keeps the fixed crop."""
        sizes = [r.measured for r in records if r.status == "measured"]
        if not sizes:
            raise ValueError("no galaxy could be measured to fit the size crop: are the images blank, or not centred "
                             "on a galaxy? Use the fixed crop instead")
        return replace(self, multiple=round(1 / float(np.median(sizes)), 4))


@dataclass(frozen=True)
class Photometry:
    """Match each image's sky (per band) and luminance above it at ``percentiles`` to ``sky`` and ``levels`` (0..255).

    ``sky``/``levels`` None: not yet fitted (``write_shards`` fits them on the training galaxies).
    """

    percentiles: tuple[float, ...] = (90.0, 99.0, 99.9)
    sky: tuple[float, ...] | None = None
    levels: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("percentiles", "sky", "levels"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        levels = self.percentiles
        if list(levels) != sorted(set(levels)) or not 0 < levels[0] <= levels[-1] < 100:
            raise ValueError(f"photometry percentiles must increase strictly within (0, 100), got {self.percentiles}")
        if (self.sky is None) != (self.levels is None):
            raise ValueError("photometry needs both sky and levels, or neither (then write_shards fits them)")
        if self.levels is not None and len(self.levels) != len(self.percentiles):
            raise ValueError(f"photometry has {len(self.levels)} levels for {len(self.percentiles)} percentiles")

    def check_fitted(self) -> None:
        if self.sky is None or self.levels is None:
            raise ValueError(_not_fitted("photometry", "a Photometry with sky and levels"))

    def statistics(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sky per band, luminance above the sky at ``percentiles``) of uint8 (H, W, C) pixels."""
        sky, _ = sky_level(pixels)
        above = (pixels.astype(np.float32) - sky.astype(np.float32)).mean(axis=2)
        return sky, np.percentile(above, self.percentiles)

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (H, W, C) with its sky and levels mapped onto the fitted ones."""
        return self.mapping(pixels)(pixels)

    def mapping(self, pixels: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """The map from uint8 (H, W, C) ``pixels``' sky and levels onto the fitted ones, to apply to them or to
        other pixels of the same image (its whole frame)."""
        self.check_fitted()
        assert self.sky is not None and self.levels is not None
        if len(self.sky) != pixels.shape[2]:
            raise ValueError(f"photometry was fitted on {len(self.sky)}-band images, this one has {pixels.shape[2]}")
        sky, levels = self.statistics(pixels)
        source, target = [0.0], [0.0]
        for level, wanted in zip(levels, self.levels):
            if level > source[-1] + 0.5 and wanted > target[-1]:  # a knot per distinct level (flat images have none)
                source.append(float(level))
                target.append(wanted)
        knots, wanted_sky = (np.array(source), np.array(target)), np.asarray(self.sky, np.float32)

        def mapped(values: np.ndarray) -> np.ndarray:
            above = values.astype(np.float32) - sky.astype(np.float32)
            return np.clip(np.round(_piecewise_linear(above, *knots) + wanted_sky), 0, 255).astype(np.uint8)

        return mapped

    def fit(self, images: Iterable[np.ndarray]) -> "Photometry":
        """These settings with ``sky`` and ``levels`` at the median of ``images``' own (the training galaxies)."""
        stats = [self.statistics(pixels) for pixels in images]
        if not stats:
            raise ValueError("no images to fit the photometry on")
        return replace(self, sky=tuple(round(float(v), 3) for v in np.median([s for s, _ in stats], axis=0)),
                       levels=tuple(round(float(v), 3) for v in np.median([lv for _, lv in stats], axis=0)))


def _not_fitted(setting: str, instead: str) -> str:
    return (f"{setting} is not fitted yet: make shards with it (write_shards, galaxymorph shard) to fit it on the "
            f"training galaxies, or give Preprocessing {instead}")


def _piecewise_linear(values: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``np.interp`` through the knots, continued beyond both ends along the end segments (noise below sky kept)."""
    if len(source) < 2:
        return values
    out = np.interp(values, source, target).astype(np.float32)
    low, high = values < source[0], values > source[-1]
    out[low] = target[0] + (values[low] - source[0]) * (target[1] - target[0]) / (source[1] - source[0])
    out[high] = target[-1] + (values[high] - source[-1]) * (target[-1] - target[-2]) / (source[-1] - source[-2])
    return out
