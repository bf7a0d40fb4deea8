"""A labelled grid of simulated galaxies, to judge realism at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from galaxymorph.outputs import SOFTWARE, claim_picture
from galaxymorph.simulate.catalogue import parameters_of

__all__ = ["describe", "plot_grid", "showcase"]

# Kinds of galaxy a person should see in a grid, as conditions on the true parameters.
SHOWCASE = {
    "round elliptical": "kind == 'elliptical' and bulge_q > 0.85 and interaction == 'none'",
    "elongated elliptical": "kind == 'elliptical' and bulge_q < 0.5 and interaction == 'none'",
    "face-on 2-arm spiral": "kind == 'disk' and inclination < 40 and arm_count == 2 and arm_strength > 0.6",
    "many-armed spiral": "kind == 'disk' and inclination < 45 and arm_count >= 4 and arm_strength > 0.5",
    "barred spiral": "kind == 'disk' and inclination < 45 and bar == 'strong' and arm_count > 0",
    "inclined disk": "kind == 'disk' and 55 < inclination < 75",
    "edge-on, dust lane": "kind == 'disk' and inclination > 84 and dust_lane > 0.5",
    "edge-on, boxy bulge": "kind == 'disk' and inclination > 80 and bulge_shape == 'boxy' and bulge_fraction > 0.2",
    "merger": "interaction == 'merger'",
    "tidal tails": "interaction == 'major' and tidal_strength > 0.6",
    "shells": "shells > 0",
    "faint (low S/N)": "kind == 'disk' and snr < 60",
    "poorly resolved": "half_light < 1.6 * psf_fwhm and kind != 'artifact'",
    "artifact: star": "artifact == 'star'",
    "artifact: trail": "artifact == 'trail'",
    "artifact: columns": "artifact == 'columns'",
    "artifact: empty": "artifact == 'empty'",
    "bulge-dominated disk": "kind == 'disk' and bulge_fraction > 0.55 and inclination < 60",
}


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


def showcase(catalogue: pd.DataFrame, count: int = 18) -> list[int]:
    """Row positions of up to ``count`` galaxies, one of each :data:`SHOWCASE` kind found first."""
    params = parameters_of(catalogue)
    chosen: list[int] = []
    for condition in SHOWCASE.values():
        hits = [i for i in np.flatnonzero(params.eval(condition).to_numpy()) if i not in chosen]
        if hits:
            chosen.append(int(hits[0]))
    rest = [i for i in range(len(catalogue)) if i not in chosen]
    return (chosen + rest)[:count]


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
    claim_picture(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, metadata={"Software": SOFTWARE})
    plt.close(fig)
    return path
