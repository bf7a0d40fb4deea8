"""Fine-tuning: freezing, layer-wise learning rates, a learnable toy task, timm folders, saved models."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from support import TIMM_ARCH as ARCH
from support import timm_folder
from timm.models import group_parameters
from typer.testing import CliRunner

from galaxymorph.cli import app
from galaxymorph.data.catalogue import CatalogueError
from galaxymorph.data.labelled import decode_images, read_labels
from galaxymorph.data.transforms import Preprocessing, eval_transform
from galaxymorph.losses import DirichletMultinomialLoss
from galaxymorph.models import GalaxyModel, load_encoder, load_model, save_model
from galaxymorph.models.checkpoint import fingerprint
from galaxymorph.models.finetune_model import FinetunedModel
from galaxymorph.prediction.layout import (
    outputs_layout,
    outputs_table,
    summarise_samples,
)
from galaxymorph.schema import get_schema
from galaxymorph.training import FinetuneConfig
from galaxymorph.training.finetune_module import layer_decay_param_groups
from galaxymorph.training.finetune_run import class_weights, finetune

PREP = Preprocessing(stored_size=20, image_size=16, channels=3, train_zoom=(0.9, 1.0)).to_dict()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A galaxymorph 'training run' (random weights) in RUN/best/."""
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("run")
    save_model(GalaxyModel("gz2", arch=ARCH, preprocessing=PREP), run / "best")
    return run


def _model(run_dir, task="classification", **kwargs) -> FinetunedModel:
    return FinetunedModel.create(load_encoder(run_dir), task, classes=["no", "yes"], **kwargs)


def test_head_only_freezes_encoder_and_keeps_batchnorm_in_eval(run_dir):
    model = _model(run_dir)
    model.set_trainable(0)
    model.train()
    bn = [m for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bn]
    model(torch.rand(4, 3, 16, 16)).sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.parameters())
    assert all(not m.training for m in bn) and model.head.training
    assert all(torch.equal(m.running_mean, b) for m, b in zip(bn, before))  # statistics untouched


def test_unfreezing_the_last_block_trains_only_that_block(run_dir):
    model = _model(run_dir)
    model.set_trainable(1)
    model.train()
    model(torch.rand(4, 3, 16, 16)).sum().backward()
    for name, param in model.encoder.named_parameters():
        if name.startswith("layer4."):
            assert param.requires_grad and param.grad is not None, name
        else:
            assert not param.requires_grad and param.grad is None, name
    assert model.encoder.layer4.training and not model.encoder.layer1.training
    model.set_trainable("all")
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="'all'"):
        model.set_trainable(-1)


def test_layer_wise_learning_rates_follow_the_decay(run_dir):
    model = _model(run_dir)
    model.set_trainable("all")
    lr, decay = 1e-2, 0.5
    groups = layer_decay_param_groups(model, lr, layer_decay=decay)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert all(math.isclose(lr_of[id(p)], lr) for p in model.head.parameters())
    layers = group_parameters(model.encoder, model.encoder.group_matcher(coarse=False))
    top = max(layers)
    named = dict(model.encoder.named_parameters())
    for layer, names in layers.items():  # the top encoder layer learns at lr*decay, each one below at decay times less
        for name in names:
            assert math.isclose(lr_of[id(named[name])], lr * decay ** (top - layer + 1)), name
    model.set_trainable(1)  # frozen parameters are not given to the optimiser
    trainable = {id(p) for g in layer_decay_param_groups(model, lr, layer_decay=decay) for p in g["params"]}
    assert trainable == {id(p) for p in model.parameters() if p.requires_grad}


