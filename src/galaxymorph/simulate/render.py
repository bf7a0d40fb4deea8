"""Render galaxies from their parameters: g, r, z bands, then a DECaLS-like RGB.

Everything is vectorised over a batch with torch (fast ``exp``/``pow`` on all cores,
batched FFTs for the PSF); per-galaxy randomness (noise, clumps, field stars) comes
from each galaxy's own ``noise_seed``, so a galaxy renders to the same pixels
whatever batch it is in. Each smooth component is normalised to unit total flux,
which makes the brightness that gives a galaxy its S/N analytic.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from galaxymorph.simulate.parameters import REFERENCE_SIZE, surface_brightness

__all__ = ["BANDS", "segmentation_light", "render_bands", "render_galaxies", "to_rgb"]

BANDS = ("g", "r", "z")
# Colours as flux per band relative to r: red old stars, blue young ones.
RED = torch.tensor([0.42, 1.0, 1.55])
YELLOW = torch.tensor([0.62, 1.0, 1.30])
BLUE = torch.tensor([0.82, 1.0, 1.08])
CLUMP = torch.tensor([1.15, 1.0, 0.85])
DUST_BY_BAND = torch.tensor([1.0, 0.8, 0.55])  # attenuation is stronger in blue light
PSF_BY_BAND = torch.tensor([1.1, 1.0, 0.92])  # seeing is worse in blue light
NOISE_BY_BAND = torch.tensor([0.8, 1.0, 1.4])  # z is the noisiest DECaLS band
MOFFAT_BETA = 3.0
# RGB: z -> red, r -> green, g -> blue, each with its own weight before the stretch.
RGB_WEIGHTS = torch.tensor([1.55, 1.2, 0.9])  # applied to (g, r, z)
STRETCH_Q = 12.0
STRETCH_SCALE = 2.2


def _column(params: pd.DataFrame, name: str) -> torch.Tensor:
    """A parameter as a (B, 1, 1) float32 tensor, broadcastable over an image."""
    return torch.tensor(params[name].to_numpy(dtype=np.float32)).view(-1, 1, 1)


def _sersic_norm(n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``b_n`` and the total flux of ``exp(-b_n((r/re)^(1/n) - 1))`` for re = 1, q = 1."""
    b = 2.0 * n - 1.0 / 3.0 + 0.009876 / n
    total = 2.0 * math.pi * n * torch.exp(b) * b ** (-2.0 * n) * torch.exp(torch.lgamma(2.0 * n))
    return b, total


def _sersic(u: torch.Tensor, v: torch.Tensor, re, n, q, boxiness: float, pixel: float) -> torch.Tensor:
    """Unit-flux Sersic profile; ``boxiness`` > 2 gives boxy isophotes."""
    if boxiness == 2.0:
        r = torch.sqrt(u**2 + (v / q) ** 2)
    else:
        r = (u.abs() ** boxiness + (v / q).abs() ** boxiness) ** (1.0 / boxiness)
    b, total = _sersic_norm(n)
    log_r = torch.log(r.clamp_min(pixel * 0.5) / re)
    return torch.exp(b - b * torch.exp(log_r / n)) / (total * re**2 * q)


def _log_spiral(u, yd, scale, count, pitch_deg, phase0, sharpness: int = 3) -> torch.Tensor:
    """Arm pattern in [0, 1] of ``count`` logarithmic arms in the disk plane."""
    radius = torch.sqrt(u**2 + yd**2).clamp_min(1e-4)
    theta = torch.atan2(yd, u)
    tan_pitch = torch.tan(torch.deg2rad(pitch_deg.clamp_min(1.0)))
    phase = count * (theta - torch.log(radius / scale) / tan_pitch) + phase0
    return ((1.0 + torch.cos(phase)) * 0.5) ** sharpness


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5
    return centres.view(1, 1, size), centres.view(1, size, 1)  # x, y


