"""``galaxymorph shard`` and ``galaxymorph convert-kaggle``: catalogues into training data."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer
from rich.console import Console

from galaxymorph.schema import get_schema

console = Console(stderr=True)


def shard(
    catalog: Path = typer.Option(..., "--catalog", help="Catalogue (.csv/.parquet): id_str, file_loc, vote counts."),
    schema: str = typer.Option(..., help="Decision tree naming the vote columns (see `galaxymorph schemas`)."),
    out: Path = typer.Option(..., help="Output directory for shards + manifest.json (re-run to resume)."),
    size: int = typer.Option(128, help="Side in px of the stored pixels."),
    crop: float = typer.Option(1.0, help="Fraction of the original frame kept (central) before resizing."),
    channels: int = typer.Option(3, help="1 (luminance) or 3."),
    val_fraction: float = typer.Option(0.1, help="Share of galaxies in the validation split."),
    test_fraction: float = typer.Option(0.1, help="Share of galaxies in the test split."),
    seed: int = typer.Option(0, help="Split seed (split = hash of seed and id_str)."),
    workers: int = typer.Option(0, help="Decoding processes (0 = all cores)."),
    shard_size: int = typer.Option(1000, min=1, help="Galaxies per shard."),
    on_error: str = typer.Option("raise", help="raise: stop on a bad row; skip: leave it out, listed in the report."),
    stretch: str = typer.Option("arcsinh", help="FITS only: arcsinh or percentile."),
    overwrite: bool = typer.Option(False, help="Rebuild an --out holding shards of other data/settings."),
) -> None:
    """Validate a catalogue, decode each image once, write WebDataset shards (resumable)."""
    from galaxymorph.data.catalog import CatalogWarning
    from galaxymorph.data.images import FitsStretch
    from galaxymorph.data.shards import write_shards
    from galaxymorph.data.transforms import Preprocessing

    prep = Preprocessing(stored_size=size, source_crop=crop, channels=channels, image_size=size,
                         stretch=FitsStretch(kind=stretch))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CatalogWarning)
        manifest = write_shards(
            catalog, get_schema(schema), out, prep, val_fraction, test_fraction, seed,
            workers or None, shard_size, on_error, overwrite,
        )
    for warning in caught:
        console.print(f"[yellow]warning:[/yellow] {warning.message}")
    counts = ", ".join(f"{name} {s['count']}" for name, s in manifest["splits"].items())
    console.print(f"wrote {out}: {counts}; {len(manifest['skipped'])} skipped")


def convert_kaggle(
    labels: Path = typer.Option(..., help="Kaggle GZ2 labels.csv (GalaxyID, Class1.1 ... Class11.6)."),
    images: Path = typer.Option(..., help="Folder of <GalaxyID>.jpg images."),
    out: Path = typer.Option(..., help="Catalogue to write (.parquet or .csv)."),
    volunteers: float = typer.Option(40, help="Assumed volunteers per galaxy: counts = round(fraction x volunteers reaching the question)."),
) -> None:
    """Kaggle GZ2 weighted cumulative fractions -> a gz2 catalogue of vote counts (see docs/data.md)."""
    from galaxymorph.data.kaggle_gz2 import kaggle_to_catalogue

    catalogue = kaggle_to_catalogue(labels, images, volunteers, out)
    console.print(f"wrote {out}: {len(catalogue)} galaxies, {volunteers:g} volunteers assumed")
