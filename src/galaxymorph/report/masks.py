"""The report of a segmentation model's predictions: masks drawn over the images they were predicted from.

Each galaxy shows its image as the model saw it (the evaluation crop), the same image
with every class's posterior mean mask over it in its own colour (opacity = the share
of volunteers expected to mark the pixel), the posterior standard deviation per pixel
(about a third of its 90% interval's width), and its measurements with their 5%-95%
ranges. One self-contained HTML file, like the classification report (:mod:`galaxymorph.report.html`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from galaxymorph.data.inputs import image_paths
from galaxymorph.data.transforms import Preprocessing, eval_transform
from galaxymorph.mask_stats import pixel_spread
from galaxymorph.prediction.masks import measurements_path, read_mask_metadata, read_masks
from galaxymorph.report.page import TITLE, png_data_uri, read_evaluation, resource, write_page

__all__ = ["COLOURS", "build_mask_report", "colour_legend", "images_as_seen", "overlay"]

COLOURS = ((0.0, 0.85, 1.0), (1.0, 0.25, 0.2), (1.0, 0.85, 0.0), (0.6, 1.0, 0.3))
COLOUR_NAMES = ("cyan", "red", "yellow", "green")  # of COLOURS
SHOWN = ("area", "length", "angle")
ZOOM = 3  # screen pixels per model pixel
WHITE_SPREAD = 0.25  # the posterior standard deviation drawn white


def overlay(image: np.ndarray, shares: np.ndarray, opacity: float = 0.65) -> np.ndarray:
    """RGB uint8 (S, S, 3): ``image`` (S, S, C) in [0, 1] under each class's mask (K, S, S), coloured by class."""
    out = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image.copy()
    for k, share in enumerate(shares):
        alpha = opacity * np.clip(share, 0, 1)[..., None]
        out = out * (1 - alpha) + np.asarray(COLOURS[k % len(COLOURS)]) * alpha
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def colour_legend(classes: Sequence[str]) -> str:
    """Which colour :func:`overlay` draws each class in, e.g. ``bar in cyan, spiral in red``."""
    return ", ".join(f"{name} in {COLOUR_NAMES[k % len(COLOUR_NAMES)]}" for k, name in enumerate(classes))


def _zoomed(pixels: np.ndarray) -> str:
    return png_data_uri(np.kron(pixels, np.ones((ZOOM, ZOOM, 1), dtype=np.uint8)))


def images_as_seen(paths: list[str | None], prep: Preprocessing) -> list[np.ndarray | None]:
    """Each image as the model saw it, (S, S, C) float in [0, 1], or None where it cannot be read."""
    transform = eval_transform(prep)
    seen: list[np.ndarray | None] = []
    for path in paths:
        try:
            stored = torch.from_numpy(prep.read(path)).permute(2, 0, 1)[None] if path else None
        except (ValueError, OSError):
            stored = None
        seen.append(None if stored is None else transform(stored)[0].permute(1, 2, 0).numpy())
    return seen


def _card(id_str: str, image: np.ndarray | None, mean: np.ndarray, spread: np.ndarray, row: pd.Series,
          classes: list[str]) -> str:
    size = mean.shape[-1]
    base = np.zeros((size, size, 3)) if image is None else image
    unsure = np.clip(spread.max(axis=0) / WHITE_SPREAD, 0, 1)[..., None] * np.ones(3)  # the least sure class
    pictures = [overlay(base, np.zeros_like(mean)), overlay(base, mean), overlay(unsure, np.zeros_like(mean))]
    titles = ["image as the model saw it", "posterior mean masks",
              f"posterior standard deviation (white = {WHITE_SPREAD})"]
    images = "".join(f"<img src='{_zoomed(p)}' title='{t}' alt='{t}'>" for p, t in zip(pictures, titles))
    facts = []
    for k, name in enumerate(classes):
        colour = "#%02x%02x%02x" % tuple(int(255 * c) for c in COLOURS[k % len(COLOURS)])
        values = [f"{m} {row[f'{name}_{m}']:.2f} [{row[f'{name}_{m}_q05']:.2f}, {row[f'{name}_{m}_q95']:.2f}]"
                  for m in SHOWN if np.isfinite(row[f"{name}_{m}"])]
        facts.append(f"<div><b style='color:{colour}'>{html.escape(name)}</b> {'; '.join(values)}</div>")
    missing = "" if image is not None else " <span class='noimg'>(image not found)</span>"
    return (f"<div class='maskcard'><div class='id'>{html.escape(id_str)}{missing}</div>{images}"
            f"{''.join(facts)}</div>")


