"""predict with several checkpoints: one posterior stacking every model's samples, resumable, refused when mixed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from galaxymorph.cli import app
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.models import GalaxyModel, save_model
from galaxymorph.prediction import predict, read_concentrations, read_predictions
from galaxymorph.simulate import simulate_catalogue

PREP = Preprocessing(stored_size=20, image_size=16, channels=3)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Eight simulated galaxies and three random tiny models: two on one tree (other seeds), one on another."""
    w = tmp_path_factory.mktemp("ensemble")
    simulate_catalogue(8, 32, w / "sim", workers=1, progress=False)
    for name, seed, schema in (("a", 0, "gz_decals_dr5"), ("b", 1, "gz_decals_dr5"), ("gz2", 2, "gz2")):
        torch.manual_seed(seed)
        save_model(GalaxyModel(schema, arch="test_resnet", preprocessing=PREP.to_dict()), w / name / "best")
    return w


def _predict(w, checkpoints, out, samples=1):
    return predict([w / c for c in checkpoints], out, catalogue=w / "sim" / "catalogue.parquet", samples=samples,
                   progress=False)


def test_an_ensemble_stacks_each_models_samples_in_order(world, tmp_path):
    # one sample per model is each model's deterministic head, so the stacked posterior is the models' outputs
    _predict(world, ["a", "b"], tmp_path / "ab.parquet")
    frame, schema, meta = read_predictions(tmp_path / "ab.parquet")
    stacked = read_concentrations(frame, schema)
    for i, name in enumerate(["a", "b"]):
        _predict(world, [name], tmp_path / f"{name}.parquet")
        alone, _, _ = read_predictions(tmp_path / f"{name}.parquet")
        np.testing.assert_array_equal(stacked[..., i], read_concentrations(alone, schema)[..., 0])
    assert meta["samples"] == 2 and not np.allclose(stacked[..., 0], stacked[..., 1])
    assert meta["made_by"]["checkpoint"] == [str(world / "a"), str(world / "b")]
    assert len(meta["made_by"]["model_sha256"]) == 2 and meta["made_by"]["samples"] == 1


def test_mc_samples_of_every_model_and_resume_with_the_same_models_only(world, tmp_path):
    out = tmp_path / "ab.parquet"
    assert _predict(world, ["a", "b"], out, samples=3)["new"] == 8
    frame, schema, meta = read_predictions(out)
    assert read_concentrations(frame, schema).shape == (8, schema.n_answers, 6) and meta["samples"] == 6
    assert _predict(world, ["a", "b"], out, samples=3)["new"] == 0
    with pytest.raises(ValueError, match="holds rows made with weights sha256"):
        _predict(world, ["b", "a"], out, samples=3)
    with pytest.raises(ValueError, match="holds rows made with weights sha256"):
        _predict(world, ["a"], out, samples=3)


def test_models_with_other_outputs_are_refused_naming_the_checkpoint(world, tmp_path):
    with pytest.raises(ValueError, match="--checkpoint 2 differs from the first in 'schema'"):
        _predict(world, ["a", "gz2"], tmp_path / "mixed.parquet")
    assert not (tmp_path / "mixed.parquet").exists()


def test_cli_takes_the_checkpoint_option_once_per_model(world, tmp_path):
    out = tmp_path / "cli.parquet"
    args = ["predict", "--checkpoint", str(world / "a"), "--checkpoint", str(world / "b"), "--samples", "2",
            "--catalog", str(world / "sim" / "catalogue.parquet"), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert read_predictions(out)[2]["samples"] == 4
    bad = CliRunner().invoke(app, args[:3] + ["--checkpoint", str(world / "gz2")] + args[5:])
    assert bad.exit_code == 2 and "differs from the first in 'schema'" in bad.output


def test_heads_on_one_frozen_encoder_run_it_once(world):
    from galaxymorph.models import load_model
    from galaxymorph.models.ensemble import Ensemble

    a, b, other = (load_model(world / name) for name in ("a", "b", "b"))
    b.encoder.load_state_dict(a.encoder.state_dict())  # b: another head on a's encoder
    calls = []
    for model in (a, b, other):
        model.encoder.register_forward_hook(lambda module, args, out: calls.append(module))
    images = torch.rand(3, 3, 16, 16)
    features = Ensemble([a, b, other]).features(images)
    assert calls == [a.encoder, other.encoder]  # b's features are a's
    torch.testing.assert_close(features[1], b.features(images))
    assert not torch.equal(features[0], features[2])
