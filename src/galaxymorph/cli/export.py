"""``galaxymorph export``: a run's encoder in a format other tools load."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

__all__ = ["export"]


def export(
    run: Path = typer.Argument(..., help="Training or fine-tuning run (RUN/ or RUN/best/)."),
    out: Path = typer.Argument(..., help="Folder to write (new, empty, or an earlier export)."),
) -> None:
    """Write a run's encoder as a timm / Hugging Face folder (config.json + model.safetensors).

    timm loads it with create_model('local-dir:OUT', pretrained=True, num_classes=0), zoobot with
    FinetuneableZoobotClassifier(name='local-dir:OUT'); upload it with `hf upload ORG/NAME OUT` to
    load it anywhere as hf_hub:ORG/NAME. The config's pretrained_cfg holds the mean and std to feed it with.
    """
    from galaxymorph.models import export_encoder

    folder = export_encoder(run, out)
    Console().print(f"{folder}: timm folder of the {run} encoder (load with timm: 'local-dir:{folder}')")