def test_classification_fine_tune_beats_chance_and_round_trips(run_dir, toy_catalogue, tmp_path):
    config = FinetuneConfig(str(run_dir), str(toy_catalogue), str(tmp_path / "ft"), label_col="ring",
                            epochs=5, lr=3e-2, batch_size=16, patience=5, progress=False)
    best = finetune(config)
    model = load_model(best)
    assert isinstance(model, FinetunedModel) and model.config["task"] == "classification"
    assert model.config["classes"] == ["no", "yes"]
    frame = pd.read_csv(toy_catalogue)
    prep = Preprocessing.from_dict(model.config["preprocessing"])
    images = decode_images(frame["id_str"].tolist(), [str(toy_catalogue.parent / f) for f in frame["file_loc"]], prep)
    with torch.no_grad():
        features = model.features(eval_transform(prep)(images))
        probs = model.sample(features, 4)
    assert probs.shape == (60, 2, 4)
    assert torch.allclose(probs.sum(dim=1), torch.ones(60, 4))
    accuracy = (probs.mean(-1).argmax(1).numpy() == (frame["ring"] == "yes").to_numpy()).mean()
    assert accuracy >= 0.8  # chance is 0.5
    assert torch.equal(model.sample(features, 1), model.sample(features, 1))  # n=1: no dropout
    assert (best / "training.yaml").is_file() and (tmp_path / "ft" / "finetune_config.yaml").is_file()


def test_a_fine_tuned_classifier_is_calibrated_on_its_validation_labels_and_predicts_so(run_dir, toy_catalogue,
                                                                                       tmp_path):
    config = FinetuneConfig(str(run_dir), str(toy_catalogue), str(tmp_path / "ft"), label_col="ring",
                            epochs=2, lr=3e-2, batch_size=16, patience=5, progress=False)
    best = finetune(config)
    calibrated = load_model(best)
    temperature = calibrated.config["temperature"]
    assert isinstance(temperature, float) and temperature > 0 and temperature != 1.0
    features = torch.randn(5, calibrated.config["n_features"])
    with torch.no_grad():
        logits = calibrated.head(features)
        assert torch.allclose(calibrated.sample(features, 1)[..., 0], (logits / temperature).softmax(dim=1))
    weights, made_by = _weights(best), fingerprint(calibrated)
    finetune(config)  # the finished run again: nothing trains, and the model is the one predictions recorded
    assert fingerprint(load_model(best)) == made_by

    finetune(dataclasses.replace(config, calibrate=False))  # nothing trains; the temperature goes
    plain = load_model(best)
    assert plain.config["temperature"] is None
    assert all(torch.equal(weights[k], w) for k, w in _weights(best).items())
    with torch.no_grad():
        assert torch.allclose(plain.sample(features, 1)[..., 0], plain.head(features).softmax(dim=1))
    finetune(config)  # calibrated again: the same fit on the same model
    assert load_model(best).config["temperature"] == temperature


def test_the_cli_fine_tunes_a_classifier_without_calibration_when_asked(run_dir, toy_catalogue, tmp_path):
    args = ["finetune", "--checkpoint", str(run_dir / "best"), "--catalog", str(toy_catalogue), "--label-col", "ring",
            "--out", str(tmp_path / "ft"), "--epochs", "1", "--no-calibrate"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "ft").config["temperature"] is None
    assert yaml.safe_load((tmp_path / "ft" / "finetune_config.yaml").read_text())["calibrate"] is False


def test_hugging_face_style_timm_folders_load(tmp_path):
    source = timm_folder(tmp_path / "st")
    timm_folder(tmp_path / "bin", safe_serialization=False)
    assert (tmp_path / "st" / "model.safetensors").is_file() and (tmp_path / "bin" / "pytorch_model.bin").is_file()
    for folder in ("st", "bin"):
        pretrained = load_encoder(tmp_path / folder)
        assert pretrained.config["arch"] == ARCH and pretrained.config["n_features"] == source.num_features
        for name, value in pretrained.encoder.state_dict().items():
            assert torch.equal(value, source.state_dict()[name]), name
    prep = Preprocessing(stored_size=20, image_size=16).to_dict()
    model = FinetunedModel.create(load_encoder(tmp_path / "st"), "regression", bounded=True, preprocessing=prep)
    out = model(torch.rand(3, 3, 16, 16))
    assert out.shape == (3, 1) and bool(((out >= 0) & (out <= 1)).all())
    with pytest.raises(FileNotFoundError, match="timm folder"):
        load_encoder(tmp_path)


