"""Simulated Galaxy Zoo 3D drawings: the true spiral-arm and bar masks, and volunteers who outline them.

The truth comes from the light the renderer adds (:func:`~galaxymorph.simulate.render.segmentation_light`):
arms where their own light is above twice the sky noise and at least 30% of the
galaxy's; a bar's ellipse (its light above 1/e of its peak) where the bar stands out
(somewhere at least 25% of the light). Neither is drawn on disks inclined more than
70 degrees, which volunteers see edge-on.

Each galaxy has its own number of volunteers (``mean`` on average, at least 1), and
each volunteer, for each class the galaxy has, may miss it entirely (more often when
it is hard to see, more often still for weak bars); otherwise they outline a version
of it that is shifted by a pixel or two, grown or shrunk at random along a noisy
boundary, a little wider than the truth (a brush) and, for arms, only partly drawn.
Summed over volunteers, the counts are what GZ3D publishes per pixel (Masters et al. 2021).

Every random number comes from the galaxy's own ``noise_seed`` (through a stream of
its own, so the images and votes are unchanged): masks do not depend on the chunk a
galaxy is drawn in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from galaxymorph.simulate.parameters import REFERENCE_SIZE
from galaxymorph.simulate.render import segmentation_light
from galaxymorph.simulate.volunteers import visibility

__all__ = ["CLASSES", "MASK_VOLUNTEERS", "draw_masks", "drawing_volunteers", "true_masks"]

CLASSES = ("spiral", "bar")
MASK_VOLUNTEERS = 15.0  # GZ3D: about 15 volunteers drew on each galaxy
MAX_INCLINATION = 70.0
_STREAM = 0x6D61736B  # "mask": the masks' own random stream of each galaxy's noise_seed
_FIELD = 5  # side of the coarse random fields that make boundaries wobble and drawings partial


def _generators(params: pd.DataFrame) -> list[np.random.Generator]:
    return [np.random.default_rng([int(s), _STREAM]) for s in params["noise_seed"]]


def _volunteers(rng: np.random.Generator, mean: float) -> int:
    return max(1, int(rng.poisson(mean)))


def drawing_volunteers(params: pd.DataFrame, mean: float = MASK_VOLUNTEERS) -> np.ndarray:
    """How many volunteers drew on each galaxy (the first number of each galaxy's mask stream)."""
    if mean <= 0:
        raise ValueError(f"mask volunteers must be positive, got {mean}")
    return np.array([_volunteers(rng, mean) for rng in _generators(params)], dtype=np.int64)


def true_masks(params: pd.DataFrame, size: int) -> torch.Tensor:
    """(B, 2, S, S) bool: where the spiral arms and the bar are, as the module docstring defines them."""
    params = params.reset_index(drop=True)
    arms, bar, total = segmentation_light(params, size)
    sigma = torch.as_tensor(params["sky_noise"].to_numpy(np.float32) * size / REFERENCE_SIZE).view(-1, 1, 1)
    seen = torch.tensor((params["inclination"] < MAX_INCLINATION).to_numpy()).view(-1, 1, 1)
    spiral = (arms > 2 * sigma) & (arms > 0.3 * total)
    peak = bar.amax(dim=(1, 2), keepdim=True)
    stands_out = ((bar / total.clamp_min(1e-12)).amax(dim=(1, 2), keepdim=True) > 0.25) & (peak > 2 * sigma)
    bars = (bar > peak / np.e) & stands_out & (peak > 0)
    return torch.stack([spiral & seen, bars & seen], dim=1)


def _miss_probability(params: pd.DataFrame) -> np.ndarray:
    """(B, 2) chance that a volunteer draws nothing for the arms, the bar."""
    vis = visibility(params)
    arms = 0.05 + 0.3 * (1 - vis) + 0.15 * (1 - params["arm_strength"].to_numpy())
    bar = 0.05 + 0.3 * (1 - vis) + 0.2 * (params["bar"] == "weak").to_numpy()
    return np.clip(np.stack([arms, bar], axis=1), 0.0, 0.95)


def _blur(masks: torch.Tensor) -> torch.Tensor:
    """A soft version of masks (N, C, S, S) a pixel wider (a volunteer's brush): a 3x3 dilation, two 3x3 box filters."""
    soft = F.max_pool2d(masks.float(), 3, stride=1, padding=1)
    for _ in range(2):
        soft = F.avg_pool2d(soft, 3, stride=1, padding=1, count_include_pad=False)
    return soft


def draw_masks(params: pd.DataFrame, size: int, mean: float = MASK_VOLUNTEERS) -> tuple[np.ndarray, np.ndarray]:
    """Volunteers' counts (B, 2, S, S) uint8 and the truth (B, 2, S, S) bool for the galaxies in ``params``.

    The counts of a galaxy never exceed its :func:`drawing_volunteers`.
    """
    params = params.reset_index(drop=True)
    truth = true_masks(params, size)
    rngs = _generators(params)
    counts = [_volunteers(rng, mean) for rng in rngs]
    most, classes = max(counts), len(CLASSES)

    def draws(shape: tuple[int, ...]) -> torch.Tensor:
        """Per galaxy, from its own stream: (B x most volunteers, classes, *shape), zero past its volunteers."""
        out = np.zeros((len(params), most, classes, *shape), np.float32)
        for i, rng in enumerate(rngs):
            out[i, : counts[i]] = rng.random((counts[i], classes, *shape), dtype=np.float32)
        return torch.from_numpy(out).flatten(0, 1)

    miss, grow, keep_share = draws(()), draws(()), draws(())
    wobble, parts, shift = draws((_FIELD, _FIELD)), draws((_FIELD, _FIELD)), draws((2,))
    drawn = torch.zeros(len(params), classes, size, size, dtype=torch.uint8)
    rows = torch.nonzero(truth.flatten(1).any(dim=1)).flatten()  # only galaxies with something to draw
    if len(rows):
        volunteer = (rows.view(-1, 1) * most + torch.arange(most)).flatten()  # their volunteers' draws
        present = torch.from_numpy(np.arange(most)[None, :] < np.array(counts)[rows.numpy(), None]).flatten()
        p_miss = torch.from_numpy(_miss_probability(params.iloc[rows.numpy()]).astype(np.float32))
        outline = _outlines(truth[rows], wobble[volunteer], parts[volunteer], grow[volunteer], keep_share[volunteer])
        outline &= ((miss[volunteer] >= p_miss.repeat_interleave(most, dim=0)) & present.view(-1, 1))[..., None, None]
        outline = _translate(outline, torch.round((shift[volunteer] * 2 - 1) * max(1.0, 0.02 * size)))
        drawn[rows] = outline.view(len(rows), most, classes, size, size).sum(dim=1, dtype=torch.uint8)
    return drawn.numpy(), truth.numpy()


def _outlines(truth: torch.Tensor, wobble: torch.Tensor, parts: torch.Tensor, grow: torch.Tensor,
              keep_share: torch.Tensor) -> torch.Tensor:
    """Each volunteer's outline of each class (B x V, classes, S, S) from the truth (B, classes, S, S).

    A noisy boundary grown or shrunk at random (``grow``: below 0.5 wider than the truth);
    arms only partly drawn (a coarse random field keeps ``keep_share`` up to all of them), bars whole.
    """
    size, volunteers = truth.shape[-1], len(wobble) // len(truth)
    soft = _blur(truth).repeat_interleave(volunteers, dim=0)
    noise = F.interpolate(wobble * 2 - 1, size=size, mode="bilinear", align_corners=False)
    outline = soft + 0.25 * noise > (0.3 + 0.4 * grow)[..., None, None]
    kept = F.interpolate(parts, size=size, mode="bilinear", align_corners=False) > (0.4 * keep_share)[..., None, None]
    kept[:, CLASSES.index("bar")] = True
    return outline & kept


def _translate(masks: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Each (N, C, S, S) bool mask moved by its own whole-pixel offset (N, C, 2) in x and y; what leaves is lost."""
    n, c, s, _ = masks.shape
    index = torch.arange(s)
    y = (index.view(1, 1, s, 1) - offsets[..., 1].long().view(n, c, 1, 1))
    x = (index.view(1, 1, 1, s) - offsets[..., 0].long().view(n, c, 1, 1))
    inside = (x >= 0) & (x < s) & (y >= 0) & (y < s)
    flat = masks.flatten(2)
    source = (y.clamp(0, s - 1) * s + x.clamp(0, s - 1)).expand(n, c, s, s).flatten(2)
    return torch.gather(flat, 2, source).view(n, c, s, s) & inside
