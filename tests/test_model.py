"""The model on its own: head range, MC dropout, encoders by name, save/load round trip."""

import json
import os
import stat

import pytest
import torch

from galaxymorph.files import file_sha256
from galaxymorph.models import (
    DirichletHead,
    GalaxyModel,
    UnknownArchitectureError,
    create_encoder,
    load_model,
    save_model,
)
from galaxymorph.models.checkpoint import fingerprint, upgrade_config
from galaxymorph.models.galaxy_model import CONFIG_VERSION
from galaxymorph.models.head import MAX_CONCENTRATION, MIN_CONCENTRATION
from galaxymorph.schema import get_schema


@pytest.fixture(scope="module")
def model() -> GalaxyModel:
    torch.manual_seed(0)
    return GalaxyModel("gz2", arch="resnet10t", image_size=32, preprocessing={"image_size": 32, "channels": 3}).eval()


def test_head_range_is_strictly_above_one_and_bounded_even_at_extreme_logits():
    head = DirichletHead(4, 3, dropout=0.0)
    with torch.no_grad():
        head.linear.weight.copy_(torch.tensor([[1e4, 0, 0, 0], [-1e4, 0, 0, 0], [0, 0, 0, 0]]))
        head.linear.bias.zero_()
    conc = head(torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]]))
    assert (conc > 1).all() and (conc <= MAX_CONCENTRATION).all()
    assert conc.min().item() == pytest.approx(MIN_CONCENTRATION)
    assert conc.max().item() == pytest.approx(MAX_CONCENTRATION)
    assert conc[0, 2].item() == pytest.approx((MIN_CONCENTRATION + MAX_CONCENTRATION) / 2)  # sigmoid(0)


def test_forward_shapes_follow_the_schema(model):
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 37)
    assert model.features(x).shape == (2, model.encoder.num_features)


def test_mc_samples_differ_in_eval_mode_and_n1_is_the_deterministic_head(model):
    features = model.features(torch.rand(3, 3, 32, 32)).detach()
    samples = model.sample(features, 8)
    assert samples.shape == (3, 37, 8)
    assert not torch.allclose(samples[..., 0], samples[..., 1])  # dropout on although model.eval()
    assert torch.equal(model.sample(features, 1)[..., 0], model.head(features))
    model.train()
    try:  # n=1 stays deterministic in train mode too
        assert torch.equal(model.sample(features, 1), model.sample(features, 1))
    finally:
        model.eval()


def test_save_load_round_trip_gives_identical_outputs_and_plain_files(model, tmp_path):
    save_model(model, tmp_path / "best")
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "best" / "config.json").read_text())
    assert config["arch"] == "resnet10t" and config["image_size"] == 32 and len(config["answers"]) == 37
    loaded = load_model(tmp_path)  # a run folder resolves to RUN/best
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert get_schema("gz2") == loaded.schema


def test_load_rejects_weights_that_do_not_match_the_config(model, tmp_path):
    save_model(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["arch"] = "resnet14t"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises((ValueError, RuntimeError), match="model.safetensors|size mismatch"):
        load_model(tmp_path)


def test_files_of_two_saves_side_by_side_are_refused_and_models_saved_before_the_check_load(model, tmp_path):
    """What a crash between save_model's renames leaves: new weights beside the old config."""
    save_model(model, tmp_path / "old")
    other = GalaxyModel("gz2", arch="resnet10t", image_size=32, preprocessing={"image_size": 32, "channels": 3})
    save_model(other, tmp_path / "new")
    (tmp_path / "new" / "model.safetensors").replace(tmp_path / "old" / "model.safetensors")
    with pytest.raises(ValueError, match=r"old/model.safetensors is not the file config.json was saved with"):
        load_model(tmp_path / "old")
    assert load_model(tmp_path / "old", check_files=False) is not None  # the end of training saves it all again

    config = json.loads((tmp_path / "new" / "config.json").read_text())
    assert config.pop("files") == {"model.safetensors": file_sha256(tmp_path / "old" / "model.safetensors")}
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))  # as saved before the files were listed
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "old")(x), other.eval()(x))


def test_a_missing_ood_reference_is_named_and_a_model_without_one_loads(model, tmp_path):
    from galaxymorph.models.ood import OOD_FILE, OODReference

    with_reference = GalaxyModel("gz2", arch="resnet10t", image_size=32, preprocessing={"image_size": 32, "channels": 3})
    with_reference.set_ood_reference(OODReference.fit(torch.rand(12, 15), torch.rand(12, 8), k=3))
    save_model(with_reference, tmp_path)
    (tmp_path / OOD_FILE).unlink()
    with pytest.raises(ValueError, match="has an 'ood' entry but ood_reference.safetensors is missing"):
        load_model(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["ood"]  # as the message says: predict without ood_score
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert load_model(tmp_path).ood is None


def test_load_names_the_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)


@pytest.mark.parametrize("arch", ["resnet10t", "efficientnet_b0"])
def test_encoders_take_any_channel_count(arch):
    encoder = create_encoder(arch, channels=1)
    assert encoder(torch.rand(2, 1, 32, 32)).shape == (2, encoder.num_features)


def test_unknown_architecture_lists_close_names():
    with pytest.raises(UnknownArchitectureError, match="unknown architecture 'efficentnet_b0'.*efficientnet_b0"):
        create_encoder("efficentnet_b0")