def build_mask_report(predictions: str | Path, out: str | Path, evaluation: str | Path | None = None,
                      catalogue: str | Path | None = None, gallery: int = 300, seed: int = 0) -> Path:
    """The HTML report of a mask store: ``gallery`` galaxies drawn at random (all if fewer), largest masks first."""
    meta = read_mask_metadata(predictions)
    classes, prep = meta["classes"], Preprocessing.from_dict(meta["preprocessing"])
    measured = [f"{c}_{m}{end}" for c in classes for m in SHOWN for end in ("", "_q05", "_q95")]
    frame = pq.read_table(predictions, columns=["id_str", "file_loc", *measured]).to_pandas()
    if len(frame) > gallery:
        frame = frame.iloc[np.sort(np.random.default_rng(seed).choice(len(frame), gallery, replace=False))]
    frame = frame.sort_values(f"{classes[0]}_area", ascending=False, kind="stable").reset_index(drop=True)
    ids, masks = read_masks(predictions, frame["id_str"].tolist())
    frame = frame.set_index("id_str").loc[ids].reset_index()
    seen = images_as_seen(image_paths(frame, catalogue), prep)
    spread = pixel_spread(masks["mean"], masks["concentration"])
    cards = [_card(i, image, masks["mean"][n], spread[n], frame.iloc[n], classes)
             for n, (i, image) in enumerate(zip(ids, seen))]
    metrics = ""
    if evaluation is not None:
        metrics = _metrics_html(read_evaluation(evaluation, predictions))
    legend = html.escape(colour_legend(classes))
    subtitle = (f"Masks {html.escape(Path(predictions).name)}: {legend}; {meta['samples']} MC-dropout samples per "
                f"galaxy, {meta['image_size']} px; {len(cards)} galaxies, largest {html.escape(classes[0])} area "
                "first. "
                f"Per-galaxy measurements for every galaxy: {html.escape(measurements_path(Path(predictions)).name)}.")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>{TITLE}{html.escape(Path(predictions).name)}"
            f"</title><style>{resource('style.css')}{_STYLE}</style></head><body><header><h1>galaxymorph report</h1>"
            f"<p class='sub'>{subtitle}</p></header>{metrics}<h2>Gallery</h2><div id='gallery'>{''.join(cards)}</div>"
            "</body></html>")
    return write_page(out, page)


_STYLE = (".maskcard { width: 310px; border: 1px solid #ccc; border-radius: 4px; padding: 6px; font-size: 11px; }"
          ".maskcard img { width: 96px; height: 96px; image-rendering: pixelated; margin: 0 3px 4px 0; }")


def _overlap_cell(entry: dict, key: str) -> str:
    return f"{entry[key]['dice']:.3f} / {entry[key]['iou']:.3f}" if key in entry else "&ndash;"


def _metrics_html(result: dict) -> str:
    rows = []
    for name, entry in result["classes"].items():
        cells = [_overlap_cell(entry, key) for key in
                 ("model_vs_truth", "volunteer_majority_vs_truth", "model_vs_volunteer_majority")]
        coverage = entry["coverage_90"]
        rows.append(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{c}</td>" for c in cells) +
                    f"<td>{coverage['drawn_or_predicted']:.3f}</td><td>{coverage['all_pixels']:.3f}</td></tr>")
    head = ["class", "model vs truth (Dice / IoU)", "volunteers' majority vs truth", "model vs volunteers' majority",
            "90% coverage where drawn or predicted", "90% coverage, all pixels"]
    return (f"<h2>Metrics</h2><p class='headline'>{result['galaxies']} galaxies.</p><table class='metrics'><tr>"
            + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>")
