"""``galaxymorph shard``: validate a catalogue and decode its images once into shards."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer
from rich.console import Console

from galaxymorph.schema import get_schema

console = Console(stderr=True)

__all__ = ["shard"]


def shard(
    catalogue: Path = typer.Option(..., "--catalog", help="Catalogue (.csv/.parquet): id_str, file_loc, vote counts."),
    schema: str = typer.Option(..., help="Decision tree naming the vote columns (see `galaxymorph schemas`)."),
    out: Path = typer.Option(..., help="Output directory for shards + manifest.json (re-run to resume)."),
    size: int = typer.Option(128, min=1, help="Side in px of the stored pixels."),
    crop: float = typer.Option(1.0, min=0, max=1, help="Fraction (source_crop, in (0, 1]) of the original frame "
                               "kept (central) before resizing."),
    channels: int = typer.Option(3, help="1 (luminance) or 3."),
    val_fraction: float = typer.Option(0.1, min=0, max=1, help="Share of galaxies in the validation split."),
    test_fraction: float = typer.Option(0.1, min=0, max=1, help="Share of galaxies in the test split."),
    seed: int = typer.Option(0, help="Split seed (split = hash of seed and id_str)."),
    workers: int = typer.Option(0, min=0, help="Decoding processes (0 = all cores)."),
    shard_size: int = typer.Option(1000, min=1, help="Galaxies per shard."),
    on_error: str = typer.Option("raise", help="raise: stop on a bad row; skip: leave it out, listed in the report."),
    stretch: str = typer.Option("arcsinh", help="FITS only: arcsinh or percentile."),
    size_crop: bool = typer.Option(False, "--size-crop", help="Crop each galaxy to a multiple of its measured radius "
                                   "(fitted so the median training galaxy keeps --crop, which stays the fallback): "
                                   "for models that must predict images cut at other scales."),
    match_photometry: bool = typer.Option(False, "--match-photometry",
                                          help="Map each image's sky and brightness levels onto the training galaxies' "
                                          "median: for images stretched another way."),
    overwrite: bool = typer.Option(False, help="Rebuild an --out holding shards of other data/settings."),
) -> None:
    """Validate a catalogue, decode each image once, write WebDataset shards (resumable)."""
    from galaxymorph.data.catalogue import CatalogueWarning
    from galaxymorph.data.images import FitsStretch
    from galaxymorph.data.normalise import Photometry, SizeCrop
    from galaxymorph.data.shards import write_shards
    from galaxymorph.data.transforms import Preprocessing

    prep = Preprocessing(stored_size=size, source_crop=crop, channels=channels, image_size=size,
                         stretch=FitsStretch(kind=stretch), size_crop=SizeCrop() if size_crop else None,
                         photometry=Photometry() if match_photometry else None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CatalogueWarning)
        manifest = write_shards(
            catalogue, get_schema(schema), out, prep, val_fraction, test_fraction, seed,
            workers or None, shard_size, on_error, overwrite,
        )
    for warning in caught:
        console.print(f"[yellow]warning:[/yellow] {warning.message}")
    counts = ", ".join(f"{name} {s['count']}" for name, s in manifest["splits"].items())
    console.print(f"wrote {out}: {counts}; {len(manifest['skipped'])} skipped")
