"""``galaxymorph evaluate`` and ``report``: metrics against the votes (and truth), and the HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from galaxymorph.cli.options import warnings_as_lines

__all__ = ["evaluate", "report"]


def _coverage(result: dict[str, Any]) -> str:
    """The 90% and 50% intervals' overall coverage, each as "before -> after" when the file was calibrated."""
    after = result["overall"]["coverage"]
    before = result["uncalibrated"]["overall"]["coverage"] if "uncalibrated" in result else None
    shown = [f"{after[lv]:.3f}" if before is None else f"{before[lv]:.3f} -> {after[lv]:.3f}" for lv in ("0.9", "0.5")]
    return f"90% interval coverage {shown[0]}, 50% {shown[1]}" + ("" if before is None else " (calibrated)")


def evaluate(
    predictions: Path = typer.Option(..., help="Parquet file from `galaxymorph predict`."),
    catalogue: Path = typer.Option(..., "--catalog", help="Catalogue with the vote counts (and true_p: columns if simulated)."),
    out: Path = typer.Option(None, help="Folder for evaluation.json and the plots."),
    min_votes: int = typer.Option(10, help="Votes a question needs for the confident-galaxy accuracy."),
    confident: float = typer.Option(
        0.8, min=0, max=1, help="Vote fraction above which a galaxy counts as confidently labelled."
    ),
) -> None:
    """Metrics against volunteer votes (NLL, MAE, RMSE, accuracy, calibration) and against truth if present."""
    from galaxymorph.evaluate import evaluate as run

    result = run(predictions, catalogue, out=out, min_votes=min_votes, confident=confident)
    overall = result["overall"]
    Console().print(
        f"{result['galaxies']} galaxies: vote-fraction MAE {overall['model']['mae']:.4f} "
        f"(constant {overall['constant']['mae']:.4f}), RMSE {overall['model']['rmse']:.4f}, "
        f"{_coverage(result)}"
        + (f", MAE vs truth {overall['truth']['model']['mae']:.4f}" if "truth" in overall else "")
        + (f", Kaggle RMSE {overall['kaggle_rmse']['model']:.4f}" if "kaggle_rmse" in overall else "")
        + (f"\nwritten to {out}" if out else "")
    )


def report(
    predictions: Path = typer.Option(..., help="Parquet file from `galaxymorph predict`."),
    out: Path = typer.Option(Path("report.html"), help="The HTML file to write."),
    evaluation: Path = typer.Option(None, help="Folder written by `galaxymorph evaluate --out`."),
    catalogue: Path = typer.Option(None, "--catalog", help="Catalogue to find images when predicting from shards."),
    gallery: int = typer.Option(300, min=0, help="Galaxies in the gallery (drawn at random when there are more; 0: none)."),
) -> None:
    """One self-contained HTML file: metrics, plots and a sortable, filterable gallery."""
    from galaxymorph.data.images import MissingImagesWarning
    from galaxymorph.report import build_report

    with warnings_as_lines(MissingImagesWarning):
        path = build_report(predictions, out, evaluation=evaluation, catalogue=catalogue, gallery=gallery)
    Console().print(f"report: {path}")
