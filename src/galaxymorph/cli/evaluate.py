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
    mask_cols: str = typer.Option(None, help="Masks: comma-separated mask columns. "
                                  "(default: those the model learned from)"),
    volunteers_col: str = typer.Option(None, help="Masks: column with how many volunteers drew. "
                                       "(default: the model's)"),
) -> None:
    """Metrics against volunteer votes (NLL, MAE, RMSE, accuracy, calibration) and against truth if present.

    For a segmentation model's masks: Dice and IoU against the volunteers' majority and the truth, and coverage.
    """
    from galaxymorph.evaluation import evaluate as run
    from galaxymorph.prediction.masks import is_mask_store

    if is_mask_store(predictions):
        _evaluate_masks(predictions, catalogue, out, mask_cols.split(",") if mask_cols else None, volunteers_col)
        return

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


def _evaluate_masks(predictions: Path, catalogue: Path, out: Path | None, mask_cols: list[str] | None,
                    volunteers_col: str | None) -> None:
    from galaxymorph.evaluation.masks import evaluate_masks

    result = evaluate_masks(predictions, catalogue, out=out, mask_cols=mask_cols, volunteers_col=volunteers_col)
    lines = [f"{result['galaxies']} galaxies"]
    for name, entry in result["classes"].items():
        against = [f"Dice {entry[key]['dice']:.3f} against {label}" for key, label in (
            ("model_vs_truth", "the truth"), ("volunteer_majority_vs_truth", "the truth for the volunteers' majority"),
            ("model_vs_volunteer_majority", "the volunteers' majority")) if key in entry]
        lines.append(f"{name}: {', '.join(against)}; 90% interval coverage "
                     f"{entry['coverage_90']['drawn_or_predicted']:.3f} where drawn or predicted")
    Console().print("\n".join(lines) + (f"\nwritten to {out}" if out else ""))
