"""``galaxymorph acquire``: the galaxies volunteers should classify next, by BALD."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from galaxymorph.cli.options import CATALOGUE_HELP, warnings_as_lines


def acquire(
    predictions: Path = typer.Option(..., help="Parquet file from `galaxymorph predict` (several MC samples)."),
    top: int = typer.Option(..., min=1, help="How many galaxies to queue, most informative first."),
    out: Path = typer.Option(..., help="CSV of the queue: rank, id_str, file_loc, score, mi:<question>."),
    questions: str = typer.Option(None, help="Comma-separated questions to score (default all)."),
    volunteers: int = typer.Option(40, min=1, help="Volunteers who would see each galaxy."),
    grid: Path = typer.Option(None, help="Also draw the queued galaxies into this PNG."),
    catalogue: Path = typer.Option(None, "--catalog", help=CATALOGUE_HELP),
) -> None:
    """Rank galaxies by the mutual information between new volunteers' votes and the model (BALD).

    Each question's information (nats) is that of the votes of volunteers x P(asked) volunteers;
    a galaxy's score sums them weighted by P(asked). See galaxymorph.acquisition.
    """
    from galaxymorph.acquisition import rank_predictions
    from galaxymorph.data.images import MissingImagesWarning
    from galaxymorph.data.inputs import image_paths
    from galaxymorph.outputs import claim_picture, claim_table
    from galaxymorph.representations import image_grid

    chosen = [q.strip() for q in questions.split(",")] if questions else None
    claim_table(out, ["rank", "id_str", "score"])
    if grid:
        claim_picture(grid)
    queue = rank_predictions(predictions, top, volunteers, chosen)
    queue["file_loc"] = image_paths(queue, catalogue)
    out.parent.mkdir(parents=True, exist_ok=True)
    queue.to_csv(out, index=False)
    Console().print(queue.drop(columns="file_loc").head(20).to_string(index=False, float_format="{:.3f}".format))
    Console().print(f"{len(queue)} galaxies queued in {out}")
    if grid:
        captions = [f"{i} ({s:.3f})" for i, s in zip(queue["id_str"], queue["score"])]
        with warnings_as_lines(MissingImagesWarning):
            image_grid(queue["file_loc"].tolist(), captions, grid,
                       title=f"most informative for {volunteers} volunteers")
        Console().print(f"grid: {grid}")