def _rotate(x, y, angle_deg):
    a = torch.deg2rad(angle_deg)
    c, s = torch.cos(a), torch.sin(a)
    return x * c + y * s, -x * s + y * c


class _Frame:
    """Per-galaxy coordinates of a subset of galaxies: sky offsets, major/minor axes, disk plane."""

    def __init__(self, p: pd.DataFrame, size: int):
        self.p, self.size, self.pixel = p, size, 1.0 / size
        x, y = _grid(size)
        self.dx, self.dy = x - self["center_x"], y - self["center_y"]
        self.u, self.v = _rotate(self.dx, self.dy, self["position_angle"])
        incl = torch.deg2rad(self["inclination"])
        self.cos_i, self.sin_i = torch.cos(incl), torch.sin(incl)
        self.q_disk = torch.sqrt(self.cos_i**2 + (self["disk_thickness"] * self.sin_i) ** 2)
        self.h = self["disk_scale"]

    def __getitem__(self, name: str) -> torch.Tensor:
        return _column(self.p, name)

    @property
    def yd(self) -> torch.Tensor:
        """Disk-plane coordinate along the minor axis (deprojected)."""
        return self.v / self.cos_i.clamp_min(0.03)

    def lopsided(self, radius: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """An m=1 brightness distortion growing outwards (disturbed galaxies)."""
        growth = (radius / (2 * self.h)).clamp_max(1.5)
        return 1.0 + self["asymmetry"] * torch.cos(theta - torch.deg2rad(self["asymmetry_angle"])) * growth


def _colour(base: torch.Tensor, other: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    return base.view(1, 3) + (other - base).view(1, 3) * mix.view(-1, 1)


def _bulge(f: _Frame, boxiness: float):
    is_disk = torch.tensor((f.p["kind"] == "disk").to_numpy()).view(-1, 1, 1)
    q = torch.where(is_disk, torch.minimum(f["bulge_q"], 0.55 + 0.45 * f.q_disk + 0.2 * (boxiness > 2)), f["bulge_q"])
    light = f["bulge_fraction"] * _sersic(f.u, f.v, f["bulge_re"], f["bulge_sersic"], q.clamp_max(1.0), boxiness, f.pixel)
    return light, _colour(YELLOW, RED, f["bulge_color"])


def _disk_fractions(f: _Frame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fractions of the disk light in the smooth disk, the arms and the bar."""
    arm = f["arm_strength"] * 0.6
    bar = torch.tensor(f.p["bar"].map(BAR_FRACTION).to_numpy(dtype=np.float32)).view(-1, 1, 1)
    return (1.0 - arm - bar).clamp_min(0.1), arm, bar


def _disk_colour(f: _Frame) -> torch.Tensor:
    return _colour(BLUE, YELLOW, f["disk_color"])


def _disk(f: _Frame):
    yd = f.yd
    radius, theta = torch.sqrt(f.u**2 + yd**2), torch.atan2(yd, f.u)
    smooth = torch.exp(-torch.sqrt(f.u**2 + (f.v / f.q_disk) ** 2) / f.h) / (2 * math.pi * f.h**2 * f.q_disk)
    fraction = (1.0 - f["bulge_fraction"]) * _disk_fractions(f)[0]
    return fraction * smooth * f.lopsided(radius, theta), _disk_colour(f)


def _arms(f: _Frame):
    yd = f.yd
    radius, theta = torch.sqrt(f.u**2 + yd**2), torch.atan2(yd, f.u)
    pattern = _log_spiral(f.u, yd, f.h, f["arm_count"], f["arm_pitch"], f["arm_phase"])
    # Arms start outside the bulge, or at the ends of the bar.
    has_bar = torch.tensor((f.p["bar"] != "none").to_numpy()).view(-1, 1, 1)
    start = torch.where(has_bar, 0.85 * f["bar_length"] * f.h, 1.2 * f["bulge_re"] + 0.4 * f.h)
    inner_taper = 1.0 - torch.exp(-((radius / start) ** 2))
    # Unit flux: the arm pattern averages 0.31 over angle; projection divides by the axis ratio.
    scale = 1.15 * f.h
    light = pattern * inner_taper * torch.exp(-radius / scale) / (2 * math.pi * scale**2 * 0.31 * f.q_disk)
    fraction = (1.0 - f["bulge_fraction"]) * _disk_fractions(f)[1]
    return fraction * light * f.lopsided(radius, theta), 0.5 * _disk_colour(f) + 0.5 * BLUE.view(1, 3)


def _bar(f: _Frame):
    bx, by = _rotate(f.u, f.yd, f["bar_angle"])
    a = f["bar_length"] * f.h
    b = 0.28 * a
    r2 = (bx / a) ** 2 + (by / b) ** 2
    light = torch.exp(-(r2**2)) / (math.pi * a * b * 0.886 * f.q_disk)  # flat-topped, sharp-ended
    fraction = (1.0 - f["bulge_fraction"]) * _disk_fractions(f)[2]
    return fraction * light, YELLOW.view(1, 3).expand(len(f.p), 3)


def _companion(f: _Frame):
    angle = torch.deg2rad(f["companion_angle"])
    cu = f.dx - f["companion_distance"] * torch.cos(angle)
    cv = f.dy - f["companion_distance"] * torch.sin(angle)
    re, n = f["companion_re"], torch.full_like(f.h, 2.0)
    light = _sersic(cu, cv * 1.2, re, n, torch.ones_like(f.h), 2.0, f.pixel) / 1.2
    return f["companion_flux"] * light, RED.view(1, 3).expand(len(f.p), 3)


def _tails(f: _Frame):
    """Two long, loosely wound streams, brighter towards the companion."""
    half = f["half_light"]
    radius = torch.sqrt(f.dx**2 + f.dy**2)
    angle = torch.deg2rad(f["companion_angle"])
    pattern = _log_spiral(f.dx, f.dy, 2.0 * half, torch.full_like(half, 2.0), torch.full_like(half, 38.0), angle, 2)
    envelope = (1 - torch.exp(-((radius / (2.2 * half)) ** 4))) * torch.exp(-radius / (2.5 * half))
    towards = 1.0 + torch.cos(torch.atan2(f.dy, f.dx) - angle)
    light = pattern * envelope * towards / (2 * math.pi * (2.5 * half) ** 2 * 0.5)
    return 0.6 * f["tidal_strength"] * light, YELLOW.view(1, 3).expand(len(f.p), 3)


def _shells(f: _Frame):
    """Concentric arcs on alternating sides, as around ellipticals after a merger."""
    radius = torch.sqrt(f.dx**2 + f.dy**2)
    polar = torch.atan2(f.dy, f.dx) - torch.deg2rad(f["companion_angle"])
    light = torch.zeros_like(radius)
    for k in range(int(f.p["shells"].max())):
        r_k = f["half_light"] * 1.3 * 1.55**k
        side = torch.cos(polar - math.pi * k).clamp_min(0.0)
        width = torch.where(radius < r_k, 0.16 * r_k, 0.04 * r_k)  # soft inside, sharp outer edge
        ring = torch.exp(-0.5 * ((radius - r_k) / width) ** 2) / (2 * math.pi * r_k * 0.25 * r_k)
        light = light + (f["shells"] > k) * side * ring
    return 0.1 * light, YELLOW.view(1, 3).expand(len(f.p), 3)


def _dust_transmission(f: _Frame) -> torch.Tensor:
    """Fraction of light let through a dust lane along the major axis, (b, 3, H, W)."""
    width = 0.5 * f["disk_thickness"] * f.h + 0.7 * f.pixel
    offset = 0.25 * f.h * f.cos_i
    lane = f["dust_lane"] * f.sin_i**6 * torch.exp(-0.5 * ((f.v - offset) / width) ** 2 - f.u.abs() / (3 * f.h))
    return (1.0 - lane.unsqueeze(1) * DUST_BY_BAND.view(1, 3, 1, 1)).clamp_min(0.0)


# Each component: which galaxies have it, and its unit-flux light map times its share.
COMPONENTS = (
    (lambda p: p["bulge_shape"] != "boxy", lambda f: _bulge(f, 2.0)),
    (lambda p: p["bulge_shape"] == "boxy", lambda f: _bulge(f, 3.0)),
    (lambda p: p["kind"] == "disk", _disk),
    (lambda p: p["arm_count"] > 0, _arms),
    (lambda p: p["bar"] != "none", _bar),
    (lambda p: p["companion_flux"] > 0, _companion),
    (lambda p: p["tidal_strength"] > 0, _tails),
    (lambda p: p["shells"] > 0, _shells),
)
BAR_FRACTION = {"none": 0.0, "weak": 0.12, "strong": 0.25}


def _total_flux(p: pd.DataFrame, size: int) -> np.ndarray:
    """Total r-band flux of the galaxy in pixel units (surface brightness x area)."""
    return surface_brightness(p) * np.pi * (p["half_light"].to_numpy(dtype=np.float64) * size) ** 2


def _galaxy_light(p: pd.DataFrame, size: int) -> torch.Tensor:
    """Noiseless, unconvolved light (B, 3, H, W) of the extended components, flux per pixel.

    Each component is computed only for the galaxies that have it.
    """
    light = torch.zeros(len(p), 3, size, size)
    flux = _total_flux(p, size) * ~p["artifact"].isin(["star", "empty"]).to_numpy() / size**2
    for has, component in COMPONENTS:
        rows = np.flatnonzero(has(p).to_numpy() & (flux > 0))
        if rows.size:
            sub = p.iloc[rows]
            amount, colour = component(_Frame(sub, size))
            scale = torch.as_tensor(flux[rows], dtype=torch.float32).view(-1, 1, 1, 1)
            light.index_add_(0, torch.as_tensor(rows), amount.unsqueeze(1) * colour.view(-1, 3, 1, 1) * scale)
    dusty = np.flatnonzero((p["dust_lane"] > 0).to_numpy() & (p["inclination"] > 55).to_numpy())
    if dusty.size:
        index = torch.as_tensor(dusty)
        light[index] *= _dust_transmission(_Frame(p.iloc[dusty], size))
    return light


def segmentation_light(params: pd.DataFrame, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """r-band flux per pixel of the spiral arms alone, of the bar alone and of the whole galaxy, (B, S, S) each.

    Before the PSF and noise, exactly as :func:`render_bands` adds it up (zero where a
    galaxy has no arms or bar): where the simulator's segmentation truth comes from
    (:mod:`galaxymorph.simulate.masks`).
    """
    p = params.reset_index(drop=True)
    flux = _total_flux(p, size) * ~p["artifact"].isin(["star", "empty"]).to_numpy() / size**2
    frame, scale = _Frame(p, size), torch.as_tensor(flux, dtype=torch.float32).view(-1, 1, 1)
    # a galaxy without arms or bar has a zero share of them
    return _arms(frame)[0] * scale, _bar(frame)[0] * scale, _galaxy_light(p, size)[:, 1]


def _point_sources(p: pd.DataFrame, size: int, rngs: list[np.random.Generator]) -> torch.Tensor:
    """Star-forming clumps along arms, field stars and the bright-star artifact, as pixel fluxes."""
    out = np.zeros((len(p), 3, size, size), dtype=np.float32)
    for b, (row, rng, flux) in enumerate(zip(p.itertuples(index=False), rngs, _total_flux(p, size))):
        xs, ys, fs, cols = [], [], [], []
        n_clumps = rng.poisson(row.clumpiness * 40) if row.kind == "disk" and row.artifact == "none" else 0
        if n_clumps:
            radius = row.disk_scale * (0.5 + rng.gamma(2.0, 0.7, n_clumps))
            if row.arm_count > 0:
                arm = rng.integers(0, row.arm_count, n_clumps)
                theta = (np.log(radius / row.disk_scale) / np.tan(np.radians(row.arm_pitch))
                         + (2 * np.pi * arm - row.arm_phase) / row.arm_count)
                theta = theta + rng.normal(0, 0.12, n_clumps)
            else:
                theta = rng.uniform(0, 2 * np.pi, n_clumps)
            u, yd = radius * np.cos(theta), radius * np.sin(theta)
            v = yd * np.cos(np.radians(row.inclination))
            pa = np.radians(row.position_angle)
            xs.append(row.center_x + u * np.cos(pa) - v * np.sin(pa))
            ys.append(row.center_y + u * np.sin(pa) + v * np.cos(pa))
            fs.append(flux * (1 - row.bulge_fraction) * 0.25 * row.clumpiness * rng.dirichlet(np.ones(n_clumps)))
            cols.append(np.tile(CLUMP.numpy(), (n_clumps, 1)))
        n_stars = row.field_stars
        if n_stars:
            xs.append(rng.uniform(-0.5, 0.5, n_stars))
            ys.append(rng.uniform(-0.5, 0.5, n_stars))
            fs.append(flux * np.exp(rng.normal(np.log(0.008), 1.2, n_stars)))
            cols.append(np.stack([RED.numpy() + (BLUE - RED).numpy() * t for t in rng.beta(2.0, 2.0, n_stars)]))
        if row.artifact == "star":
            xs.append(np.array([row.center_x]))
            ys.append(np.array([row.center_y]))
            fs.append(np.array([flux * (2.0 + 6.0 * row.artifact_strength)]))
            cols.append((YELLOW + (BLUE - YELLOW) * float(rng.uniform())).numpy()[None])
        if not xs:
            continue
        x, y, f, col = np.concatenate(xs), np.concatenate(ys), np.concatenate(fs), np.concatenate(cols)
        ix, iy = np.floor((x + 0.5) * size).astype(int), np.floor((y + 0.5) * size).astype(int)
        keep = (ix >= 0) & (ix < size) & (iy >= 0) & (iy < size)
        for band in range(3):
            np.add.at(out[b, band], (iy[keep], ix[keep]), (f * col[:, band])[keep])
    return torch.from_numpy(out)


def _moffat_otf(p: pd.DataFrame, size: int) -> torch.Tensor:
    """Fourier transform of each galaxy's Moffat PSF per band, (B, 3, H, W//2+1)."""
    offsets = torch.fft.fftfreq(size) * size  # pixel offsets 0, 1, ..., -1 (wrap-around)
    r2 = offsets.view(1, 1, size, 1) ** 2 + offsets.view(1, 1, 1, size) ** 2
    fwhm = (_column(p, "psf_fwhm").view(-1, 1, 1, 1) * size * PSF_BY_BAND.view(1, 3, 1, 1)).clamp_min(0.7)
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / MOFFAT_BETA) - 1.0))
    kernel = (1.0 + r2 / alpha**2) ** (-MOFFAT_BETA)
    kernel = kernel / kernel.sum(dim=(-2, -1), keepdim=True)
    return torch.fft.rfft2(kernel)


