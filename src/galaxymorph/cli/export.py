"""``galaxymorph export``: a run's encoder (and with ``--onnx`` the whole model) in formats other tools load."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

__all__ = ["export"]


def export(
    run: Path = typer.Argument(..., help="Training or fine-tuning run (RUN/ or RUN/best/)."),
    out: Path = typer.Argument(..., help="Folder to write (new, empty, or an earlier export)."),
    onnx: bool = typer.Option(False, "--onnx", help="Also the whole model as OUT/model.onnx (images in [0, 1] to "
                              "concentrations and features) for onnxruntime, OpenVINO or TensorRT; needs the onnx extra."),
) -> None:
    """Write a run's encoder as a timm / Hugging Face folder (config.json + model.safetensors).

    timm loads it with create_model('local-dir:OUT', pretrained=True, num_classes=0), zoobot with
    FinetuneableZoobotClassifier(name='local-dir:OUT'); upload it with `hf upload ORG/NAME OUT` to
    load it anywhere as hf_hub:ORG/NAME. The config's pretrained_cfg holds the mean and std to feed it with.
    With --onnx, OUT/model.onnx is the whole model for pipelines outside Python; its metadata holds the
    preprocessing that makes its input images.
    """
    from galaxymorph.models import export_encoder
    from galaxymorph.models.onnx import ONNX_FILE, check_exporter, claim_onnx, export_onnx

    if onnx:  # refused before anything is written
        check_exporter()
        claim_onnx(out / ONNX_FILE)
    folder = export_encoder(run, out)
    Console().print(f"{folder}: timm folder of the {run} encoder (load with timm: 'local-dir:{folder}')")
    if onnx:
        path = export_onnx(run, folder / ONNX_FILE)
        Console().print(f"{path}: the whole model in ONNX (input 'images'; outputs 'outputs' and 'features')")
