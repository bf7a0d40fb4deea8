"""``galaxymorph acquire``: the galaxies volunteers should classify next, and why each was chosen."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from galaxymorph.cli.options import CATALOGUE_HELP, warnings_as_lines


def acquire(
    predictions: Path = typer.Option(..., help="Parquet file from `galaxymorph predict` (several MC samples)."),
    top: int = typer.Option(..., min=1, help="How many galaxies to queue."),
    out: Path = typer.Option(..., help="CSV of the queue: rank, id_str, file_loc, score, cluster or gain, "
                                       "error_now, error_after, mi:<question>."),
    strategy: str = typer.Option("random", help="How to choose: random, bald, cluster-bald or batch-bald (the "
                                                "default until one is measured to need fewer labels: BENCHMARKS.md)."),
    embeddings: Path = typer.Option(None, help="The pool's encoder features (`galaxymorph embed`), for cluster-bald."),
    queued: Path = typer.Option(None, help="CSV or Parquet with the id_str of galaxies already queued (votes pending): "
                                           "not chosen again, and their expected errors go to OUT's .queued.csv."),
    questions: str = typer.Option(None, help="Comma-separated questions to score (default all)."),
    volunteers: int = typer.Option(40, min=1, help="Volunteers who would see each galaxy."),
    seed: int = typer.Option(0, help="Seed of random, the k-means of cluster-bald and the draws of batch-bald."),
    grid: Path = typer.Option(None, help="Also draw the queued galaxies into this PNG."),
    catalogue: Path = typer.Option(None, "--catalog", help=CATALOGUE_HELP),
) -> None:
    """Choose the galaxies whose votes would teach the model most (see galaxymorph.acquisition).

    score is BALD (nats): the information the votes of volunteers x P(asked) volunteers
    per question would give, summed over questions weighted by P(asked). error_now and
    error_after: each galaxy's expected RMS error of its vote fractions now and once
    those votes arrive.
    """
    from galaxymorph.acquisition import rank_predictions
    from galaxymorph.data.catalogue import read_table
    from galaxymorph.data.images import MissingImagesWarning
    from galaxymorph.data.inputs import image_paths
    from galaxymorph.outputs import claim_picture, claim_table
    from galaxymorph.representations import image_grid

    chosen = [q.strip() for q in questions.split(",")] if questions else None
    claim_table(out, ["rank", "id_str", "score"])
    if grid:
        claim_picture(grid)
    report_path = out.with_name(out.name.removesuffix(".csv") + ".queued.csv")
    waiting: list[str] = []
    if queued:
        table, _ = read_table(queued)
        if "id_str" not in table.columns:
            raise ValueError(f"--queued {queued} has no id_str column; give the queue CSV acquire wrote, or any "
                             "table of the queued galaxies' id_str")
        waiting = table["id_str"].astype(str).tolist()
        claim_table(report_path, ["id_str", "error_now", "error_after"])
    queue, report = rank_predictions(predictions, top, volunteers, chosen, strategy, embeddings, waiting, seed)
    queue["file_loc"] = image_paths(queue, catalogue)
    out.parent.mkdir(parents=True, exist_ok=True)
    queue.to_csv(out, index=False)
    console = Console()
    console.print(queue.drop(columns="file_loc").head(20).to_string(index=False, float_format="{:.3f}".format))
    console.print(f"{len(queue)} galaxies queued by {strategy} in {out}")
    if queued:
        report["file_loc"] = image_paths(report, catalogue)
        report.to_csv(report_path, index=False)
        console.print(f"{len(report)} galaxies already queued: their expected errors once the votes arrive in "
                      f"{report_path}")
    if grid:
        captions = [f"{i} ({s:.3f})" for i, s in zip(queue["id_str"], queue["score"])]
        with warnings_as_lines(MissingImagesWarning):
            image_grid(queue["file_loc"].tolist(), captions, grid,
                       title=f"chosen by {strategy} for {volunteers} volunteers")
        console.print(f"grid: {grid}")
