"""Volunteers' masks (GZ3D style) for segmentation: read, checked against their images, framed as the images are.

A catalogue names, per galaxy, one mask file per class (columns such as ``mask_spiral``,
``mask_bar``; PNG, NPY or FITS, relative to the catalogue's folder) holding how many
volunteers marked each pixel, and the number who drew (``volunteers_col``; without it
every mask is binary, the case of one volunteer). Each mask must have its image's
pixel shape and counts between 0 and the number of volunteers; anything else is one
error naming the galaxy and the file.

A mask becomes the share of volunteers who marked each pixel, cropped and resized as
its image is (:meth:`Preprocessing.read`: the central ``source_crop``, bilinear to
``stored_size``) and kept as uint8 (255 = all of them) beside the decoded images. From
there masks go through the same augmentation as their images, in the same resampling
(:func:`galaxymorph.data.transforms.with_masks`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from galaxymorph.data.catalogue import CatalogueError, read_table, resolve_paths, unique_ids
from galaxymorph.data.images import FITS_SUFFIXES
from galaxymorph.data.labelled import LabelledDataModule, LabelledImages, decode_images
from galaxymorph.data.transforms import Preprocessing, with_masks

__all__ = ["MASK_PREFIX", "TRUE_MASK", "MaskedDataModule", "class_names", "frame_masks", "load_masks", "read_mask",
           "read_mask_table"]

MASK_PREFIX = "mask_"  # a mask column's class is its name without it: mask_spiral -> spiral
TRUE_MASK = "true_"  # + a mask column: the file of the true mask, where it is known (simulated data)


def class_names(mask_cols: Sequence[str]) -> list[str]:
    """The class of each mask column: its name without :data:`MASK_PREFIX`."""
    return [c.removeprefix(MASK_PREFIX) for c in mask_cols]


def read_mask(path: str | Path) -> np.ndarray:
    """A mask file's counts as float64 (H, W): PNG/TIFF (one band, 8 or 16 bit), NPY, or FITS (the first 2-D HDU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mask file not found")
    try:
        if path.name.lower().endswith(FITS_SUFFIXES):
            from astropy.io import fits

            with fits.open(path, memmap=False) as hdus:
                data = next((h.data for h in hdus if getattr(h.data, "ndim", 0) >= 2), None)
        elif path.suffix.lower() == ".npy":
            data = np.load(path, allow_pickle=False)
        else:
            with Image.open(path) as image:
                if len(image.getbands()) != 1:
                    raise ValueError(f"mode {image.mode} has {len(image.getbands())} bands, not one band of counts")
                data = np.asarray(image)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read it as a mask ({err})") from None
    data = None if data is None else np.squeeze(np.asarray(data, dtype=np.float64))
    if data is None or data.ndim != 2:
        raise ValueError(f"{path}: a mask is one 2-D array of counts, got shape {getattr(data, 'shape', None)}")
    return data


def _image_shape(path: str) -> tuple[int, ...]:
    """(height, width) of an image file, from its header; a FITS cube's bands are its shortest axis, as when read."""
    if not path.lower().endswith(FITS_SUFFIXES):
        with Image.open(path) as image:
            return image.height, image.width
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdus:
        header = next(h.header for h in hdus if h.header.get("NAXIS", 0) >= 2)
    axes = [int(header[f"NAXIS{i}"]) for i in range(int(header["NAXIS"]), 0, -1)]  # in array order
    axes = [n for n in axes if n > 1]
    if len(axes) == 3:
        axes = axes[1:] if axes[0] < axes[-1] else axes[:2]
    return tuple(axes)


def frame_masks(id_str: str, image: str, masks: Sequence[str], volunteers: float,
                prep: Preprocessing) -> np.ndarray:
    """One galaxy's masks checked against its image and framed as it is: uint8 (K, stored, stored),
    255 = all volunteers.

    Raises:
        FileNotFoundError, ValueError: a missing or unreadable mask, a shape other than the
            image's, counts below 0 or above ``volunteers``; naming the galaxy and the file.
    """
    shape = None
    framed = []
    for path in masks:
        try:
            counts = read_mask(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"galaxy {id_str}: mask file {path} not found; "
                                    "fix its path in the catalogue") from None
        except ValueError as err:
            raise ValueError(f"galaxy {id_str}: {err}") from None
        shape = shape or _image_shape(image)
        if counts.shape != shape:
            raise ValueError(f"galaxy {id_str}: mask {path} is {counts.shape[1]}x{counts.shape[0]} px but its image "
                             f"{image} is {shape[1]}x{shape[0]}; draw masks on the image itself, at its size")
        top = np.nanmax(counts) if counts.size else 0.0
        if not np.isfinite(counts).all() or counts.min() < 0 or top > volunteers:
            hint = "; a 0/255 binary mask: save it as 0/1" if top == 255 and volunteers == 1 else ""
            raise ValueError(f"galaxy {id_str}: mask {path} holds counts in [{np.nanmin(counts):g}, {top:g}], not "
                             f"within 0 and its {volunteers:g} volunteer(s){hint}")
        framed.append(_frame(counts / volunteers, prep))
    return np.stack(framed)


