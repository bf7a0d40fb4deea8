"""``galaxymorph predict | evaluate | report | demo``: from a trained model to a report a person reads."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

err = Console(stderr=True)


def predict(
    checkpoint: list[Path] = typer.Option(..., help="Training or fine-tuning run folder RUN/ or its RUN/best/; "
                                          "repeat it for an ensemble (samples of every model, stacked)."),
    out: Path = typer.Option(..., help="Output Parquet file (one row per galaxy)."),
    images: Path = typer.Option(None, help="Folder of PNG/JPEG/FITS images (id_str = file name without suffix)."),
    catalog: Path = typer.Option(None, help="Catalogue (CSV/Parquet) with id_str and file_loc."),
    shards: str = typer.Option(None, help="Shard folder from `galaxymorph shard`, or its URL (see README)."),
    split: str = typer.Option(None, help="With --shards: only this split (train/val/test); default all."),
    samples: int = typer.Option(5, help="MC-dropout samples (head passes per galaxy); 1 = deterministic."),
    batch_size: int = typer.Option(64, min=1, help="Galaxies per batch (per process)."),
    workers: int = typer.Option(0, help="Image-reading processes per device."),
    devices: int = typer.Option(1, help="Data-parallel processes on this node (each writes its own parts)."),
    num_nodes: int = typer.Option(1, help="Nodes (launch on each, e.g. with srun; parts need a shared folder)."),
) -> None:
    """Posterior vote fractions with credible intervals: the encoder once, the head --samples times.

    Fine-tuned classification / regression models give class probabilities / values with 5%-95% bounds.
    Re-run the same command after an interruption: finished galaxies are skipped.
    Unreadable images are listed in OUT's .errors.csv and the rest goes on.
    """
    from galaxymorph.predict import errors_path
    from galaxymorph.predict import predict as run

    counts = run(checkpoint, out, images_dir=images, catalog=catalog, shards=shards, split=split, samples=samples,
                 batch_size=batch_size, workers=workers, devices=devices, num_nodes=num_nodes)
    Console().print(f"{counts['rows']} galaxies in {out} ({counts['new']} new)")
    if counts["errors"]:
        err.print(f"[yellow]{counts['errors']} images could not be read: see {errors_path(Path(out))}[/yellow]")


def evaluate(
    predictions: Path = typer.Option(..., help="Parquet file from `galaxymorph predict`."),
    catalog: Path = typer.Option(..., help="Catalogue with the vote counts (and true_p: columns if simulated)."),
    out: Path = typer.Option(None, help="Folder for evaluation.json and the plots."),
    min_votes: int = typer.Option(10, help="Votes a question needs for the confident-galaxy accuracy."),
    confident: float = typer.Option(
        0.8, min=0, max=1, help="Vote fraction above which a galaxy counts as confidently labelled."
    ),
) -> None:
    """Metrics against volunteer votes (NLL, MAE, RMSE, accuracy, calibration) and against truth if present."""
    from galaxymorph.evaluate import evaluate as run

    result = run(predictions, catalog, out=out, min_votes=min_votes, confident=confident)
    overall = result["overall"]
    Console().print(
        f"{result['galaxies']} galaxies: vote-fraction MAE {overall['model']['mae']:.4f} "
        f"(constant {overall['constant']['mae']:.4f}), RMSE {overall['model']['rmse']:.4f}, "
        f"90% interval coverage {overall['coverage']['0.9']:.3f}"
        + (f", MAE vs truth {overall['truth']['model']['mae']:.4f}" if "truth" in overall else "")
        + (f", Kaggle RMSE {overall['kaggle_rmse']['model']:.4f}" if "kaggle_rmse" in overall else "")
        + (f"\nwritten to {out}" if out else "")
    )


def report(
    predictions: Path = typer.Option(..., help="Parquet file from `galaxymorph predict`."),
    out: Path = typer.Option(Path("report.html"), help="The HTML file to write."),
    evaluation: Path = typer.Option(None, help="Folder written by `galaxymorph evaluate --out`."),
    catalog: Path = typer.Option(None, help="Catalogue to find images when predicting from shards."),
    gallery: int = typer.Option(300, help="Galaxies in the gallery (drawn at random when there are more)."),
) -> None:
    """One self-contained HTML file: metrics, plots and a sortable, filterable gallery."""
    from galaxymorph.report import build_report

    path = build_report(predictions, out, evaluation=evaluation, catalog=catalog, gallery=gallery)
    Console().print(f"report: {path}")


def demo(
    out: Path = typer.Option(Path("demo_output"), help="Folder for everything the demo writes."),
    galaxies: int = typer.Option(None, min=10, help="Galaxies to simulate. (default 3000)"),
    epochs: int = typer.Option(None, min=1, help="Training epochs. (default 16)"),
) -> None:
    """Simulate galaxies, shard, train, predict held-out galaxies, evaluate against truth, write the report."""
    from galaxymorph.demo import DemoSettings, run_demo

    overrides = {k: v for k, v in {"galaxies": galaxies, "epochs": epochs}.items() if v is not None}
    run_demo(out, DemoSettings(**overrides))