def test_saved_fine_tuned_models_reload_exactly(run_dir, tmp_path):
    schema = get_schema("gz_decals_dr5")
    model = FinetunedModel.create(load_encoder(run_dir), "tree", schema=schema).eval()
    x = torch.rand(2, 3, 16, 16)
    save_model(model, tmp_path / "tree")
    again = load_model(tmp_path / "tree")
    assert torch.equal(again(x), model(x))
    conc = again.sample(again.features(x), 3)
    assert conc.shape == (2, schema.n_answers, 3) and bool((conc > 1).all())
    votes = torch.full((2, schema.n_answers), 2.0)
    assert torch.isfinite(DirichletMultinomialLoss(schema)(again(x), votes))
    assert again.config["schema"]["name"] == "gz_decals_dr5"


def test_bad_labels_name_the_rows(toy_catalogue):
    frame = pd.read_csv(toy_catalogue)
    frame.loc[3, "ring"] = None
    frame["file_loc"] = [str(toy_catalogue.parent / f) for f in frame["file_loc"]]
    with pytest.raises(CatalogueError, match=r"row 3 \(id_str=g3\)"):
        read_labels(frame, "classification", "ring")
    with pytest.raises(CatalogueError, match="lacks column"):
        read_labels(frame, "classification", "rings")
    frame.loc[3, "x"] = 2.0
    with pytest.raises(CatalogueError, match="outside \\[0, 1\\]"):
        read_labels(frame, "regression", "x", bounded=True)


def test_balanced_class_weights_as_scikit_learn():
    targets = torch.tensor([0, 0, 0, 1])
    assert torch.allclose(class_weights("balanced", targets, 2), torch.tensor([4 / 6, 4 / 2]))
    with pytest.raises(ValueError, match="2 classes"):
        class_weights([1.0], targets, 2)


def test_sample_summaries_name_classes_and_targets():
    config = {"task": "classification", "classes": ["no", "yes"], "outputs": ["no", "yes"]}
    samples = np.array([[[0.9, 0.7], [0.1, 0.3]], [[0.2, 0.4], [0.8, 0.6]]])  # (galaxies, classes, samples)
    columns = summarise_samples(config, samples)
    np.testing.assert_allclose(columns["yes_probability"], [0.2, 0.7])
    assert list(columns["predicted_class"]) == ["no", "yes"]
    assert bool((columns["yes_q05"] <= columns["yes_probability"]).all())
    values = summarise_samples({"task": "regression", "outputs": ["bar"]}, np.array([[[0.1, 0.3]]]))
    np.testing.assert_allclose([values["bar"][0], values["bar_std"][0]], [0.2, 0.1])
    with pytest.raises(ValueError, match="samples"):
        summarise_samples(config, samples[:, :1])
    layout = outputs_layout(config, samples=2)
    table = outputs_table(["a", "b"], samples, [None, "b.png"], config, layout).to_pandas()
    assert list(table["predicted_class"]) == ["no", "yes"] and list(table["sample:yes"][1]) == pytest.approx([0.8, 0.6])


