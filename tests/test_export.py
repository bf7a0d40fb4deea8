"""``galaxymorph export``: a run's encoder as a timm / Hugging Face folder that timm loads and computes the same features with."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import timm
import torch
from typer.testing import CliRunner

from benchmarks._shared import put_in_hub_cache
from galaxymorph.cli import app
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.models import FinetunedModel, GalaxyModel, export_encoder, load_encoder, load_model, save_model
from galaxymorph.outputs import OutputInUse

PREP = Preprocessing(stored_size=24, image_size=20, source_crop=0.8, channels=3).to_dict()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("run")
    save_model(GalaxyModel("gz2", arch="test_resnet", preprocessing=PREP, input_mean=0.4, input_std=0.2), folder / "best")
    return folder


def _timm_features(encoder: torch.nn.Module, folder: Path, x: torch.Tensor) -> torch.Tensor:
    """Features as a timm user computes them: inputs normalised with the config's mean and std, nothing else."""
    cfg = json.loads((folder / "config.json").read_text())["pretrained_cfg"]
    mean, std = (torch.tensor(cfg[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        return encoder.eval()((x - mean) / std)


def test_timm_loads_the_export_and_computes_the_run_features(run, tmp_path, hub_offline):
    folder = export_encoder(run, tmp_path / "exported")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    (tmp_path / "plain.txt").touch()  # the mode of any new file (safetensors writes 0600: others could not load it)
    plain = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {plain}
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "test_resnet" and config["num_features"] == 96
    cfg = config["pretrained_cfg"]
    assert (cfg["mean"], cfg["std"], cfg["input_size"]) == ([0.4] * 3, [0.2] * 3, [3, 20, 20])
    assert cfg["crop_pct"] == pytest.approx(0.8 * 0.75)  # source_crop x eval_zoom, of the original frame
    assert "tag" not in cfg and "license" not in cfg  # not timm's ImageNet weights, so not their tag
    ours = load_model(run)
    x = torch.rand(2, 3, 20, 20)
    with torch.no_grad():
        expected = ours.features(x)
    local = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0)
    torch.testing.assert_close(_timm_features(local, folder, x), expected, rtol=1e-5, atol=1e-5)
    put_in_hub_cache(folder, "someone/exported", hub_offline)  # as if uploaded and downloaded again
    hub = timm.create_model("hf_hub:someone/exported", pretrained=True, num_classes=0)
    torch.testing.assert_close(_timm_features(hub, folder, x), expected, rtol=1e-5, atol=1e-5)
    back = load_encoder(folder)  # and back into galaxymorph: fed exactly as the run was
    assert back.config["preprocessing"] == PREP and back.config["input_mean"] == [0.4] * 3
    with torch.no_grad():
        torch.testing.assert_close(back.eval().features(x), expected, rtol=1e-5, atol=1e-5)


def test_a_fine_tuned_run_exports_its_encoder(run, tmp_path):
    tuned = FinetunedModel.create(load_encoder(run), "classification", classes=["a", "b"])
    save_model(tuned, tmp_path / "ft" / "best")
    folder = export_encoder(tmp_path / "ft", tmp_path / "exported")
    local = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0)
    x = torch.rand(2, 3, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(_timm_features(local, folder, x), tuned.eval().features(x), rtol=1e-5, atol=1e-5)


def test_export_writes_only_new_empty_or_its_own_folders(run, tmp_path):
    before = (run / "best" / "model.safetensors").read_bytes()
    with pytest.raises(OutputInUse, match="galaxymorph export did not write"):
        export_encoder(run, run / "best")
    assert (run / "best" / "model.safetensors").read_bytes() == before
    export_encoder(run, tmp_path / "exported")
    export_encoder(run, tmp_path / "exported")  # its own earlier export: written again
    (tmp_path / "exported" / "model.safetensors").write_bytes(before)  # weights of another model beside its config
    with pytest.raises(ValueError, match="not the file config.json was exported with"):
        load_encoder(tmp_path / "exported")


def test_cli_export(run, tmp_path):
    result = CliRunner().invoke(app, ["export", str(run), str(tmp_path / "exported")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "exported" / "model.safetensors").is_file()
