"""Encoders by hub name (``hf_hub:ORG/NAME``), offline, from a Hugging Face cache laid out by huggingface_hub.

The cache holds folders written by timm's own ``save_for_hf``, one as ``model.safetensors`` and
one as ``pytorch_model.bin`` (Zoobot's format), put there by the same huggingface_hub
functions ``hf_hub_download`` uses (``benchmarks/_shared.py::put_in_hub_cache``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from support import TIMM_ARCH as ARCH
from support import TOY_ARCH as INIT_ARCH
from support import assert_encoder_parameters_equal, timm_folder, train_from
from typer.testing import CliRunner

from benchmarks._shared import put_in_hub_cache
from galaxymorph.cli import app
from galaxymorph.data.transforms import eval_transform, preset_preprocessing
from galaxymorph.models import load_encoder, load_model
from galaxymorph.models.loading import read_timm_weights
from galaxymorph.representations import read_embeddings


def _saved_mean(folder: Path) -> list[float]:
    return json.loads((folder / "config.json").read_text())["pretrained_cfg"]["mean"]


def _publish(tmp_path: Path, cache: Path, repo_id: str, arch: str = ARCH, safe: bool = True) -> torch.nn.Module:
    """A timm-written folder put into ``cache`` as ``repo_id``; returns the model it holds."""
    source = timm_folder(tmp_path / repo_id, arch, safe_serialization=safe)
    put_in_hub_cache(tmp_path / repo_id, repo_id, cache)
    return source


def _assert_same_weights(encoder: torch.nn.Module, source: torch.nn.Module) -> None:
    reference = source.state_dict()
    for name, value in encoder.state_dict().items():
        assert torch.equal(value, reference[name]), name


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_hub_names_load_offline_from_the_cache(hub_offline, tmp_path, safe):
    source = _publish(tmp_path, hub_offline, "someone/encoder", safe=safe)
    pretrained = load_encoder("hf_hub:someone/encoder")
    _assert_same_weights(pretrained.encoder, source)
    name, commit = pretrained.config["source"].split("@")
    assert name == "hf_hub:someone/encoder" and len(commit) == 40  # the snapshot, so the run can be reproduced
    assert pretrained.config["preprocessing"] == preset_preprocessing("galaxymorph").to_dict()
    assert pretrained.config["input_mean"] == _saved_mean(tmp_path / "someone/encoder")  # a plain timm encoder: its own
    again = load_encoder(f"hf_hub:someone/encoder@{commit}")  # a revision, as timm's hf_hub:ORG/NAME@REV
    _assert_same_weights(again.encoder, source)


def test_zoobot_encoders_are_fed_as_zoobot_feeds_them(hub_offline, tmp_path):
    _publish(tmp_path, hub_offline, "mwalmsley/zoobot-encoder-tiny", safe=False)
    zoobot = load_encoder("hf_hub:mwalmsley/zoobot-encoder-tiny").config
    assert zoobot["preprocessing"] == preset_preprocessing("zoobot").to_dict()  # 224 px, zoobot's reader
    assert (zoobot["input_mean"], zoobot["input_std"]) == (0.0, 1.0)  # [0, 1] images, no ImageNet statistics
    chosen = load_encoder("hf_hub:mwalmsley/zoobot-encoder-tiny", preprocessing="galaxymorph", image_size=32).config
    assert chosen["input_mean"] == _saved_mean(tmp_path / "mwalmsley/zoobot-encoder-tiny") != 0.0
    assert chosen["preprocessing"]["image_size"] == 32


def test_a_name_neither_cached_nor_downloadable_is_one_line_naming_the_download(hub_offline, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"hf_hub:nobody/nothing is not in the Hugging Face cache .* "
                                                r"\(HF_HUB_OFFLINE is set\); .*`hf download nobody/nothing`"):
        load_encoder("hf_hub:nobody/nothing")
    folder = tmp_path / "partial"
    timm_folder(folder)
    (folder / "model.safetensors").unlink()  # the config cached, its weights not
    put_in_hub_cache(folder, "someone/partial", hub_offline)
    with pytest.raises(FileNotFoundError, match="hf download someone/partial"):
        load_encoder("hf_hub:someone/partial")


def test_a_bin_is_read_with_weights_only(tmp_path):
    folder = tmp_path / "bin"
    timm_folder(folder, safe_serialization=False)
    assert set(read_timm_weights(folder)) == set(timm_folder(tmp_path / "st").state_dict())
    torch.save(argparse.Namespace(weights=1), folder / "pytorch_model.bin")  # plain torch.load would run this pickle
    with pytest.raises(ValueError, match="weights_only=True refused it"):
        read_timm_weights(folder)
    torch.save({"state_dict": {"w": torch.ones(1)}, "epoch": 3}, folder / "pytorch_model.bin")  # a checkpoint
    with pytest.raises(ValueError, match="not a state dict"):
        read_timm_weights(folder)


def test_finetune_from_a_bin_on_the_hub_keeps_safetensors(hub_offline, tmp_path, toy_catalogue):
    source = _publish(tmp_path, hub_offline, "someone/encoder", safe=False)
    result = CliRunner().invoke(app, ["finetune", "--checkpoint", "hf_hub:someone/encoder", "--catalog", str(toy_catalogue),
                                      "--out", str(tmp_path / "ft"), "--label-col", "ring", "--epochs", "1",
                                      "--image-size", "16", "--lr", "1e-12"])
    assert result.exit_code == 0, result.output
    files = {p.name for p in (tmp_path / "ft").rglob("*") if p.is_file()}
    assert "model.safetensors" in files and not any(name.endswith((".bin", ".pth")) for name in files)
    model = load_model(tmp_path / "ft")
    assert model.config["pretrained_from"].startswith("hf_hub:someone/encoder@")
    assert set(load_file(str(tmp_path / "ft" / "best" / "model.safetensors"))) >= {f"encoder.{k}" for k in model.encoder.state_dict()}
    _assert_same_weights(model.encoder, source)  # lr 1e-12: where it started


def test_train_init_from_a_hub_name(hub_offline, tmp_path):
    source = _publish(tmp_path, hub_offline, "someone/init", INIT_ARCH)
    model = load_model(train_from("hf_hub:someone/init", tmp_path / "run"))
    assert_encoder_parameters_equal(model, source)
    assert model.config["pretrained_from"] == "hf_hub:someone/init"


def test_embed_an_encoder_alone_by_hub_name(hub_offline, tmp_path):
    _publish(tmp_path, hub_offline, "someone/encoder")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(images / f"g{i}.png")
    out = tmp_path / "e.parquet"
    result = CliRunner().invoke(app, ["embed", "--checkpoint", "hf_hub:someone/encoder", "--images", str(images),
                                      "--out", str(out), "--preprocessing", "zoobot", "--image-size", "32"])
    assert result.exit_code == 0, result.output
    frame, vectors, meta = read_embeddings(out)
    assert meta["checkpoint"] == "hf_hub:someone/encoder" and meta["preprocessing"]["reader"] == "zoobot"
    pretrained = load_encoder("hf_hub:someone/encoder", preprocessing="zoobot", image_size=32).eval()
    prep = preset_preprocessing("zoobot", 32)
    pixels = torch.stack([torch.from_numpy(prep.read(images / f"{i}.png")).permute(2, 0, 1) for i in frame["id_str"]])
    with torch.no_grad():
        expected = pretrained.encoder(eval_transform(prep)(pixels))  # zoobot: no mean/std before the encoder
    np.testing.assert_allclose(vectors, expected.numpy(), rtol=1e-5, atol=1e-5)
