"""The numbers of segmentation: per-pixel posteriors, shapes measured from masks, and agreement with other masks.

A segmentation model gives, per class, pixel and MC-dropout sample, the probability that
a volunteer marks the pixel (:mod:`galaxymorph.models.segmentation`).

- :func:`pixel_posteriors`: per pixel, the Beta with the mean and variance of the
  samples, as its ``mean`` and ``concentration`` a + b: all that the intervals
  (:func:`pixel_intervals`) and the predictive distribution of a number of volunteers'
  counts (:func:`predictive_pit`, Beta-Binomial) need. Predictions store these two;
  quantiles cost about ten times the model's own time per galaxy on a CPU (scipy's
  ``betaincinv``), so they are computed for the galaxies read, not for every galaxy
  predicted.
- :func:`measure_shapes`: per sample, from the mask of pixels whose expected share is
  above one half, the share of the frame it covers, its pixels, and the length and
  angle of the ellipse with its second moments (a bar's); :func:`summarise_samples`
  turns samples into a mean and 5% / 95% bounds.
- :func:`overlap` and :func:`dice_iou`: Dice and IoU against another mask (the truth,
  the volunteers' majority), summed over galaxies.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import special, stats

__all__ = ["MAX_CONCENTRATION", "MEASUREMENTS", "MIN_CONCENTRATION", "THRESHOLD", "dice_iou", "measure_shapes",
           "overlap", "pixel_intervals", "pixel_posteriors", "pixel_spread", "predictive_pit", "summarise_samples"]

MEASUREMENTS = ("area", "pixels", "length", "angle")  # per class, each with _q05 / _q95 (see measure_shapes)
THRESHOLD = 0.5  # a pixel is in a mask when at least half of the volunteers are expected to mark it
MIN_CONCENTRATION, MAX_CONCENTRATION = 0.01, 1e4  # of a pixel's Beta: from nearly 0-or-1 to as sure as a Binomial


def pixel_posteriors(samples: np.ndarray) -> dict[str, np.ndarray]:
    """``mean`` and ``concentration`` per pixel (..., H, W) from MC-dropout probabilities (..., H, W, samples).

    The concentration a + b of the Beta with the samples' mean m and variance v is
    m (1 - m) / v - 1, kept within [:data:`MIN_CONCENTRATION`, :data:`MAX_CONCENTRATION`]
    (samples that agree, or one sample, give the largest: the pixel's count is then
    Binomial).
    """
    samples = np.asarray(samples, np.float32)
    mean, variance = samples.mean(axis=-1, dtype=np.float64), samples.var(axis=-1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # samples that agree: no variance
        concentration = mean * (1 - mean) / variance - 1
    return {"mean": mean, "concentration": np.clip(np.nan_to_num(concentration, nan=MAX_CONCENTRATION),
                                                   MIN_CONCENTRATION, MAX_CONCENTRATION)}


def pixel_spread(mean: np.ndarray, concentration: np.ndarray) -> np.ndarray:
    """The standard deviation of each pixel's Beta (:func:`pixel_posteriors`): cheap, where quantiles are not."""
    mean = np.asarray(mean, np.float64)
    return np.sqrt(mean * (1 - mean) / (np.asarray(concentration, np.float64) + 1))


def pixel_intervals(mean: np.ndarray, concentration: np.ndarray,
                    levels: tuple[float, ...] = (0.05, 0.95)) -> list[np.ndarray]:
    """The quantiles at ``levels`` of each pixel's Beta (:func:`pixel_posteriors`), e.g. its 90% interval."""
    mean = np.clip(np.asarray(mean, np.float64), 1e-6, 1 - 1e-6)
    concentration = np.asarray(concentration, np.float64)
    return [special.betaincinv(mean * concentration, (1 - mean) * concentration, level) for level in levels]


