"""``accelerator`` / ``devices`` / ``precision`` reach Lightning in every model command; batches follow the model.

No GPU is needed: a CPU run with ``accelerator="cpu"`` shows the settings arrive, and
on a machine without CUDA ``accelerator="gpu"`` is refused in one line naming the fix.
"""

import functools

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from support import TinyModel, ToyDataModule, pixel_records, toy_config
from typer.testing import CliRunner

import galaxymorph.training.finetune_run as finetune_run
from galaxymorph.accelerators import check_accelerator, pin_memory
from galaxymorph.cli import app
from galaxymorph.prediction import predict_records
from galaxymorph.representations import embed, read_embeddings
from galaxymorph.training import ConfigError, FinetuneConfig, TrainConfig, train

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: 'gpu' is not refused here")


class RecordDevices(Callback):
    """What the Trainer runs on, and where each batch's images and the model's weights are."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, torch.device, torch.device]] = []
        self.stages: set[str] = set()

    def _record(self, trainer, pl_module, batch, stage: str) -> None:
        self.seen.append((type(trainer.accelerator).__name__, trainer.precision, batch["image"].device,
                          next(pl_module.parameters()).device))
        self.stages.add(stage)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._record(trainer, pl_module, batch, "train")

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._record(trainer, pl_module, batch, "predict")


def _assert_cpu_bf16(recorder: RecordDevices) -> None:
    assert recorder.seen
    for accelerator, precision, images, weights in recorder.seen:
        assert (accelerator, precision) == ("CPUAccelerator", "bf16-mixed")
        assert images == weights


@no_cuda
@pytest.mark.parametrize("check", [
    lambda: check_accelerator("gpu"),
    lambda: TrainConfig(shards="s", out="o", accelerator="gpu").validate(),
    lambda: FinetuneConfig("ckpt", "cat.csv", "out", label_col="y", accelerator="gpu").validate(),
], ids=["function", "train-config", "finetune-config"])
def test_an_absent_gpu_is_refused_in_one_line_naming_the_setting_and_the_fix(check):
    with pytest.raises(ValueError) as info:
        check()
    message = str(info.value)
    assert "\n" not in message and "accelerator='gpu'" in message and "--accelerator cpu" in message


def test_unknown_accelerators_and_device_counts_are_refused():
    with pytest.raises(ValueError, match="accelerator='tpu' must be one of auto, cpu, gpu, mps"):
        check_accelerator("tpu")
    with pytest.raises(ConfigError, match="devices=0 must be >= 1"):
        TrainConfig(shards="s", out="o", devices=0).validate()


def test_loaders_pin_memory_only_for_a_cuda_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not pin_memory("auto") and not pin_memory("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pin_memory("auto") and pin_memory("gpu") and not pin_memory("cpu") and not pin_memory("mps")


def test_train_settings_reach_the_trainer_and_batches_follow_the_model(tmp_path):
    """Training and its finishing pass (calibration, OOD reference) both run where the run was asked to."""
    recorder = RecordDevices()
    config = toy_config(tmp_path / "run", epochs=1, accelerator="cpu", precision="bf16-mixed")
    train(config, datamodule=ToyDataModule(n=16), callbacks=[recorder])
    _assert_cpu_bf16(recorder)
    assert recorder.stages == {"train", "predict"}


def test_train_yaml_takes_the_accelerator_and_a_resume_may_change_it(tmp_path):
    (tmp_path / "c.yaml").write_text("shards: s\nout: o\naccelerator: cpu\nprecision: bf16-mixed\n")
    config = TrainConfig.from_yaml(tmp_path / "c.yaml")
    assert (config.accelerator, config.precision) == ("cpu", "bf16-mixed")
    best = train(toy_config(tmp_path / "run", epochs=1, accelerator="cpu"), datamodule=ToyDataModule(n=16))
    train(toy_config(tmp_path / "run", epochs=1, accelerator="auto"), datamodule=ToyDataModule(n=16))
    assert best.is_dir()


def test_predict_settings_reach_the_trainer_and_batches_follow_the_model(tmp_path):
    recorder = RecordDevices()
    counts = predict_records(TinyModel(), functools.partial(pixel_records, 6), tmp_path / "p.parquet", samples=2,
                             batch_size=3, progress=False, accelerator="cpu", precision="bf16-mixed",
                             callbacks=[recorder])
    assert counts["rows"] == 6
    _assert_cpu_bf16(recorder)


def test_finetune_is_no_longer_tied_to_the_cpu(untrained_run, toy_catalogue, tmp_path, monkeypatch):
    built = []

    class Recording(finetune_run.L.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(finetune_run.L, "Trainer", Recording)
    config = FinetuneConfig(str(untrained_run), str(toy_catalogue), str(tmp_path / "ft"), label_col="ring", epochs=1,
                            progress=False, accelerator="cpu", precision="bf16-mixed")
    finetune_run.finetune(config)
    fit_then_calibrate = [("CPUAccelerator", "bf16-mixed")] * 2  # the calibration pass runs where training ran
    assert [(type(t.accelerator).__name__, t.precision) for t in built] == fit_then_calibrate


def test_embed_runs_in_the_precision_asked_for(untrained_run, twelve_galaxies, tmp_path):
    full = embed(untrained_run, tmp_path / "32.parquet", catalogue=twelve_galaxies, progress=False, accelerator="cpu")
    half = embed(untrained_run, tmp_path / "bf16.parquet", catalogue=twelve_galaxies, progress=False, accelerator="cpu",
                 precision="bf16-mixed")
    assert full["rows"] == half["rows"] == 12
    exact, rounded = read_embeddings(tmp_path / "32.parquet")[1], read_embeddings(tmp_path / "bf16.parquet")[1]
    assert not np.array_equal(exact, rounded)  # bf16 autocast ran
    np.testing.assert_allclose(rounded, exact, rtol=0.1, atol=0.05 * np.abs(exact).max())


@no_cuda
@pytest.mark.parametrize("command", ["train", "finetune", "predict", "embed"])
def test_cli_refuses_an_absent_gpu_in_one_line(command, untrained_run, twelve_galaxies, tmp_path):
    inputs = {"train": ["--shards", str(tmp_path)], "finetune": ["--checkpoint", str(untrained_run), "--catalog",
                                                                 str(twelve_galaxies), "--label-col", "y"]}
    default = ["--checkpoint", str(untrained_run), "--catalog", str(twelve_galaxies)]
    result = CliRunner().invoke(app, [command, *inputs.get(command, default), "--out", str(tmp_path / "o.parquet"),
                                      "--accelerator", "gpu"])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: accelerator='gpu'") and "--accelerator cpu" in line
