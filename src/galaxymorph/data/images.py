"""Decode one galaxy image (PNG, JPEG or FITS) into a fixed-size uint8 array.

The hot path is JPEG: ``Image.draft`` lets libjpeg decode at 1/2, 1/4 or 1/8
scale when the output is much smaller than the file, and the central crop is
passed to ``Image.resize`` as its ``box`` so cropping and (antialiased)
resampling happen in one step, without copying the full frame. A size-normalising
crop (:class:`galaxymorph.data.normalise.SizeCrop`) measures the galaxy on the full frame
first and passes its own box; photometric normalisation acts on the result.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from galaxymorph.data.extent import Extent, measure_extent
from galaxymorph.data.normalise import CropRecord, Photometry, SizeCrop

__all__ = ["FITS_SUFFIXES", "IMAGE_SUFFIXES", "READERS", "FitsStretch", "ImageReadError", "MissingImagesWarning",
           "check_image", "load_image", "load_measured_image", "warn_missing_images"]

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", *FITS_SUFFIXES)  # what a folder of images may hold
READERS = ("galaxymorph", "zoobot")  # how a file becomes stored pixels: see load_image
_PIL_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)


class ImageReadError(ValueError):
    """An image could not be read; the message names the file and the reason."""


class MissingImagesWarning(UserWarning):
    """Galaxies whose images cannot be found, so a picture of them (report, grid) shows blanks."""


@dataclass(frozen=True)
class FitsStretch:
    """How FITS fluxes become 0..255: clip at percentiles, then linear or arcsinh.

    ``arcsinh`` (Lupton et al. 2004 style) keeps faint outskirts visible while not
    saturating the core; ``softening`` is how far into the asinh regime the
    brightest clipped value goes (larger = more compression of bright parts).
    The same limits are used for every band, so colours are kept.
    """

    kind: str = "arcsinh"
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5
    softening: float = 10.0

    def __post_init__(self) -> None:
        if self.kind not in ("arcsinh", "percentile"):
            raise ValueError(f"FitsStretch.kind must be 'arcsinh' or 'percentile', got {self.kind!r}")
        if not 0 <= self.lower_percentile < self.upper_percentile <= 100:
            raise ValueError("FitsStretch percentiles need 0 <= lower < upper <= 100")

    def apply(self, flux: np.ndarray) -> np.ndarray:
        """Float fluxes (any shape, NaN allowed) -> uint8; NaN pixels become black."""
        finite = np.isfinite(flux)
        if not finite.any():
            return np.zeros(flux.shape, np.uint8)
        lo, hi = np.percentile(flux[finite], (self.lower_percentile, self.upper_percentile))
        scaled = np.clip((np.where(finite, flux, lo) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
        if self.kind == "arcsinh":
            scaled = np.arcsinh(self.softening * scaled) / math.asinh(self.softening)
        return np.round(scaled * 255.0).astype(np.uint8)


def _is_fits(path: Path) -> bool:
    return path.name.lower().endswith(FITS_SUFFIXES)


def _fits_pixels(path: Path, stretch: FitsStretch) -> np.ndarray:
    """First HDU with a 2-D image or band cube -> uint8 (H, W, bands)."""
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdus:
        data = next((h.data for h in hdus if h.data is not None and getattr(h.data, "ndim", 0) >= 2), None)
    if data is None:
        raise ValueError("no HDU holds a 2-D image or a band cube")
    data = np.squeeze(np.asarray(data, dtype=np.float32))
    if data.ndim == 2:
        data = data[..., None]
    elif data.ndim == 3:
        # bands are the short axis: (bands, H, W) as written by most surveys, or (H, W, bands)
        if data.shape[0] < data.shape[-1]:
            data = np.moveaxis(data, 0, -1)
    else:
        raise ValueError(f"image data has {data.ndim} dimensions after squeezing; expected 2 or 3")
    if not np.isfinite(data).any():
        raise ImageReadError(f"{path}: no finite pixel (all NaN or infinite): nothing to see")
    return stretch.apply(data)


def _fits_image(path: Path, channels: int, stretch: FitsStretch, any_bands: bool) -> Image.Image:
    """The FITS band rule (see :func:`load_image`) as an 'L' or 'RGB' image."""
    pixels = _fits_pixels(path, stretch)
    bands = pixels.shape[-1]
    if channels == 3 and bands != 3 and not any_bands:
        raise ImageReadError(
            f"{path}: {bands} band(s), but 3 channels are made from exactly 3 bands (bluest first, e.g. g, r, z); "
            "write those 3 into the file, or use 1 channel (--channels 1: the mean of the bands)"
        )
    if channels == 3 and bands >= 3:
        # bands ordered bluest first (g, r, z), shown DECaLS-style: z -> R, r -> G, g -> B
        return Image.fromarray(np.ascontiguousarray(pixels[..., 2::-1]), "RGB")
    img = Image.fromarray(np.round(pixels.mean(axis=-1)).astype(np.uint8), "L")
    return img if channels == 1 else img.convert("RGB")


def _pil_to_standard(img: Image.Image, channels: int) -> Image.Image:
    """Any PIL mode -> 8-bit 'L' (luminance) or 'RGB'; 16/32-bit greys are scaled from their full range."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or values.max(initial=0) <= 65535 else values.max()
        img = Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)  # transparent = empty (black) sky
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def _central_box(width: int, height: int, crop_fraction: float) -> tuple[float, float, float, float]:
    """The central square holding ``crop_fraction`` of the shorter side."""
    side = min(width, height) * crop_fraction
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def _decode(path: Path, channels: int, stretch: FitsStretch | None, draft: int | None,
            any_bands: bool = False) -> Image.Image:
    """The whole image as 8-bit 'L' or 'RGB'; a JPEG is decoded at the smallest scale keeping ``draft`` px, if given."""
    if _is_fits(path):
        return _fits_image(path, channels, stretch or FitsStretch(), any_bands)
    img = Image.open(path)
    if img.format == "JPEG" and draft is not None:
        # libjpeg scales by 1/2..1/8 while decoding
        img.draft("L" if channels == 1 else "RGB", (draft, draft))
    return _pil_to_standard(img, channels)