def measure_shapes(shares: np.ndarray) -> dict[str, np.ndarray]:
    """Shape measurements (...,) of each mask, from expected shares (..., H, W) and :data:`THRESHOLD`.

    ``area``: the share of the frame in the mask; ``pixels``: its pixels at this
    resolution; ``length``: the major axis of the ellipse with the mask's second moments
    (4 sqrt of the larger eigenvalue), as a share of the frame side; ``angle``: that
    axis, degrees anticlockwise from the image's x axis with y up, in [0, 180). An
    empty mask has length 0 and no angle (NaN).
    """
    mask = (np.asarray(shares) > THRESHOLD).astype(np.float32)
    height, width = mask.shape[-2:]
    x = ((np.arange(width) + 0.5) / width).astype(np.float32)
    y = (-(np.arange(height) + 0.5) / width).astype(np.float32)  # rows go down, y up; both in frame widths
    across, down = mask.sum(axis=-2), mask.sum(axis=-1)  # per column, per row
    pixels = across.sum(axis=-1).astype(np.float64)
    total = np.maximum(pixels, 1)
    mx, my = across @ x / total, down @ y / total
    sxx = across @ x**2 / total - mx**2
    syy = down @ y**2 / total - my**2
    sxy = (mask @ x) @ y / total - mx * my
    major = (sxx + syy) / 2 + np.sqrt(((sxx - syy) / 2) ** 2 + sxy**2)
    angle = np.degrees(0.5 * np.arctan2(2 * sxy, sxx - syy)) % 180.0
    return {"area": pixels / (height * width), "pixels": pixels, "length": 4 * np.sqrt(np.maximum(major, 0.0)),
            "angle": np.where(pixels > 0, angle, np.nan)}


def summarise_samples(values: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """Mean and 5% / 95% bounds over the last axis (samples); angles (degrees mod 180) around their circular mean.

    NaN samples of an angle (an empty mask has none) are left out; all NaN gives NaN.
    """
    values = np.asarray(values, np.float64)
    with warnings.catch_warnings():  # a mask empty in every sample has no angle: numpy's all-NaN warning is no news
        warnings.simplefilter("ignore", RuntimeWarning)
        if name != "angle":  # never NaN
            low, high = np.quantile(values, [0.05, 0.95], axis=-1)
            return {name: values.mean(axis=-1), f"{name}_q05": low, f"{name}_q95": high}
        doubled = np.radians(2 * values)
        centre = np.degrees(np.arctan2(np.nanmean(np.sin(doubled), -1), np.nanmean(np.cos(doubled), -1))) / 2
        offsets = (values - centre[..., None] + 90.0) % 180.0 - 90.0
        low, high = np.nanquantile(offsets, [0.05, 0.95], axis=-1)
        return {name: centre % 180.0, f"{name}_q05": centre + low, f"{name}_q95": centre + high}


def overlap(predicted: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(intersection, predicted, reference) pixel counts summed over everything but the class axis (1): (classes, 3)."""
    predicted, reference = np.asarray(predicted, bool), np.asarray(reference, bool)
    axes = tuple(i for i in range(predicted.ndim) if i != 1)
    return np.stack([(predicted & reference).sum(axes), predicted.sum(axes), reference.sum(axes)], axis=1)


def dice_iou(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dice 2|P&R| / (|P| + |R|) and IoU |P&R| / |P|R| from :func:`overlap` counts; NaN where both are empty."""
    counts = np.asarray(counts, np.float64)
    both, predicted, reference = counts[..., 0], counts[..., 1], counts[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        return 2 * both / (predicted + reference), both / (predicted + reference - both)


def predictive_pit(mean: np.ndarray, concentration: np.ndarray, counts: np.ndarray, volunteers: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Randomised PIT of each pixel's count under the Beta-Binomial of its posterior (uniform when calibrated).

    ``volunteers`` broadcasts against ``counts`` (whole numbers); the posterior of each
    pixel is the Beta with its ``mean`` and ``concentration`` (:func:`pixel_posteriors`).
    A count is inside the central 90% predictive interval when its PIT is in [0.05, 0.95].
    """
    a = np.clip(mean, 1e-6, 1 - 1e-6) * concentration
    b = concentration - a
    n = np.broadcast_to(volunteers, np.shape(counts))
    below = stats.betabinom.cdf(counts - 1, n, a, b)
    at = stats.betabinom.pmf(counts, n, a, b)
    return below + rng.random(np.shape(counts)) * at
