"""``galaxymorph convert-kaggle``: the Kaggle GZ2 labels as a gz2 catalogue of vote counts."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)

__all__ = ["convert_kaggle"]


def convert_kaggle(
    labels: Path = typer.Option(..., help="Kaggle GZ2 labels.csv (GalaxyID, Class1.1 ... Class11.6)."),
    images: Path = typer.Option(..., help="Folder of <GalaxyID>.jpg images."),
    out: Path = typer.Option(..., help="Catalogue to write (.parquet or .csv)."),
    volunteers: float = typer.Option(40, min=1, help="Assumed volunteers per galaxy: "
                                     "counts = round(fraction x volunteers reaching the question)."),
) -> None:
    """Kaggle GZ2 weighted cumulative fractions -> a gz2 catalogue of vote counts (see docs/data.md)."""
    from galaxymorph.data.kaggle_gz2 import kaggle_to_catalogue

    catalogue = kaggle_to_catalogue(labels, images, volunteers, out)
    console.print(f"wrote {out}: {len(catalogue)} galaxies, {volunteers:g} volunteers assumed")
