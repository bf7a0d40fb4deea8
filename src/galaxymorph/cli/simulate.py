"""``galaxymorph simulate``: synthetic galaxies and volunteers with known truth."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def simulate(
    n: int = typer.Option(..., "--n", min=1, help="Number of galaxies."),
    size: int = typer.Option(..., "--size", min=8, help="Image side in pixels (e.g. 64, 128, 256)."),
    out: Path = typer.Option(..., "--out", help="Output folder: images/ and catalogue.parquet (re-run to resume)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same bytes."),
    image_format: str = typer.Option("png", "--format", help="png, jpg (RGB) or fits (g, r, z cube)."),
    volunteers: float = typer.Option(40.0, "--volunteers", min=1, help="Mean volunteers per galaxy (varies per galaxy)."),
    workers: int = typer.Option(None, "--workers", min=1, help="Rendering processes (default: CPU count)."),
    grid: Path = typer.Option(None, "--grid", help="Also save a labelled grid of 18 varied examples to this PNG."),
    masks: bool = typer.Option(False, "--masks", help="Also volunteers' drawings of spiral arms and bars (GZ3D style) "
                               "and the true masks: masks/, truth/ and mask_* columns."),
    mask_volunteers: float = typer.Option(15.0, "--mask-volunteers", min=1, help="With --masks: mean volunteers "
                                          "drawing on each galaxy."),
) -> None:
    """Simulate galaxies (g, r, z -> RGB) and volunteers walking the gz_decals_dr5 tree."""
    from galaxymorph.outputs import claim_picture
    from galaxymorph.simulate import simulate_catalogue

    if grid:
        claim_picture(grid)  # before the work, not after it
    catalogue = simulate_catalogue(n, size, out, seed, image_format, volunteers, workers, masks=masks,
                                   mask_volunteers=mask_volunteers)
    console.print(f"wrote {len(catalogue)} galaxies: {out / 'catalogue.parquet'} (file_loc relative to {out})")
    if grid:
        from galaxymorph.simulate import parameters_of, render_galaxies
        from galaxymorph.simulate.grid import plot_grid, showcase

        examples = catalogue.iloc[showcase(catalogue)]
        _, images = render_galaxies(parameters_of(examples), size)
        console.print(f"grid: {plot_grid(images, examples, grid)}")
