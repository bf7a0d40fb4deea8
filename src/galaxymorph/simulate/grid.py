"""A labelled grid of simulated galaxies, to judge realism at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from galaxymorph.simulate.catalogue import parameters_of

__all__ = ["describe", "plot_grid"]


def describe(params: pd.Series) -> str:
    """A short label of a galaxy's true morphology, e.g. ``disk i=81 2 arms, strong bar``."""
    if params["kind"] == "artifact":
        return f"artifact: {params['artifact']}"
    if params["kind"] == "elliptical":
        words = [f"elliptical q={params['bulge_q']:.2f}"]
    else:
        words = [f"disk i={params['inclination']:.0f}"]
        if params["arm_count"]:
            words.append(f"{params['arm_count']} arms {params['arm_pitch']:.0f}deg")
        if params["bar"] != "none":
            words.append(f"{params['bar']} bar")
    if params["interaction"] != "none":
        words.append(params["interaction"])
    return ", ".join(words)


def plot_grid(images: np.ndarray, catalogue: pd.DataFrame, path: str | Path, columns: int = 6) -> Path:
    """Save a PNG grid of ``images`` (N, S, S, 3) uint8, each titled with its true morphology and S/N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = parameters_of(catalogue)
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.35 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, (_, p) in zip(axes.flat, images, params.iterrows()):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(f"{describe(p)}\nS/N {p['snr']:.0f}", fontsize=6.5)
    fig.tight_layout(pad=0.3, h_pad=0.8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path