# A model folder as galaxymorph saved it at config version 1 (before model_type), written by hand: no files,
# pretrained_from, calibration or ood entries, as the oldest saves; the fine-tuned one has its task instead.
_OLD_PREPROCESSING = {"stored_size": 20, "source_crop": 1.0, "image_size": 16, "channels": 3}
_VERSION_1 = {
    "galaxy": {
        "version": 1, "arch": "test_resnet", "channels": 3, "dropout": 0.2, "image_size": 16, "input_mean": 0.5,
        "input_std": 0.5, "n_features": 96, "preprocessing": _OLD_PREPROCESSING,
        "schema": {"name": "two", "description": "", "questions": [
            {"name": "shape", "text": "", "answers": ["round", "disk"], "after": []},
            {"name": "bar", "text": "", "answers": ["yes", "no"], "after": ["shape_disk"]}]},
        "answers": ["shape_round", "shape_disk", "bar_yes", "bar_no"],
    },
    "finetuned": {
        "version": 1, "task": "classification", "target": None, "dropout": 0.2, "arch": "test_resnet", "channels": 3,
        "encoder_args": {}, "input_mean": 0.5, "input_std": 0.5, "n_features": 96, "preprocessing": _OLD_PREPROCESSING,
        "image_size": 16, "channels_last": True, "pretrained_from": "runs/base", "classes": ["ring", "other"],
        "outputs": ["ring", "other"],
    },
}
# fingerprint() of each as load_model read it before version 2 (computed with the code of 759173c): the
# sha256 that predictions made with it record, which a resume compares
_VERSION_1_FINGERPRINT = {
    "galaxy": "2db97dee587a46f262fecefd08c08f8b3141f541c4115b5251f6e96f51305c9c",
    "finetuned": "f7d85445efb213111853f925541065180a845f015c3fa8e271959db1dbb10926",
}


def _version_1_folder(kind: str, folder):
    """The model of ``_VERSION_1[kind]`` with fixed (not random) weights, saved as version 1 saved it."""
    from safetensors.torch import save_file

    from galaxymorph.models import FinetunedModel
    from galaxymorph.schema import Schema

    config = _VERSION_1[kind]
    if kind == "galaxy":
        model = GalaxyModel(Schema.from_dict(config["schema"]), arch="test_resnet", image_size=16)
    else:
        model = FinetunedModel(create_encoder("test_resnet", channels=3), config)
    weights = {name: (torch.arange(t.numel()) % 7 + i).reshape(t.shape).to(t.dtype)
               for i, (name, t) in enumerate(sorted(model.state_dict().items()))}
    folder.mkdir()
    save_file(weights, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


@pytest.mark.parametrize("kind", ["galaxy", "finetuned"])
def test_a_version_1_model_loads_upgraded_and_keeps_its_fingerprint(kind, tmp_path):
    """Predictions record the fingerprint; one changed by the upgrade would refuse to resume them."""
    model = load_model(_version_1_folder(kind, tmp_path / "old"))
    assert model.config["version"] == CONFIG_VERSION == 2 and model.config["model_type"] == kind
    assert model.config["ood"] is None and model.ood is None and model.config["pretrained_from"] == (
        None if kind == "galaxy" else "runs/base")
    assert fingerprint(model) == _VERSION_1_FINGERPRINT[kind]
    save_model(model, tmp_path / "new")  # saved again: the current version, the same model
    saved = json.loads((tmp_path / "new" / "config.json").read_text())
    assert saved["version"] == 2 and saved["model_type"] == kind and "ood" in saved
    assert fingerprint(load_model(tmp_path / "new")) == _VERSION_1_FINGERPRINT[kind]


def test_upgrade_config_fills_what_version_1_left_out_and_refuses_what_it_cannot_read():
    upgraded = upgrade_config(_VERSION_1["galaxy"])
    assert upgraded == {**_VERSION_1["galaxy"], "version": 2, "model_type": "galaxy", "pretrained_from": None,
                        "calibration": None, "ood": None, "files": {}}
    assert upgrade_config(upgraded) == upgraded
    assert upgrade_config(_VERSION_1["finetuned"])["model_type"] == "finetuned"
    with pytest.raises(ValueError, match=r"m/config.json: config version 3 is not one this galaxymorph reads"):
        upgrade_config({**upgraded, "version": 3}, "m/config.json")
    with pytest.raises(ValueError,
                       match=r"unknown model_type 'gan'; expected one of \['galaxy', 'finetuned', 'segmentation'\]"):
        upgrade_config({**upgraded, "model_type": "gan"})


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_a_saved_model_has_the_mode_of_any_file_under_the_umask(tmp_path, umask):
    """safetensors writes 0600: a colleague sharing the folder could read the config but not the model."""
    from galaxymorph.models.ood import OODReference

    scored = GalaxyModel("gz2", arch="resnet10t", image_size=32, preprocessing={"image_size": 32, "channels": 3})
    scored.set_ood_reference(OODReference.fit(torch.rand(12, 15), torch.rand(12, 8), k=3))
    previous = os.umask(umask)
    try:
        save_model(scored, tmp_path / "best")
        with open(tmp_path / "plain.txt", "w"):
            pass
    finally:
        os.umask(previous)
    plain = stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "best").iterdir()}
    assert set(modes) == {"config.json", "model.safetensors", "ood_reference.safetensors"}
    assert modes == dict.fromkeys(modes, plain) and plain == 0o666 & ~umask