def _zoobot_view(img: Image.Image, size: int, crop_fraction: float) -> Image.Image:
    """What zoobot 2.9 predicts from: galaxy-datasets 0.0.25's ``minimal_view_config``, through the same torchvision calls.

    ``RandomAffine(degrees=0, scale=(z, z))`` (z = 1 / ``crop_fraction``, drawn as a float32 by torch)
    warps the full-resolution image bilinearly without antialiasing, keeping its size; then
    ``Resize(size)`` (PIL's antialiased bilinear) and ``CenterCrop(size)``. The pixels stay uint8
    between steps, as on zoobot's PIL images.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    zoom = float(np.float32(1 / crop_fraction))
    bilinear = InterpolationMode.BILINEAR
    img = TF.affine(img, angle=0.0, translate=[0, 0], scale=zoom, shear=[0.0, 0.0], interpolation=bilinear, fill=0)
    img = TF.resize(img, [size], interpolation=bilinear, antialias=True)
    return TF.center_crop(img, [size])


def _with_sky(img: Image.Image, box: tuple[float, float, float, float], size: int, extent: Extent) -> Image.Image:
    """``box`` of ``img`` at ``size`` px where the box leaves the frame: the frame's part, on the frame's own sky.

    The sky outside is the measured level plus Gaussian noise of the measured amplitude, scaled
    to the output's pixels (seeded: a file always reads to the same pixels).
    """
    left, top, right, bottom = box
    per_px = (right - left) / size  # frame px per output px
    inside = (max(left, 0.0), max(top, 0.0), min(right, float(img.width)), min(bottom, float(img.height)))
    spot = [round((inside[0] - left) / per_px), round((inside[1] - top) / per_px),
            round((inside[2] - left) / per_px), round((inside[3] - top) / per_px)]
    bands = len(img.getbands())
    noise = np.asarray(extent.noise, np.float32) / max(1.0, per_px)
    draws = np.random.default_rng(0).standard_normal((size, size, bands), np.float32)
    sky = np.asarray(extent.sky, np.float32) + noise * draws
    pixels = np.clip(np.round(sky), 0, 255).astype(np.uint8)
    canvas = Image.fromarray(pixels[..., 0] if bands == 1 else pixels, img.mode)
    if spot[2] > spot[0] and spot[3] > spot[1]:
        canvas.paste(img.resize((spot[2] - spot[0], spot[3] - spot[1]), Image.Resampling.BILINEAR, box=inside),
                     (spot[0], spot[1]))
    return canvas


def _channels_last(img: Image.Image) -> np.ndarray:
    pixels = np.asarray(img, dtype=np.uint8)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _size_cropped(img: Image.Image, size: int, crop_fraction: float, size_crop: SizeCrop,
                  photometry: Photometry | None = None) -> tuple[Image.Image, CropRecord]:
    """The square of ``size_crop.multiple`` measured radii about the galaxy, at ``size`` px, and what was done.

    With ``photometry`` the galaxy is measured again on its frame mapped by the first crop's
    photometric curve, so that its size does not depend on the stretch the frame was given.
    """
    if photometry is not None:
        first, _ = _size_cropped(img, size, crop_fraction, size_crop)
        levelled = photometry.mapping(_channels_last(first))(_channels_last(img))
        img = Image.fromarray(levelled[..., 0] if levelled.shape[2] == 1 else levelled, img.mode)
    extent = measure_extent(img, size_crop.ratio)
    box, record = size_crop.box(extent, img.width, img.height, crop_fraction)
    if box[0] >= 0 and box[1] >= 0 and box[2] <= img.width and box[3] <= img.height:
        return img.resize((size, size), Image.Resampling.BILINEAR, box=box), record
    return _with_sky(img, box, size, extent), record


def load_image(path: str | Path, size: int, *args: Any, **kwargs: Any) -> np.ndarray:
    """Decode an image, keep its central ``crop_fraction``, resize to ``size``: uint8 (size, size, channels).

    The pixels of :func:`load_measured_image` (same arguments), without its record.
    """
    return load_measured_image(path, size, *args, **kwargs)[0]


def load_measured_image(
    path: str | Path,
    size: int,
    channels: int = 3,
    crop_fraction: float = 1.0,
    stretch: FitsStretch | None = None,
    reader: str = "galaxymorph",
    any_bands: bool = False,
    size_crop: SizeCrop | None = None,
    photometry: Photometry | None = None,
) -> tuple[np.ndarray, CropRecord | None]:
    """Decode an image, crop and resize it to uint8 (size, size, channels); with ``size_crop``, also what it measured.

    Handles PNG/JPEG in any mode (grey, RGB, RGBA, palette, 16-bit; ``channels=1`` gives
    luminance, a grey picture asked for 3 channels is repeated) and FITS (first HDU with
    data, 2-D or band cube in either axis order, NaN pixels black) with ``stretch``
    (default arcsinh). FITS bands are data, not a picture, so they follow one rule:
    3 channels come from exactly 3 bands, taken as ordered bluest first (g, r, z ->
    B, G, R), 1 channel is the mean of every band; a file with another band count for
    3 channels (a 2-D image, 5 bands), or without a finite pixel, is refused.
    ``any_bands`` relaxes the band rule for pictures shown to people (grey from one
    band, the first three of more). Non-square frames are cropped to a square.

    ``reader="galaxymorph"`` crops and resizes in one antialiased step from a JPEG decoded
    at reduced scale where that keeps enough pixels; ``reader="zoobot"`` decodes at full
    resolution and repeats zoobot's two resampling steps exactly (:func:`_zoobot_view`).

    ``size_crop`` (galaxymorph reader only) replaces the central ``crop_fraction`` by a square
    sized by the galaxy, measured on the full-resolution frame (``crop_fraction`` remains the
    fallback and the unit of the recorded scale); ``photometry`` then maps the result's sky
    and levels onto the training set's.

    Raises:
        ImageReadError: the file is missing, breaks the FITS rule or cannot be decoded (message names it).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    if reader not in READERS:
        raise ValueError(f"reader must be one of {READERS}, got {reader!r}")
    if size_crop is not None and reader != "galaxymorph":
        raise ValueError(f"the size crop needs reader='galaxymorph' (the {reader} reader crops its own way)")
    for setting in (size_crop, photometry):
        if setting is not None:
            setting.check_fitted()
    path = Path(path)
    record = None
    try:
        if reader == "zoobot":
            img = _zoobot_view(_decode(path, channels, stretch, None, any_bands), size, crop_fraction)
        elif size_crop is not None:  # the galaxy is measured on the whole frame, so no reduced decoding
            frame = _decode(path, channels, stretch, None, any_bands)
            img, record = _size_cropped(frame, size, crop_fraction, size_crop, photometry)
        else:
            img = _decode(path, channels, stretch, math.ceil(size / crop_fraction), any_bands)
            img = img.resize((size, size), Image.Resampling.BILINEAR, box=_central_box(*img.size, crop_fraction))
        array = np.array(img, dtype=np.uint8)  # writable, so torch.from_numpy is safe
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except ImageReadError:
        raise
    except (*_PIL_ERRORS, TypeError, IndexError, KeyError) as err:
        raise ImageReadError(f"{path}: cannot decode image ({type(err).__name__}: {err})") from err
    array = array[..., None] if array.ndim == 2 else array
    return (array if photometry is None else photometry.apply(array)), record