def _artifacts_after_psf(bands: torch.Tensor, p: pd.DataFrame, size: int, flux_scale: torch.Tensor) -> None:
    """Bright stars' halos and spikes, satellite trails (one or two bands) and bad columns, in place."""
    x, y = _grid(size)
    for b in np.flatnonzero((p["artifact"] == "star").to_numpy()):
        row = p.iloc[b]
        dx, dy = (x - row["center_x"]).abs(), (y - row["center_y"]).abs()
        level = float(flux_scale[b]) * (0.5 + row["artifact_strength"])
        halo = (1.0 + (dx**2 + dy**2) / 0.03**2) ** -1.5
        width, length = 0.4 / size + 0.001, 0.12 * (0.5 + row["artifact_strength"])
        spikes = torch.exp(-dy / width - dx / length) + torch.exp(-dx / width - dy / length)
        bands[b] += level * (0.6 * halo + 1.5 * spikes)[0] * YELLOW.view(3, 1, 1)
    for b in np.flatnonzero(p["artifact"].isin(["trail", "columns"]).to_numpy()):
        row = p.iloc[b]
        rng = np.random.default_rng(int(row["noise_seed"]) ^ 0x5A5A)
        level = float(flux_scale[b]) * (0.5 + row["artifact_strength"])
        band_mask = torch.zeros(3)
        band_mask[rng.choice(3, size=rng.integers(1, 3), replace=False)] = 1.0
        if row["artifact"] == "trail":
            angle = math.radians(row["artifact_angle"])
            offset = rng.uniform(-0.25, 0.25)
            dist = (x * math.sin(angle) - y * math.cos(angle) - offset).abs()
            width = 0.6 / size + 0.002
            line = torch.exp(-0.5 * (dist / width) ** 2)[0]
            bands[b] += level * 0.2 * line * band_mask.view(3, 1, 1)
        else:
            n_cols = int(rng.integers(1, 4))
            for col in rng.integers(0, size, n_cols):
                width = max(1, size // 128 * int(rng.integers(1, 3)))
                bands[b, :, :, col : col + width] += level * band_mask.view(3, 1, 1)


def render_bands(params: pd.DataFrame, size: int) -> np.ndarray:
    """Calibrated g, r, z images (B, 3, size, size) float32: light, PSF, artifacts, sky noise."""
    params = params.reset_index(drop=True)
    rngs = [np.random.default_rng(int(s)) for s in params["noise_seed"]]
    light = _galaxy_light(params, size) + _point_sources(params, size, rngs)
    bands = torch.fft.irfft2(torch.fft.rfft2(light) * _moffat_otf(params, size), s=(size, size))
    _artifacts_after_psf(bands, params, size, torch.tensor(surface_brightness(params), dtype=torch.float32))
    # Sky noise per pixel grows with the pixel count, so a galaxy's S/N does not depend on size.
    sigma = _column(params, "sky_noise").view(-1, 1, 1, 1) * (size / REFERENCE_SIZE) * NOISE_BY_BAND.view(1, 3, 1, 1)
    noise = torch.from_numpy(np.stack([rng.standard_normal((3, size, size), dtype=np.float32) for rng in rngs]))
    shot = bands.clamp_min(0.0) * sigma * 0.3  # a little source (Poisson) noise on bright parts
    bands = bands + noise * torch.sqrt(sigma**2 + shot)
    return bands.numpy()


def to_rgb(bands: np.ndarray) -> np.ndarray:
    """DECaLS-like colour image (B, H, W, 3) uint8 from g, r, z: an arcsinh stretch of the summed flux.

    Like Lupton et al. (2004): the stretch acts on the total, so colours keep their ratios.
    """
    x = torch.as_tensor(bands)[:, [2, 1, 0]] * (RGB_WEIGHTS.flip(0) * STRETCH_SCALE).view(1, 3, 1, 1)
    total = x.clamp_min(0.0).mean(dim=1, keepdim=True).clamp_min_(1e-6)  # (R=z, G=r, B=g)
    gain = torch.asinh(STRETCH_Q * total).div_(total * math.sqrt(STRETCH_Q))
    rgb = x.mul_(gain).clamp_(0.0, 1.0).mul_(255.0).add_(0.5)
    return rgb.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def render_galaxies(params: pd.DataFrame, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Bands (B, 3, S, S) float32 and RGB (B, S, S, 3) uint8 for the galaxies in ``params``."""
    bands = render_bands(params, size)
    return bands, to_rgb(bands)
