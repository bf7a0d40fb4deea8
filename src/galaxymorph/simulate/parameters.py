"""Draw the true physical parameters of simulated galaxies.

Lengths are fractions of the image side, so a galaxy looks the same at any pixel
size; only the sampling changes. One row per galaxy, plain columns (numbers and
short strings) so that they travel into the catalogue as ground truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["KINDS", "ARTIFACTS", "INTERACTIONS", "REFERENCE_SIZE", "draw_parameters", "surface_brightness"]

REFERENCE_SIZE = 128  # px at which ``sky_noise`` is the noise per pixel
APERTURE = 0.35  # S/N is measured with a fraction of the flux within 2 half-light radii

KINDS = ("elliptical", "disk", "artifact")
ARTIFACTS = ("none", "star", "trail", "columns", "empty")
INTERACTIONS = ("none", "minor", "major", "merger")
BARS = ("none", "weak", "strong")
BULGE_SHAPES = ("rounded", "boxy", "none")

KIND_P = (0.33, 0.60, 0.07)
ARTIFACT_P = (0.40, 0.25, 0.20, 0.15)  # of artifacts: star, trail, columns, empty
INTERACTION_P = (0.78, 0.10, 0.07, 0.05)


def _choice(rng: np.random.Generator, options: tuple[str, ...], p, n: int) -> np.ndarray:
    return np.asarray(options, dtype=object)[rng.choice(len(options), size=n, p=np.asarray(p) / np.sum(p))]


def surface_brightness(params: pd.DataFrame) -> np.ndarray:
    """Mean surface brightness (flux per reference pixel) that gives ``snr`` over ``sky_noise``.

    S/N = APERTURE * flux / (sky_noise * sqrt(area)), area = pi (2 half_light)^2, in reference
    pixels: the sky is the same for every galaxy, so faint galaxies look faint, not noisy.
    """
    radius = params["half_light"].to_numpy(dtype=np.float64) * REFERENCE_SIZE
    snr, sky = params["snr"].to_numpy(dtype=np.float64), params["sky_noise"].to_numpy(dtype=np.float64)
    return 2.0 * snr * sky / (APERTURE * np.sqrt(np.pi) * radius)


def draw_parameters(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """True parameters of ``n`` galaxies: morphology, geometry, colours, seeing and S/N.

    Every column is drawn for every galaxy (vectorised); columns that do not apply
    to a kind are neutralised (e.g. an elliptical has ``arm_count`` 0), so that
    ``render`` and ``volunteers`` need no special cases beyond ``kind``.
    """
    kind = _choice(rng, KINDS, KIND_P, n)
    disk = kind == "disk"
    ell = kind == "elliptical"
    art = kind == "artifact"
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731 - local shorthand

    artifact = np.where(art, _choice(rng, ARTIFACTS[1:], ARTIFACT_P, n), "none").astype(object)

    # Geometry: disks are seen at random orientation (uniform cos i).
    inclination = np.where(disk, np.degrees(np.arccos(u(0.0, 1.0))), 0.0)
    disk_scale = u(0.035, 0.11)
    bulge_fraction = np.where(disk, rng.beta(1.3, 2.6, n) * 0.8, 1.0)
    bulge_sersic = np.where(disk, u(1.0, 4.0), u(2.5, 5.5))
    bulge_re = np.where(disk, disk_scale * u(0.15, 0.45), u(0.035, 0.12))
    bulge_q = np.where(disk, u(0.75, 1.0), np.clip(rng.beta(4.0, 1.6, n), 0.25, 1.0))
    bulge_shape = np.where(disk, _choice(rng, BULGE_SHAPES, (0.55, 0.25, 0.20), n), "rounded").astype(object)
    bulge_fraction = np.where(disk & (bulge_shape == "none"), bulge_fraction * 0.08, bulge_fraction)

    # Bars and spiral arms (disks only).
    bar = np.where(disk, _choice(rng, BARS, (0.55, 0.25, 0.20), n), "none").astype(object)
    arm_count = np.where(disk, rng.choice([0, 1, 2, 3, 4, 5, 6], n, p=[0.22, 0.06, 0.42, 0.13, 0.09, 0.05, 0.03]), 0)
    arm_strength = np.where(arm_count > 0, u(0.25, 1.0), 0.0)
    arm_pitch = np.where(arm_count > 0, np.clip(rng.normal(20.0, 7.0, n), 6.0, 45.0), 0.0)
    clumpiness = np.where(disk, rng.beta(1.2, 2.5, n), 0.0)

    # Interactions: a companion, tidal tails, shells, lopsidedness.
    interaction = np.where(art, "none", _choice(rng, INTERACTIONS, INTERACTION_P, n)).astype(object)
    minor, major, merger = (interaction == "minor"), (interaction == "major"), (interaction == "merger")
    companion_flux = np.select([merger, major, minor], [u(0.4, 1.0), u(0.1, 0.5), u(0.03, 0.15)], 0.0)
    companion_flux = np.where(minor & (u(0, 1) < 0.5), 0.0, companion_flux)  # some minor ones are lopsided only
    companion_distance = np.select([merger], [u(0.08, 0.16)], u(0.15, 0.33))
    companion_angle = u(0.0, 360.0)
    tidal_strength = np.select([merger, major, minor], [u(0.3, 1.0), u(0.3, 1.0), u(0.0, 0.25)], 0.0)
    shells = np.where(major & ell & (u(0, 1) < 0.5), rng.integers(2, 5, n), 0)
    asymmetry = np.select([merger, major, minor], [u(0.2, 0.6), u(0.2, 0.5), u(0.1, 0.4)], u(0.0, 0.05))

    # Brightness, seeing and noise: some galaxies are hard on purpose.
    snr = np.clip(np.exp(rng.normal(np.log(300.0), 0.75, n)), 12.0, 4000.0)
    sky_noise = np.exp(rng.normal(np.log(0.006), 0.2, n))
    half_light = np.where(disk, 1.68 * disk_scale * (1 - 0.5 * bulge_fraction) + bulge_fraction * bulge_re * 0.5, bulge_re)
    return pd.DataFrame(
        {
            "kind": kind,
            "artifact": artifact,
            "interaction": interaction,
            "center_x": rng.normal(0.0, 0.01, n),
            "center_y": rng.normal(0.0, 0.01, n),
            "position_angle": u(0.0, 180.0),
            "inclination": inclination,
            "half_light": half_light,
            "snr": snr,
            "sky_noise": sky_noise,
            "psf_fwhm": u(0.012, 0.035),
            "bulge_fraction": bulge_fraction,
            "bulge_sersic": bulge_sersic,
            "bulge_re": bulge_re,
            "bulge_q": bulge_q,
            "bulge_shape": bulge_shape,
            "disk_scale": disk_scale,
            "disk_thickness": u(0.1, 0.24),
            "dust_lane": np.where(disk & (u(0, 1) < 0.6), u(0.3, 0.9), 0.0),
            "bar": bar,
            "bar_length": u(1.0, 2.2),
            "bar_angle": u(0.0, 180.0),
            "arm_count": arm_count.astype(np.int64),
            "arm_strength": arm_strength,
            "arm_pitch": arm_pitch,
            "arm_phase": u(0.0, 2 * np.pi),
            "clumpiness": clumpiness,
            "companion_flux": companion_flux,
            "companion_distance": companion_distance,
            "companion_angle": companion_angle,
            "companion_re": u(0.3, 0.8) * np.where(merger, half_light, 0.6 * half_light),
            "tidal_strength": tidal_strength,
            "shells": shells.astype(np.int64),
            "asymmetry": asymmetry,
            "asymmetry_angle": u(0.0, 360.0),
            "bulge_color": u(0.0, 1.0),  # 0 = yellowish, 1 = red
            "disk_color": u(0.0, 1.0),  # 0 = blue, 1 = yellowish
            "artifact_strength": np.where(art, u(0.5, 1.0), 0.0),
            "artifact_angle": u(0.0, 180.0),
            "field_stars": rng.poisson(2.5, n).astype(np.int64),
            "noise_seed": rng.integers(0, 2**62, n, dtype=np.int64),
        }
    )
