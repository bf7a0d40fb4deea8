"""Where the galaxy is in its frame and how big it is, from the pixels alone.

A cut-out is centred on its galaxy, but its scale depends on who cut it. This module
measures, on a luminance copy of the frame at most :data:`MEASURE_SIDE` px on a side:

- **sky** per band: the clipped median of the faintest of the four corner patches (the
  corners are the pixels farthest from the galaxy; a whole-frame clipped median would take
  a galaxy that fills the frame for sky), and its noise (clipped standard deviation);
- **sources** above the sky: connected pixels of the smoothed luminance over a threshold
  (what photutils' ``detect_sources`` does, with ``scipy.ndimage.label``: photutils took
  6-10 s to import here, per process, for these few lines);
  the **central source** is the one holding most light near the frame centre, and every
  other source (neighbours, stars, companions) is masked;
- the **centre**: a windowed centroid started at the frame centre, so a bright star
  farther out than the window never pulls it;
- a **star or companion merged** into the central source (brighter than half the galaxy's
  peak) takes the part of it nearer to its own core than to the galaxy's, masked too;
- the **radius**: where the Petrosian ratio (the surface brightness in an annulus over the
  mean within it) falls to ``ratio``, from the *median* of each annulus, so a star or
  companion that merges into the galaxy's segment but covers less than half of an annulus
  does not move it. With ``ratio`` 0.5 the radius is about the half-light radius of an
  exponential disk: close enough to the centre to be found in a galaxy zoomed 3x into
  a GZ2 frame (BENCHMARKS.md, "Size-normalised crop").

Outcomes (:attr:`Extent.status`): ``"measured"``; ``"lower bound"`` when the ratio has
not fallen by the frame's edge (the galaxy overfills the frame: the radius is the
distance to the edge, a lower bound); ``"not found"`` when no source covers the centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = ["MEASURE_SIDE", "Extent", "measure_extent", "sky_level"]

MEASURE_SIDE = 128  # px of the luminance copy measured: a GZ2 frame's galaxy spans ~15-30 px of it
_DETECT_NOISES = 1.5  # source threshold, in units of the sky's per-pixel noise (of the unsmoothed frame)
_MIN_NOISE = 1.0  # one 8-bit count: a noiseless synthetic sky must not make every pixel a source
_MIN_PIXELS = 8  # a source smaller than this is noise
_WINDOW = 0.06  # centroid window and "near the centre" radius, fraction of the shorter side
_ZOOM_BELOW = 4.0  # a radius under this many px of the copy is re-measured on a central sub-frame


@dataclass(frozen=True)
class Extent:
    """A measured galaxy: centre (``x``, ``y`` in pixels of the frame, 0 = its top-left corner),
    ``radius`` (px of the frame), ``status`` (see the module docstring), and each band's sky
    level and noise per frame pixel (0..255 units; the reduced copy's noise times its
    reduction, as if the noise were uncorrelated)."""

    x: float
    y: float
    radius: float
    status: str
    sky: tuple[float, ...]
    noise: tuple[float, ...]


def sky_level(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sky, noise) per band of (H, W, C) pixels: clipped median and standard deviation of the faintest corner patch.

    The standard deviation, not the median absolute deviation: a stretch that clips the sky
    at 0 leaves most sky pixels at 0, and their MAD at 0 too.
    """
    from astropy.stats import sigma_clipped_stats

    h, w = pixels.shape[:2]
    c = max(4, min(h, w) // 8)
    corners = [pixels[:c, :c], pixels[:c, -c:], pixels[-c:, :c], pixels[-c:, -c:]]
    faintest = min(corners, key=lambda patch: float(np.median(patch.mean(axis=2))))
    _, sky, noise = sigma_clipped_stats(faintest.reshape(-1, pixels.shape[2]).astype(np.float64), axis=0)
    return np.asarray(sky), np.asarray(noise)


def _copy(image: Image.Image) -> tuple[np.ndarray, float]:
    """The frame as float32 (h, w, C) at most MEASURE_SIDE px on its shorter side, and the frame px per copy px."""
    factor = max(1.0, min(image.size) / MEASURE_SIDE)
    if factor > 1:
        image = image.resize((max(1, round(image.width / factor)), max(1, round(image.height / factor))),
                             Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)
    return (pixels[..., None] if pixels.ndim == 2 else pixels), factor


def _central_source(smooth: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(mask of the central source, mask of every other source), or None when no source covers the centre."""
    labels, count = ndimage.label(smooth > threshold, structure=np.ones((3, 3)))  # 8-connected, as photutils'
    if count == 0:
        return None
    labels[np.isin(labels, np.flatnonzero(np.bincount(labels.ravel()) < _MIN_PIXELS))] = 0
    h, w = labels.shape
    yy, xx = np.ogrid[:h, :w]
    near = ((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2 < (_WINDOW * min(h, w)) ** 2) & (labels > 0)
    if not near.any():
        return None
    light = np.bincount(labels[near], weights=np.clip(smooth[near], 0, None))
    central = labels == int(np.argmax(light))
    return central, (labels > 0) & ~central


def _centroid(light: np.ndarray) -> tuple[float, float] | None:
    """Windowed centroid (row, column) from the frame centre; None if the window holds no light."""
    h, w = light.shape
    yy, xx = np.mgrid[:h, :w]
    cy, cx, window = (h - 1) / 2, (w - 1) / 2, (_WINDOW * min(h, w)) ** 2
    for _ in range(20):
        weights = light * ((yy - cy) ** 2 + (xx - cx) ** 2 < window)
        total = weights.sum()
        if total <= 0:
            return None
        ny, nx = (weights * yy).sum() / total, (weights * xx).sum() / total
        moved = abs(ny - cy) + abs(nx - cx)
        cy, cx = ny, nx
        if moved < 0.05:
            break
    return float(cy), float(cx)


def _nearer_other_cores(smooth: np.ndarray, central: np.ndarray, cy: float, cx: float) -> np.ndarray:
    """Pixels of the central source nearer another bright core than the galaxy's own: a star or companion merged in.

    A core is a connected region brighter than half the galaxy's peak; the central
    source is split between the cores by distance (a Voronoi split, a cheap stand-in for
    photutils' watershed deblending, which needs scikit-image).
    """
    h, w = smooth.shape
    yy, xx = np.ogrid[:h, :w]
    window = (yy - cy) ** 2 + (xx - cx) ** 2 < (_WINDOW * min(h, w)) ** 2
    peak = np.unravel_index(np.argmax(np.where(window, smooth, -np.inf)), smooth.shape)
    cores, count = ndimage.label(smooth > 0.5 * smooth[peak], structure=np.ones((3, 3)))
    own = cores == cores[peak]
    others = (cores > 0) & ~own
    if count < 2 or not others.any():
        return np.zeros_like(central)
    return central & (ndimage.distance_transform_edt(~others) < ndimage.distance_transform_edt(~own))


def _petrosian_radius(data: np.ndarray, masked: np.ndarray, cy: float, cx: float, ratio: float) -> tuple[float, bool]:
    """(radius, found): where the median-profile Petrosian ratio first falls to ``ratio``; else the edge distance."""
    h, w = data.shape
    yy, xx = np.mgrid[:h, :w]
    rr = np.hypot(yy - cy, xx - cx)
    edge = max(2.0, min(cx, cy, w - 1 - cx, h - 1 - cy))
    edges = np.unique(np.concatenate([np.arange(0.0, 4.0), np.round(np.geomspace(4.0, max(edge, 4.0), 24))]))
    inside = rr < edges[-1]
    ring = np.digitize(rr, edges)  # ring i holds edges[i-1] <= r < edges[i]
    rings = np.arange(1, len(edges))
    median = np.asarray(ndimage.median(data, labels=np.where(inside & ~masked, ring, 0), index=rings), np.float64)
    known = np.isfinite(median)
    if not known.any():
        return edge, False
    median = np.interp(rings, rings[known], median[known])
    area = np.bincount(ring[inside], minlength=len(edges))[1:].astype(np.float64)
    mean_within = np.cumsum(median * area) / np.maximum(np.cumsum(area), 1)
    eta = np.where(mean_within > 0, median / np.where(mean_within > 0, mean_within, 1), 0.0)
    below = np.flatnonzero(eta[1:] < ratio) + 1
    if below.size == 0:
        return edge, False
    i = below[0]
    mid = np.maximum(0.5 * (edges[:-1] + edges[1:]), 0.5)
    # between the two rings' middles, in log r; never beyond them (a centre masked for a brighter neighbour's core can
    # start the profile below the ratio, and extrapolating from it gave a radius of 0)
    step = float(np.clip((eta[i - 1] - ratio) / max(eta[i - 1] - eta[i], 1e-12), 0.0, 1.0))
    return float(math.exp(math.log(mid[i - 1]) + step * (math.log(mid[i]) - math.log(mid[i - 1])))), True


def measure_extent(image: Image.Image, ratio: float = 0.5, refine: bool = True) -> Extent:
    """The galaxy at the centre of ``image`` (8-bit 'L' or 'RGB'): centre, Petrosian-like radius, sky.

    With ``refine``, a radius of under a few px of the reduced copy is measured again on a
    central sub-frame at finer resolution (a galaxy zoomed far out).
    """
    pixels, factor = _copy(image)
    sky, copy_noise = sky_level(pixels)
    lum = pixels.mean(axis=2) - sky.mean()
    noise_lum = max(float(copy_noise.mean()), _MIN_NOISE)
    noise = copy_noise * factor
    centre = (image.width / 2, image.height / 2)
    smooth = ndimage.gaussian_filter(lum, 1.0)
    sources = _central_source(smooth, _DETECT_NOISES * noise_lum)
    position = _centroid(np.where(sources[1], 0.0, np.clip(lum, 0, None))) if sources else None
    if sources is None or position is None:
        return Extent(*centre, math.nan, "not found", tuple(sky), tuple(noise))
    cy, cx = position
    masked = sources[1] | _nearer_other_cores(smooth, sources[0], cy, cx)
    radius, found = _petrosian_radius(lum, masked, cy, cx, ratio)
    x, y = (cx + 0.5) * factor, (cy + 0.5) * factor
    sub = 8 * _ZOOM_BELOW * radius * factor  # a sub-frame where the radius spans _ZOOM_BELOW px of the copy
    if refine and found and radius < _ZOOM_BELOW and factor > 1 and sub < min(image.size):
        box = (round(x - sub / 2), round(y - sub / 2), round(x + sub / 2), round(y + sub / 2))
        if box[0] >= 0 and box[1] >= 0 and box[2] <= image.width and box[3] <= image.height:
            inner = measure_extent(image.crop(box), ratio, refine=False)
            if inner.status == "measured":
                return Extent(inner.x + box[0], inner.y + box[1], inner.radius, "measured", tuple(sky), tuple(noise))
    return Extent(x, y, radius * factor, "measured" if found else "lower bound", tuple(sky), tuple(noise))