def _frame(share: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """A share in [0, 1] per pixel, cropped and resized exactly as :func:`load_image` does its image, as uint8."""
    image = Image.fromarray(share.astype(np.float32), "F")
    side = min(image.size) * prep.source_crop
    left, top = (image.width - side) / 2, (image.height - side) / 2
    resized = image.resize((prep.stored_size,) * 2, Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    return np.clip(np.round(np.asarray(resized) * 255.0), 0, 255).astype(np.uint8)


def read_mask_table(catalogue: str | Path | pd.DataFrame, mask_cols: Sequence[str],
                    volunteers_col: str | None = None) -> pd.DataFrame:
    """``id_str``, absolute ``file_loc`` and mask paths, and ``volunteers`` (1 without ``volunteers_col``), checked.

    Raises:
        CatalogueError: a missing column, no mask column, a missing mask path or a number
            of volunteers that is not a whole number >= 1; naming the rows.
    """
    frame, path = read_table(catalogue)
    frame, root, name = frame.reset_index(drop=True), path.parent if path else Path.cwd(), str(path or "catalogue")
    if not mask_cols:
        raise CatalogueError("segmentation needs --mask-cols: the catalogue columns naming each galaxy's mask files")
    wanted = ["id_str", "file_loc", *mask_cols, *([volunteers_col] if volunteers_col else [])]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise CatalogueError(f"{name} lacks column(s) {missing}; it has {list(frame.columns)[:12]}")
    table = pd.DataFrame({"id_str": unique_ids(frame, name),
                          "file_loc": resolve_paths(frame["file_loc"].astype(str), root)})
    for column in mask_cols:
        empty = frame[column].isna()
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise CatalogueError(f"{name} row {row} (id_str={table.at[row, 'id_str']}): no {column!r} mask file; "
                                 "give one per galaxy (an all-zero mask where nobody drew)")
        table[column] = resolve_paths(frame[column].astype(str), root)
    volunteers = (pd.to_numeric(frame[volunteers_col], errors="coerce") if volunteers_col
                  else pd.Series(1.0, frame.index))
    bad = ~(np.isfinite(volunteers) & (volunteers >= 1) & (volunteers % 1 == 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise CatalogueError(f"{name} row {row} (id_str={table.at[row, 'id_str']}): {volunteers_col} = "
                             f"{frame.at[row, volunteers_col]}; the number of volunteers who drew must be a whole "
                             "number >= 1")
    table["volunteers"] = volunteers.to_numpy(np.float32)
    return table


def load_masks(catalogue: str | Path | pd.DataFrame, mask_cols: Sequence[str], preprocessing: dict[str, Any],
               volunteers_col: str | None = None, workers: int = 0, progress: bool = True) -> LabelledImages:
    """A catalogue's images and masks, checked and decoded as the encoder expects: targets uint8 (N, K, S, S)."""
    table = read_mask_table(catalogue, mask_cols, volunteers_col)
    prep = Preprocessing.from_dict(preprocessing)
    ids = table["id_str"].tolist()
    images = decode_images(ids, table["file_loc"].tolist(), prep, workers, progress)
    masks = [frame_masks(row.id_str, row.file_loc, [getattr(row, c) for c in mask_cols], row.volunteers, prep)
             for row in table[["id_str", "file_loc", *mask_cols, "volunteers"]].itertuples(index=False)]
    targets = torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, len(mask_cols), prep.stored_size,
                                                                           prep.stored_size), dtype=torch.uint8)
    return LabelledImages(ids, images, targets, volunteers=torch.tensor(table["volunteers"].to_numpy(np.float32)))


class MaskedDataModule(LabelledDataModule):
    """Fine-tuning batches whose masks get their images' augmentation: targets (shares (B, K, S, S),
    volunteers (B,))."""

    def transform_batch(self, batch: dict[str, Any], train: bool) -> dict[str, Any]:
        transform = self._train_transform if train else self._eval_transform
        images, shares = with_masks(transform, batch["image"], batch["target"])
        return {**batch, "image": images, "target": (shares, batch["volunteers"])}
