"""Galaxies side by side in one PNG, each with a caption (similar galaxies, anomalies)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from galaxymorph.data.images import ImageReadError, load_image, warn_missing_images  # noqa: E402
from galaxymorph.outputs import SOFTWARE, claim_picture

__all__ = ["image_grid"]


def image_grid(
    paths: Sequence[str | None], captions: Sequence[str], out: str | Path, columns: int = 5, size: int = 128,
    title: str | None = None,
) -> Path:
    """Draw each image (decoded at ``size`` px) with its caption; a missing file is a grey tile saying why,
    and one :class:`~galaxymorph.data.images.MissingImagesWarning` says how many there are."""
    if len(paths) != len(captions):
        raise ValueError(f"{len(paths)} images but {len(captions)} captions")
    warn_missing_images(paths)
    columns = max(1, min(columns, len(paths)))
    rows = max(1, math.ceil(len(paths) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, path, caption in zip(axes.ravel(), paths, captions):
        try:
            if not isinstance(path, str) or not path:
                raise ImageReadError("no image file (embedded from shards)")
            ax.imshow(load_image(path, size=size, channels=3, any_bands=True))
        except ImageReadError as err:
            ax.imshow(np.full((size, size, 3), 128, np.uint8))
            ax.text(size / 2, size / 2, str(err).split(": ")[-1][:40], ha="center", va="center", fontsize=6, wrap=True)
        ax.set_title(caption, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    claim_picture(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, metadata={"Software": SOFTWARE})
    plt.close(fig)
    return out
