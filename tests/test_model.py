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
