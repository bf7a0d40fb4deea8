"""Simulated catalogues: parameters, volunteers' votes and truth, images on disk.

Everything random is drawn up front from one seed (parameters, volunteers, votes, and
each galaxy's own ``noise_seed`` for its pixels), so the output is byte-identical for
a seed whatever the number of workers or the chunking. Images are written chunk by
chunk through temporary names; a re-run with the same arguments skips finished
images, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from galaxymorph.data.masks import MASK_PREFIX, TRUE_MASK
from galaxymorph.files import atomic_path
from galaxymorph.outputs import claim_folder
from galaxymorph.schema import Schema, get_schema
from galaxymorph.simulate.masks import CLASSES, MASK_VOLUNTEERS, draw_masks, drawing_volunteers
from galaxymorph.simulate.parameters import draw_parameters
from galaxymorph.simulate.render import BANDS, render_galaxies
from galaxymorph.simulate.volunteers import (
    simulate_votes,
    true_probabilities,
    volunteer_counts,
)

__all__ = ["FORMATS", "MASK_COLUMNS", "VOLUNTEERS_COLUMN", "Simulation", "parameters_of", "simulate",
           "simulate_catalogue", "simulate_truth"]

FORMATS = {"png": ".png", "jpg": ".jpg", "fits": ".fits"}
SCHEMA_NAME = "gz_decals_dr5"
TRUE_P = "true_p:"
TRUE = "true:"
MASK_COLUMNS = tuple(MASK_PREFIX + c for c in CLASSES)  # volunteers' counts per pixel, one file per class
VOLUNTEERS_COLUMN = "mask_volunteers"  # how many volunteers drew on the galaxy


def _chunk(size: int) -> int:
    """Galaxies rendered together: enough to vectorise, few enough for memory (~50 MB a tensor)."""
    return int(np.clip(64 * (128 / size) ** 2, 4, 64))


def simulate_truth(n: int, seed: int = 0, volunteers: float = 40, schema: Schema | None = None) -> pd.DataFrame:
    """The catalogue without images: ``id_str``, vote counts, ``true_p:*`` and ``true:*`` columns.

    Vote columns are floats, one per answer of ``schema`` (default gz_decals_dr5);
    ``n_volunteers`` is how many volunteers saw each galaxy (the first question's total).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    schema = schema or get_schema(SCHEMA_NAME)
    rng = np.random.default_rng(seed)
    params = draw_parameters(n, rng)
    n_volunteers = volunteer_counts(n, volunteers, rng)
    p_true = true_probabilities(params, schema)
    votes = simulate_votes(p_true, n_volunteers, schema, rng)
    width = max(6, len(str(n - 1)))
    frame = {"id_str": [f"sim-{i:0{width}d}" for i in range(n)], "n_volunteers": n_volunteers}
    frame.update({a: votes[:, i].astype(np.float64) for i, a in enumerate(schema.answers)})
    frame.update({TRUE_P + a: p_true[:, i] for i, a in enumerate(schema.answers)})
    frame.update({TRUE + c: params[c].to_numpy() for c in params.columns})
    return pd.DataFrame(frame)


def parameters_of(catalogue: pd.DataFrame) -> pd.DataFrame:
    """The true physical parameters (``true:*`` columns) under their plain names."""
    columns = [c for c in catalogue.columns if c.startswith(TRUE)]
    return catalogue[columns].rename(columns=lambda c: c[len(TRUE) :]).reset_index(drop=True)


@dataclass
class Simulation:
    """An in-memory simulation: the catalogue, RGB images (N, S, S, 3) uint8, and optionally bands (N, 3, S, S),
    the volunteers' mask counts (N, 2, S, S) uint8 and the true masks (N, 2, S, S) bool (spiral arms, bar)."""

    catalogue: pd.DataFrame
    images: np.ndarray
    bands: np.ndarray | None = None
    masks: np.ndarray | None = None
    true_masks: np.ndarray | None = None


def simulate(n: int, size: int, seed: int = 0, volunteers: float = 40, keep_bands: bool = False,
             masks: bool = False, mask_volunteers: float = MASK_VOLUNTEERS) -> Simulation:
    """Simulate ``n`` galaxies in memory (no files): for tests, notebooks and grids.

    The same galaxies as ``simulate_catalogue`` with the same ``n`` and ``seed``. Bands
    (float32) are kept only on request: they take 16 bytes per pixel per galaxy. With
    ``masks``, volunteers also draw the arms and bars (:mod:`galaxymorph.simulate.masks`)
    and the catalogue gets their number (``mask_volunteers``).
    """
    catalogue = simulate_truth(n, seed, volunteers)
    params = parameters_of(catalogue)
    chunk = _chunk(size)
    images, bands, drawn = [], [], []
    for start in range(0, n, chunk):
        band, rgb = render_galaxies(params.iloc[start : start + chunk], size)
        images.append(rgb)
        if keep_bands:
            bands.append(band)
        if masks:
            drawn.append(draw_masks(params.iloc[start : start + chunk], size, mask_volunteers))
    if masks:
        catalogue[VOLUNTEERS_COLUMN] = drawing_volunteers(params, mask_volunteers)
    counts, truth = (np.concatenate(arrays) for arrays in zip(*drawn)) if masks else (None, None)
    return Simulation(catalogue, np.concatenate(images), np.concatenate(bands) if keep_bands else None, counts, truth)


def _write_image(path: Path, bands: np.ndarray, rgb: np.ndarray, image_format: str) -> None:
    """Write one image through a temporary name, so a finished file is always complete."""
    with atomic_path(path) as tmp:
        if image_format == "fits":
            from astropy.io import fits

            hdu = fits.PrimaryHDU(bands.astype(np.float32))
            hdu.header["BANDS"] = (",".join(BANDS), "cube planes, in order")
            hdu.header["ORIGIN"] = "galaxymorph.simulate"
            hdu.writeto(tmp, overwrite=True)
        elif image_format == "jpg":
            Image.fromarray(rgb).save(tmp, format="JPEG", quality=92)
        else:
            Image.fromarray(rgb).save(tmp, format="PNG")


def _write_mask(path: Path, pixels: np.ndarray) -> None:
    """A mask as an 8-bit grey PNG of counts (0/1 for a true mask), through a temporary name."""
    with atomic_path(path) as tmp:
        Image.fromarray(pixels.astype(np.uint8)).save(tmp, format="PNG")


def _render_chunk(params: pd.DataFrame, size: int, paths: list[str], image_format: str,
                  mask_paths: list[list[str]] | None = None, mask_volunteers: float = MASK_VOLUNTEERS) -> int:
    """Worker job: render a chunk and write its images (and masks: per galaxy, counts then truth per class)."""
    bands, rgb = render_galaxies(params, size)
    for i, path in enumerate(paths):
        _write_image(Path(path), bands[i], rgb[i], image_format)
    if mask_paths is not None:
        counts, truth = draw_masks(params, size, mask_volunteers)
        for i, files in enumerate(mask_paths):
            for file, pixels in zip(files, [*counts[i], *truth[i]]):
                _write_mask(Path(file), pixels)
    return len(paths)


def _context():
    """Fork where available: no ``if __name__ == "__main__"`` needed in callers' scripts.

    Forking after torch ran is safe here because workers use one thread (as DataLoader does).
    """
    return get_context("fork" if "fork" in get_all_start_methods() else "spawn")


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core does better than threads fighting


def _check_resume(out_dir: Path, settings: dict) -> None:
    """Refuse to mix two different simulations in one folder; record the settings otherwise."""
    record = out_dir / "simulation.json"
    claim_folder(out_dir, record.name)  # its own only once it holds simulation.json, written before any image
    out_dir.mkdir(parents=True, exist_ok=True)
    if record.exists():
        previous = json.loads(record.read_text())
        if previous != settings:
            raise FileExistsError(
                f"{out_dir} holds another simulation ({previous}); use a new --out or delete it to start over"
            )
    record.write_text(json.dumps(settings, indent=2) + "\n")


def simulate_catalogue(
    n: int,
    size: int,
    out_dir: str | Path,
    seed: int = 0,
    image_format: str = "png",
    volunteers: float = 40,
    workers: int | None = None,
    progress: bool = True,
    masks: bool = False,
    mask_volunteers: float = MASK_VOLUNTEERS,
) -> pd.DataFrame:
    """Simulate ``n`` galaxies of ``size`` px: ``out_dir/images/<id_str>.<ext>`` and ``out_dir/catalogue.parquet``.

    Args:
        n: number of galaxies.
        size: image side in pixels (the galaxies look the same at any size).
        out_dir: folder to write; re-running with the same arguments resumes.
        seed: everything random follows from it; the same seed gives the same bytes.
        image_format: ``png`` or ``jpg`` (RGB, arcsinh stretch) or ``fits`` (g, r, z float32 cube).
        volunteers: mean number of volunteers per galaxy (it varies from galaxy to galaxy).
        workers: processes rendering in parallel (default: the CPU count, at most 8).
        masks: also simulate GZ3D-style drawings of spiral arms and bars (:mod:`galaxymorph.simulate.masks`):
            ``out_dir/masks/<id_str>_<class>.png`` (volunteers' counts per pixel) and
            ``out_dir/truth/<id_str>_<class>.png`` (the true mask, 0/1).
        mask_volunteers: with ``masks``, the mean number of volunteers who draw on a galaxy.

    Returns:
        The catalogue: ``id_str``, ``file_loc`` (relative to ``out_dir``), ``n_volunteers``,
        one vote-count column per gz_decals_dr5 answer, ``true_p:<answer>`` and ``true:<parameter>``;
        with ``masks`` also ``mask_spiral``, ``mask_bar`` (count files), ``mask_volunteers`` and
        ``true_mask_spiral``, ``true_mask_bar`` (true mask files).

    Example:
        >>> cat = simulate_catalogue(100, 64, "sim")  # doctest: +SKIP
        >>> cat["smooth-or-featured_smooth"].sum()  # doctest: +SKIP
    """
    if image_format not in FORMATS:
        raise ValueError(f"image_format must be one of {sorted(FORMATS)}, got {image_format!r}")
    if size < 8:
        raise ValueError(f"size must be at least 8 px, got {size}")
    out_dir = Path(out_dir)
    settings = {"n": n, "size": size, "seed": seed, "format": image_format, "volunteers": volunteers}
    if masks:  # only then: an earlier simulation without masks resumes with the settings it recorded
        settings["mask_volunteers"] = mask_volunteers
    _check_resume(out_dir, settings)
    for folder in ("images", "masks", "truth") if masks else ("images",):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)

    catalogue = simulate_truth(n, seed, volunteers)
    file_loc = [f"images/{i}{FORMATS[image_format]}" for i in catalogue["id_str"]]
    catalogue.insert(1, "file_loc", file_loc)
    params = parameters_of(catalogue)
    files = [[f] for f in file_loc]  # every file of a galaxy, its image first
    if masks:
        for column in MASK_COLUMNS:
            catalogue[column] = [f"masks/{i}_{column.removeprefix(MASK_PREFIX)}.png" for i in catalogue["id_str"]]
        catalogue[VOLUNTEERS_COLUMN] = drawing_volunteers(params, mask_volunteers)
        for column in MASK_COLUMNS:
            catalogue[TRUE_MASK + column] = [f"truth/{i}_{column.removeprefix(MASK_PREFIX)}.png"
                                             for i in catalogue["id_str"]]
        names = [*MASK_COLUMNS, *(TRUE_MASK + c for c in MASK_COLUMNS)]
        files = [[f, *row] for f, row in zip(file_loc, catalogue[names].itertuples(index=False))]
    chunk = _chunk(size)
    todo = [
        (start, [[str(out_dir / f) for f in galaxy] for galaxy in files[start : start + chunk]])
        for start in range(0, n, chunk)
        if not all((out_dir / f).exists() for galaxy in files[start : start + chunk] for f in galaxy)
    ]
    workers = min(workers or min(os.cpu_count() or 1, 8), max(len(todo), 1))
    jobs = [(params.iloc[s : s + len(p)], size, [g[0] for g in p], image_format,
             [g[1:] for g in p] if masks else None, mask_volunteers) for s, p in todo]
    columns = [TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    progress_bar = Progress(*columns, disable=not progress)
    if workers <= 1:
        with progress_bar as bar:
            task = bar.add_task("galaxies", total=n, completed=n - sum(len(p) for _, p in todo))
            for job in jobs:
                bar.advance(task, _render_chunk(*job))
    else:
        with ProcessPoolExecutor(workers, mp_context=_context(), initializer=_init_worker) as pool:
            futures = [pool.submit(_render_chunk, *job) for job in jobs]  # fork before the bar's thread starts
            with progress_bar as bar:
                task = bar.add_task("galaxies", total=n, completed=n - sum(len(p) for _, p in todo))
                for done in as_completed(futures):
                    bar.advance(task, done.result())
    catalogue.to_parquet(out_dir / "catalogue.parquet", index=False)
    return catalogue
