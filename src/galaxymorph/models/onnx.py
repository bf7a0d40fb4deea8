"""A model as an ONNX graph: for survey pipelines that run it outside Python, and for onnxruntime inside predict.

The graph takes what the model takes, images in [0, 1] after the evaluation transform
(``preprocessing`` in the file's metadata says how: crop, size, channels), with any
batch size; the input normalisation is inside it. :func:`export_onnx` writes the whole
model (``outputs``: the head without dropout, i.e. Dirichlet concentrations for a
galaxymorph model, plus the pooled ``features``); predict's backends export only the
encoder (:func:`onnx_graph` of ``features``), because the head's MC-dropout samples
stay PyTorch's. Needs the ``onnx`` extra (``pip install 'galaxymorph[onnx]'``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from galaxymorph.files import atomic_path
from galaxymorph.models.ensemble import Ensemble
from galaxymorph.models.loading import Checkpoints, load_model
from galaxymorph.outputs import claim_file

__all__ = ["EXPORTER", "METADATA_KEY", "ONNX_FILE", "AsModule", "check_exporter", "claim_onnx", "example_images",
           "export_onnx", "onnx_graph", "quiet_exporter", "read_onnx_metadata"]

METADATA_KEY = "galaxymorph"  # the model file's metadata entry that says what it is and how to feed it
ONNX_FILE = "model.onnx"  # its name in ``galaxymorph export --onnx``'s folder
OPSET = 18
EXPORTER = ("onnx", "onnxscript")  # what torch's ONNX exporter needs beyond torch


def check_exporter() -> None:
    """Refuse, with the extra to install, when torch's ONNX exporter cannot run here."""
    missing = [name for name in EXPORTER if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"exporting to ONNX needs {' and '.join(missing)}: pip install 'galaxymorph[onnx]'")


class AsModule(nn.Module):
    """``function`` of ``model`` as a module (with ``model``'s weights), the form the exporters trace."""

    def __init__(self, model: nn.Module, function: Callable[[torch.Tensor], Any]):
        super().__init__()
        self.model, self.function = model, function

    def forward(self, images: torch.Tensor) -> Any:
        return self.function(images)


def _head_and_features(model: nn.Module) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Images to (the head's one deterministic sample, features): what ``predict --samples 1`` computes."""

    def run(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = model.features(images)
        return model.sample(features, 1)[..., 0], features

    return run


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """The exporter's progress lines and its own deprecation and fallback warnings are not the user's business."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def example_images(config: dict[str, Any], batch: int = 2) -> torch.Tensor:
    """Images shaped as ``config``'s model takes them (2 by default: the exporter fixes a batch of 1 as a constant)."""
    prep = config["preprocessing"]  # the evaluation transform gives its channels and size
    size = prep["image_size"]
    return torch.rand(batch, prep.get("channels", 3), size, size, generator=torch.Generator().manual_seed(0))


def onnx_graph(model: nn.Module, function: Callable[[torch.Tensor], Any], output_names: list[str],
               metadata: dict[str, Any] | None = None) -> bytes:
    """``function(images)`` of an eval-mode ``model`` as a serialised ONNX model with a free batch size.

    ``metadata`` goes into the file as JSON under :data:`METADATA_KEY`.
    """
    check_exporter()
    import onnx

    example = example_images(model.config)
    with quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(AsModule(model, function).eval(), (example,), dynamo=True, opset_version=OPSET,
                                    input_names=["images"], output_names=output_names, verbose=False,
                                    dynamic_shapes=({0: torch.export.Dim("batch")},))
    proto = program.model_proto
    if metadata is not None:
        onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(metadata)})
    return proto.SerializeToString()


def read_onnx_metadata(path: str | Path) -> dict[str, Any] | None:
    """What :func:`export_onnx` recorded in ``path`` (None for an ONNX file galaxymorph did not write)."""
    import onnx
    from google.protobuf.message import DecodeError  # onnx's own dependency

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError):  # not an ONNX file
        return None
    entry = next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), None)
    return None if entry is None else json.loads(entry)


def claim_onnx(path: str | Path) -> None:
    """Refuse to replace a file at ``path`` that galaxymorph did not export."""
    path = Path(path)
    claim_file(path, is_own=path.is_file() and read_onnx_metadata(path) is not None)


def export_onnx(source: Checkpoints, path: str | Path) -> Path:
    """Write a training or fine-tuning run as one ONNX file: images in, ``outputs`` and ``features`` out.

    ``outputs`` is what ``predict --samples 1`` puts in its concentration columns (the head
    without dropout, calibrated if the run is): Dirichlet concentrations (batch, answers),
    or a fine-tuned model's class probabilities or values. Feed it float32 images in [0, 1],
    (batch, channels, image_size, image_size), prepared as the metadata's ``preprocessing``
    says (``galaxymorph.data.transforms``: read, central crop of ``eval_zoom``, antialiased
    resize). An existing file is replaced only if galaxymorph exported it.

    Example:
        >>> export_onnx("runs/gz2", "exported/gz2.onnx")  # doctest: +SKIP
        >>> session = onnxruntime.InferenceSession("exported/gz2.onnx")  # doctest: +SKIP
        >>> concentrations, features = session.run(None, {"images": images})  # doctest: +SKIP
    """
    check_exporter()
    path = Path(path)
    model = load_model(source)
    if isinstance(model, Ensemble):
        raise ValueError("export writes one model; give one run, not several")
    claim_onnx(path)
    config = model.config
    answers = config.get("answers") or config.get("classes") or [config.get("target")]
    metadata = {"exported_from": str(source), "preprocessing": config["preprocessing"],
                "task": config.get("task", "tree"), "outputs": answers, "calibration": config.get("calibration"),
                "temperature": config.get("temperature")}
    graph = onnx_graph(model, _head_and_features(model), ["outputs", "features"], metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(graph)
    return path