def check_image(path: str | Path) -> str | None:
    """Cheap readability check (a file, header parses, PNG chunks complete); returns the problem or None.

    Used when validating a catalogue: a full decode of every image happens once,
    later, while sharding. PIL's ``verify`` reads a PNG's chunks and checksums without
    inflating them, so a truncated PNG is found here with the other bad rows.
    """
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder, not an image file"
    if not path.is_file():
        return f"image file not found: {path}"
    try:
        if _is_fits(path):
            from astropy.io import fits

            with fits.open(path, memmap=False) as hdus:
                if not any(h.header.get("NAXIS", 0) >= 2 for h in hdus):
                    return f"FITS file has no 2-D image HDU: {path}"
        else:
            with Image.open(path) as img:
                if img.width < 1 or img.height < 1:
                    return f"image has no pixels: {path}"
                img.verify()
    except Exception as err:  # any parser failure means "unreadable"
        return f"unreadable image {path} ({type(err).__name__}: {err})"
    return None


def warn_missing_images(paths: Sequence[str | None]) -> None:
    """One :class:`MissingImagesWarning` saying how many ``paths`` name no file (or none at all), with an example."""
    missing = [p for p in paths if not (isinstance(p, str) and p and Path(p).is_file())]
    if not missing:
        return
    named = [p for p in missing if isinstance(p, str) and p]
    example = f"e.g. {named[0]}" if named else "no file_loc: made from shards"
    warnings.warn(f"{len(missing)} of {len(paths)} galaxies' images not found ({example}); pass a catalogue that "
                  "names them (--catalog, with id_str and file_loc)", MissingImagesWarning, stacklevel=2)
