"""``train --init``: the encoder from a galaxymorph run or a timm folder, a new head for the tree being trained."""

import pytest
import torch
import yaml
from support import TOY_ARCH as ARCH
from support import TOY_SCHEMA, ToyDataModule, assert_encoder_parameters_equal, timm_folder, train_from
from typer.testing import CliRunner

from galaxymorph.cli import app
from galaxymorph.models import GalaxyModel, load_model, save_model
from galaxymorph.training import ConfigError


def test_init_from_a_timm_folder_written_by_timm(tmp_path):
    source = timm_folder(tmp_path / "zoobot", ARCH)
    best = train_from(tmp_path / "zoobot", tmp_path / "run")
    model = load_model(best)
    assert_encoder_parameters_equal(model, source)
    assert model.schema == TOY_SCHEMA  # a new head, for the tree trained here
    assert model.config["pretrained_from"] == str(tmp_path / "zoobot")
    assert yaml.safe_load((tmp_path / "run" / "train_config.yaml").read_text())["init"] == str(tmp_path / "zoobot")


def test_init_from_a_galaxymorph_run_of_another_tree(tmp_path):
    torch.manual_seed(2)
    first = GalaxyModel("gz2", arch=ARCH, preprocessing=ToyDataModule(n=4).preprocessing, input_mean=0.4, input_std=0.2)
    save_model(first, tmp_path / "gz2" / "best")
    model = load_model(train_from(tmp_path / "gz2", tmp_path / "run"))
    assert_encoder_parameters_equal(model, first.encoder)
    assert model.schema == TOY_SCHEMA and model.head.linear.out_features == TOY_SCHEMA.n_answers
    assert (model.config["input_mean"], model.config["input_std"]) == (0.4, 0.2)  # as the encoder was trained


def test_another_architecture_is_refused_naming_the_fix(tmp_path):
    timm_folder(tmp_path / "resnet", "test_resnet")
    with pytest.raises(ConfigError, match="--init .* holds a test_resnet encoder but --arch is test_efficientnet; "
                                               "use --arch test_resnet"):
        train_from(tmp_path / "resnet", tmp_path / "run")
    assert not (tmp_path / "run" / "best").exists()


def test_cli_init_from_a_folder_that_is_neither_kind_is_one_error_line(tmp_path, toy_shards):
    result = CliRunner().invoke(app, ["train", "--shards", str(toy_shards), "--out", str(tmp_path / "run"),
                                      "--init", str(tmp_path)])
    assert result.exit_code == 2
    assert "neither a galaxymorph run" in result.output and len(result.output.strip().splitlines()) == 1
