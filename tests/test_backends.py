"""Prediction backends and ``export --onnx``: eager PyTorch's numbers from onnxruntime and OpenVINO, nothing mixed.

The exported backends need the ``onnx`` and ``openvino`` extras (part of the ``test``
extra); their tests skip only where those are not installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from galaxymorph.cli import app
from galaxymorph.data.transforms import Preprocessing, eval_transform
from galaxymorph.models import GalaxyModel, save_model
from galaxymorph.prediction import predict, read_concentrations, read_predictions
from galaxymorph.schema import Question, Schema

TINY = Schema("tiny", [Question("shape", ("round", "disk")), Question("bar", ("yes", "no"), after=("shape_disk",))])
PARITY = 1e-4  # vote fractions, as the issue asks of every float32 backend


def _run(folder: Path, size: int) -> Path:
    """A calibrated random timm test model saved as training saves it (the calibration must reach every backend)."""
    torch.manual_seed(0)
    prep = Preprocessing(stored_size=size + size // 4, image_size=size, train_zoom=(0.8, 0.8))
    model = GalaxyModel(TINY, arch="test_resnet", preprocessing=prep.to_dict())
    model.set_calibration({"shape": 0.5, "bar": 2.0})
    with torch.no_grad():  # random features vary little: a steeper head makes the galaxies' fractions differ
        model.head.linear.weight.mul_(100.0)
    return save_model(model, folder / "best").parent


def _catalogue(folder: Path, n: int = 6) -> Path:
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)).save(folder / "images" / f"gal{i}.png")
    path = folder / "catalogue.csv"
    pd.DataFrame({"id_str": [f"gal{i}" for i in range(n)], "file_loc": [f"images/gal{i}.png" for i in range(n)]}).to_csv(
        path, index=False)
    return path


def _fractions(path: Path) -> np.ndarray:
    frame = read_predictions(path)[0].sort_values("id_str")
    return frame[[f"{answer}_fraction" for answer in TINY.answers]].to_numpy()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("backends")
    return _run(folder / "run", 32), _catalogue(folder)


@pytest.mark.slow
@pytest.mark.parametrize("backend, tta", [("onnx", False), ("openvino", True)])
def test_an_exported_backend_gives_eager_pytorchs_vote_fractions(inputs, tmp_path, backend, tta):
    pytest.importorskip({"onnx": "onnxruntime", "openvino": "openvino"}[backend])
    run, catalogue = inputs
    settings = dict(catalogue=catalogue, samples=3, tta=tta, batch_size=4, progress=False, accelerator="cpu")
    predict(run, tmp_path / "eager.parquet", **settings)
    predict(run, tmp_path / "other.parquet", backend=backend, **settings)  # batches of 4 and 2 (x 8 views with tta)
    eager, other = _fractions(tmp_path / "eager.parquet"), _fractions(tmp_path / "other.parquet")
    assert np.abs(other - eager).max() < PARITY
    assert np.abs(eager[0] - eager[1]).max() > 100 * PARITY  # the galaxies differ by far more than the tolerance
    made_by = read_predictions(tmp_path / "other.parquet")[2]["made_by"]
    assert "precision" not in made_by and "backend" not in made_by  # float32 backends resume one another


@pytest.mark.slow
def test_auto_takes_the_next_backend_when_one_cannot_convert_the_model(tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("onnxruntime")
    run, catalogue = _run(tmp_path / "run", 16), _catalogue(tmp_path)  # at 16 px OpenVINO cannot pool a 1-px map
    settings = dict(catalogue=catalogue, samples=2, progress=False, accelerator="cpu")
    with pytest.raises(ValueError, match="--backend openvino could not convert this model .*; use --backend auto"):
        predict(run, tmp_path / "ov.parquet", backend="openvino", **settings)
    with pytest.warns(UserWarning, match="openvino could not convert this model"):
        predict(run, tmp_path / "auto.parquet", backend="auto", **settings)
    predict(run, tmp_path / "eager.parquet", **settings)
    assert np.abs(_fractions(tmp_path / "auto.parquet") - _fractions(tmp_path / "eager.parquet")).max() < PARITY


@pytest.mark.slow
def test_export_onnx_reproduces_predicts_concentrations_in_onnxruntime(inputs, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    run, catalogue = inputs
    out = tmp_path / "exported"
    result = CliRunner().invoke(app, ["export", str(run), str(out), "--onnx"])
    assert result.exit_code == 0, result.output
    predict(run, tmp_path / "p.parquet", catalogue=catalogue, samples=1, progress=False, accelerator="cpu")
    frame, _, _ = read_predictions(tmp_path / "p.parquet")
    expected = read_concentrations(frame.sort_values("id_str"), TINY)[..., 0]

    from galaxymorph.models.onnx import read_onnx_metadata

    metadata = read_onnx_metadata(out / "model.onnx")
    assert metadata["outputs"] == list(TINY.answers) and metadata["calibration"] == {"shape": 0.5, "bar": 2.0}
    prep = Preprocessing.from_dict(metadata["preprocessing"])  # all a pipeline needs to prepare the images
    files = sorted((catalogue.parent / "images").glob("*.png"))
    pixels = torch.stack([torch.from_numpy(prep.read(f)).permute(2, 0, 1) for f in files])
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    concentrations, features = session.run(None, {"images": eval_transform(prep)(pixels).numpy()})
    np.testing.assert_allclose(concentrations, expected, rtol=PARITY)
    assert features.shape == (len(files), GalaxyModel(TINY, arch="test_resnet").encoder.num_features)

    again = CliRunner().invoke(app, ["export", str(run), str(out), "--onnx"])  # its own file: replaced
    assert again.exit_code == 0, again.output
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.onnx").write_bytes(b"someone else's model")
    refused = CliRunner().invoke(app, ["export", str(run), str(tmp_path / "other"), "--onnx"])
    assert refused.exit_code == 2 and "was not written by this command" in refused.output
    assert (tmp_path / "other" / "model.onnx").read_bytes() == b"someone else's model"


def test_a_resume_at_another_precision_is_refused_and_the_precision_recorded(inputs, tmp_path):
    """Before, ``made_by`` held no precision: a bf16 run resumed into a float32 file, mixing two sets of numbers."""
    run, catalogue = inputs
    out = tmp_path / "p.parquet"
    predict(run, out, catalogue=catalogue, samples=2, progress=False, accelerator="cpu")
    with pytest.raises(ValueError, match="holds rows made with the default precision .* not precision='bf16-mixed'"):
        predict(run, out, catalogue=catalogue, samples=2, progress=False, accelerator="cpu", precision="bf16-mixed")
    bf16 = tmp_path / "bf16.parquet"
    predict(run, bf16, catalogue=catalogue, samples=2, progress=False, accelerator="cpu", precision="bf16-mixed")
    assert read_predictions(bf16)[2]["made_by"]["precision"] == "bf16-mixed"
    with pytest.raises(ValueError, match="holds rows made with precision='bf16-mixed' .* not the default precision"):
        predict(run, bf16, catalogue=catalogue, samples=2, progress=False, accelerator="cpu")


def test_openvino_runs_bf16_where_the_cpu_has_it_recorded_apart_from_eagers_bf16(inputs, tmp_path, monkeypatch):
    """bf16 was refused by every exported backend; OpenVINO's own bf16 (BENCHMARKS: 1.7-4.6x eager on an AVX-512 BF16
    CPU, its accuracy within the seeds' spread) is its own numbers, never mixed with eager's autocast or float32."""
    pytest.importorskip("openvino")
    from galaxymorph.prediction import backends

    run, catalogue = inputs
    monkeypatch.setattr(backends, "openvino_has_bf16", lambda: False)
    with pytest.raises(ValueError, match="--backend openvino --precision bf16-mixed needs a CPU on which OpenVINO"):
        predict(run, tmp_path / "refused.parquet", catalogue=catalogue, backend="openvino", precision="bf16-mixed",
                progress=False, accelerator="cpu")
    assert not (tmp_path / "refused.parquet").exists()
    with pytest.raises(ValueError, match="--backend onnx computes in float32, not --precision bf16-mixed"):
        backends.check_backend("onnx", "cpu", "bf16-mixed")
    with pytest.raises(ValueError, match="--backend openvino runs --precision 32-true or bf16-mixed, not 16-mixed"):
        backends.check_backend("openvino", "cpu", "16-mixed")
    monkeypatch.setattr(backends, "openvino_has_bf16", lambda: True)
    asked, compile_for = [], backends.openvino_encoder

    def recording(converted, threads, precision="f32"):
        asked.append(precision)
        return compile_for(converted, threads, "f32")  # float32 on any CPU, so the head's precision shows alone

    monkeypatch.setattr(backends, "openvino_encoder", recording)
    options = dict(catalogue=catalogue, samples=2, backend="openvino", progress=False, accelerator="cpu")
    float32, out = tmp_path / "openvino_f32.parquet", tmp_path / "openvino_bf16.parquet"
    predict(run, float32, **options)
    predict(run, out, precision="bf16-mixed", **options)
    assert asked == ["f32", "bf16"]
    np.testing.assert_allclose(_fractions(out), _fractions(float32), atol=1e-6)  # the head and OOD score: float32
    made_by = read_predictions(out)[2]["made_by"]
    assert (made_by["precision"], made_by["backend"]) == ("bf16-mixed", "openvino")
    assert predict(run, out, precision="bf16-mixed", **options)["new"] == 0  # its own settings resume it
    for other in ({"backend": "eager", "precision": "bf16-mixed"}, {"backend": "openvino"}):
        with pytest.raises(ValueError, match="holds rows made with"):
            predict(run, out, catalogue=catalogue, samples=2, progress=False, accelerator="cpu", **other)
    assert backends.numerics("bf16-mixed", "auto") == {"precision": "bf16-mixed"}  # auto runs eager at bf16
    assert backends.numerics("32-true", "openvino") == {}


def test_a_backend_that_is_not_installed_is_refused_with_the_extra_to_install(inputs, tmp_path, monkeypatch):
    from galaxymorph.prediction import backends

    run, catalogue = inputs
    monkeypatch.setattr(backends, "installed", lambda backend: backend == "eager")
    with pytest.raises(ValueError, match=r"--backend openvino needs openvino: pip install 'galaxymorph\[openvino\]'"):
        predict(run, tmp_path / "p.parquet", catalogue=catalogue, backend="openvino", progress=False)
    assert backends.encoder_backend(GalaxyModel(TINY, arch="test_resnet"), "auto")[0] == "eager"


@pytest.mark.slow
def test_export_onnx_of_a_calibrated_classifier_gives_its_tempered_probabilities_and_says_so(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from galaxymorph.models import load_encoder
    from galaxymorph.models.finetune_model import FinetunedModel
    from galaxymorph.models.onnx import export_onnx, read_onnx_metadata

    classifier = FinetunedModel.create(load_encoder(_run(tmp_path, 16)), "classification", classes=["no", "yes"])
    classifier.set_temperature(2.5)
    with torch.no_grad():  # random features vary little: a steeper head makes the temperature visible
        classifier.head.linear.weight.mul_(100.0)
    path = export_onnx(save_model(classifier, tmp_path / "ft" / "best"), tmp_path / "model.onnx")
    assert read_onnx_metadata(path)["temperature"] == 2.5
    images = torch.rand(3, 3, 16, 16)
    probabilities, _ = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"images": images.numpy()})
    classifier.eval()
    with torch.no_grad():
        logits = classifier.head(classifier.features(images))
    np.testing.assert_allclose(probabilities, (logits / 2.5).softmax(dim=1).numpy(), rtol=PARITY, atol=1e-6)
