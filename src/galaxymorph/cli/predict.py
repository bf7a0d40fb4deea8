"""``galaxymorph predict``: posterior vote fractions with credible intervals for a folder, catalogue or shards."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from galaxymorph.cli.options import warn_unreadable, warnings_as_lines

err = Console(stderr=True)

__all__ = ["predict"]


def predict(
    checkpoint: list[Path] = typer.Option(..., help="Training or fine-tuning run folder RUN/ or its RUN/best/; "
                                          "repeat it for an ensemble (samples of every model, stacked)."),
    out: Path = typer.Option(..., help="Output Parquet file (one row per galaxy)."),
    images: Path = typer.Option(None, help="Folder of PNG/JPEG/FITS images (id_str = file name without suffix)."),
    catalogue: Path = typer.Option(None, "--catalog", help="Catalogue (CSV/Parquet) with id_str and file_loc."),
    shards: str = typer.Option(None, help="Shard folder from `galaxymorph shard`, or its URL (see docs/training.md)."),
    split: str = typer.Option(None, help="With --shards: only this split (train/val/test); default all."),
    samples: int = typer.Option(5, min=1, help="MC-dropout samples (head passes per galaxy); 1 = deterministic."),
    tta: bool = typer.Option(False, "--tta", help="Also the 8 rotation/flip views: 8 x --samples samples per galaxy."),
    batch_size: int = typer.Option(64, min=1, help="Galaxies per batch (per process)."),
    workers: int = typer.Option(0, min=0, help="Image-reading processes per device."),
    devices: int = typer.Option(1, min=1, help="Data-parallel processes on this node (each writes its own parts)."),
    num_nodes: int = typer.Option(1, min=1, help="Nodes (launch on each, e.g. with srun; parts need a shared folder)."),
    accelerator: str = typer.Option("auto", help="auto | cpu | gpu | mps."),
    precision: str = typer.Option("32-true", help="Lightning precision: 32-true, bf16-mixed, 16-mixed."),
    backend: str = typer.Option("eager", help="What runs the encoder: eager (PyTorch), onnx (onnxruntime), openvino, "
                                "or auto (the fastest installed; at 32-true all give the same vote fractions to 1e-4). "
                                "--precision bf16-mixed runs in eager or openvino (on CPUs with bf16 instructions)."),
) -> None:
    """Posterior vote fractions with credible intervals: the encoder once, the head --samples times.

    Fine-tuned classification / regression models give class probabilities / values with 5%-95% bounds.
    Re-run the same command after an interruption: finished galaxies are skipped.
    Unreadable images are listed in OUT's .errors.csv and the rest goes on.
    """
    from galaxymorph.prediction import predict as run
    from galaxymorph.prediction.masks import is_mask_store, measurements_path
    from galaxymorph.prediction.predictor import OODWarning

    with warnings_as_lines(OODWarning):
        counts = run(checkpoint, out, images_dir=images, catalogue=catalogue, shards=shards, split=split,
                     samples=samples, tta=tta, batch_size=batch_size, workers=workers, devices=devices,
                     num_nodes=num_nodes, accelerator=accelerator, precision=precision, backend=backend)
    Console().print(f"{counts['rows']} galaxies in {out} ({counts['new']} new)")
    if is_mask_store(out):
        Console().print(f"measurements of their masks: {measurements_path(Path(out))}")
    warn_unreadable(out)