def test_cli_fine_tunes_a_new_decision_tree(run_dir, toy_catalogue, tmp_path):
    (tmp_path / "rings.toml").write_text(
        'name = "rings"\n[[questions]]\nname = "ring"\nanswers = ["yes", "no"]\nafter = []\n'
    )
    frame = pd.read_csv(toy_catalogue)
    frame["ring_yes"] = np.where(frame["ring"] == "yes", 8.0, 1.0)
    frame["ring_no"] = 9.0 - frame["ring_yes"]
    frame["file_loc"] = [str(toy_catalogue.parent / f) for f in frame["file_loc"]]
    frame.to_csv(tmp_path / "votes.csv", index=False)
    args = ["finetune", "--checkpoint", str(run_dir / "best"), "--catalog", str(tmp_path / "votes.csv"), "--task", "tree",
            "--schema", str(tmp_path / "rings.toml"), "--out", str(tmp_path / "tree"), "--epochs", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    model = load_model(tmp_path / "tree")
    assert model.config["task"] == "tree" and model.config["answers"] == ["ring_yes", "ring_no"]
    without_schema = [a for a in args if a not in ("--schema", str(tmp_path / "rings.toml"))]
    result = CliRunner().invoke(app, without_schema)
    assert result.exit_code == 2 and "schema" in result.output


def test_interrupted_fine_tune_resumes_and_other_settings_are_refused(run_dir, toy_catalogue, tmp_path, monkeypatch):
    from galaxymorph.training.finetune_module import FinetuneModule

    config = FinetuneConfig(str(run_dir), str(toy_catalogue), str(tmp_path / "ft"), label_col="ring", unfreeze=1,
                            head_epochs=1, epochs=3, patience=5, progress=False)
    calls = {"n": 0}

    def crash_in_second_epoch(self):
        calls["n"] += 1
        if calls["n"] == 3:  # head stage: 1 epoch; encoder stage: dies after its first epoch
            raise RuntimeError("killed")

    monkeypatch.setattr(FinetuneModule, "on_train_epoch_end", crash_in_second_epoch, raising=False)
    with pytest.raises(RuntimeError, match="killed"):
        finetune(config)
    checkpoints = tmp_path / "ft" / "checkpoints"
    assert (checkpoints / "head.done").is_file() and (checkpoints / "finetune.ckpt").is_file()
    assert torch.load(checkpoints / "finetune.ckpt", weights_only=False)["epoch"] == 0  # its first epoch, saved
    best = finetune(config)  # same settings: skips the head stage, continues the encoder stage
    assert calls["n"] == 5  # the encoder stage's 2nd (crashed, redone) and 3rd epochs, nothing else
    assert (checkpoints / "finetune.done").is_file() and not (checkpoints / "finetune.ckpt").exists()
    assert load_model(best).config["task"] == "classification"
    logs = tmp_path / "ft" / "logs" / "finetune"  # the crashed attempt's metrics are kept beside the resumed one's
    assert sorted(p.name for p in logs.iterdir()) == ["version_0", "version_1"]
    assert all((v / "metrics.csv").is_file() for v in logs.iterdir())
    with pytest.raises(ValueError, match="lr=0.001, not 0.5"):
        finetune(dataclasses.replace(config, lr=0.5))


def test_fine_tuning_into_a_training_run_is_refused_and_leaves_it_whole(run_dir, toy_catalogue, tmp_path):
    import shutil

    run = tmp_path / "gz2"
    shutil.copytree(run_dir, run)
    (run / "train_config.yaml").write_text("arch: test\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"the pretrained run's state")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    config = FinetuneConfig(str(run), str(toy_catalogue), str(run), label_col="ring", epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"--out .*gz2 holds a training run \(galaxymorph train\); choose a new --out"):
        finetune(config)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def _weights(best: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(best / "model.safetensors"))


def test_fine_tuning_is_repeatable_and_a_killed_run_resumes_to_the_same_weights(run_dir, toy_catalogue, tmp_path,
                                                                               monkeypatch):
    """Same settings, same weights; killed in the encoder stage and re-run, the uninterrupted run's weights, bit for bit."""
    from galaxymorph.training.finetune_module import FinetuneModule

    def config(out: str) -> FinetuneConfig:
        return FinetuneConfig(str(run_dir), str(toy_catalogue), str(tmp_path / out), label_col="ring", unfreeze=1,
                              head_epochs=1, epochs=3, patience=5, batch_size=16, lr=1e-2, progress=False)

    whole = _weights(finetune(config("a")))
    again = _weights(finetune(config("b")))
    assert all(torch.equal(whole[k], again[k]) for k in whole)

    calls = {"n": 0}

    def crash_in_the_encoder_stage(self):
        calls["n"] += 1
        if calls["n"] == 3:  # head stage: 1 epoch; encoder stage: dies at the end of its second epoch
            raise RuntimeError("killed")

    monkeypatch.setattr(FinetuneModule, "on_train_epoch_end", crash_in_the_encoder_stage, raising=False)
    with pytest.raises(RuntimeError, match="killed"):
        finetune(config("c"))
    resumed = _weights(finetune(config("c")))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_a_refused_fine_tune_does_not_bind_the_corrected_one(run_dir, toy_catalogue, tmp_path):
    config = FinetuneConfig(str(run_dir), str(toy_catalogue), str(tmp_path / "ft"), label_col="ring", epochs=1,
                            class_weights=[1.0, 2.0, 3.0], progress=False)
    with pytest.raises(ValueError, match=r"class_weights=\[1.0, 2.0, 3.0\] has 3 values for 2 classes"):
        finetune(config)
    assert not (tmp_path / "ft" / "finetune_config.yaml").exists()
    assert finetune(dataclasses.replace(config, class_weights=[1.0, 2.0])).is_dir()
