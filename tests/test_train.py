"""Training on a toy data module (``support.ToyDataModule``): learning, the run folder, resume after SIGKILL, DDP,
bad settings."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from support import TOY_SCHEMA, ToyDataModule, toy_config
from support import TOY_SIZE as SIZE

from galaxymorph.models import UnknownArchitectureError, load_model
from galaxymorph.schema import Question, Schema
from galaxymorph.training import ConfigError, TrainConfig, train


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine, more threads spin against each other (10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_loss_decreases_and_the_run_folder_holds_the_best_model(tmp_path, toy_shards):
    best = train(toy_config(tmp_path / "run", shards=str(toy_shards), epochs=5, batch_size=8, train_shift=0.05))
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    val = metrics.dropna(subset=["val/loss"])
    assert len(val) == 5
    assert val["val/loss"].iloc[-1] < val["val/loss"].iloc[0]
    assert {"train/loss_epoch", "train/loss_shape", "train/loss_bar", "val/loss_shape", "val/loss_bar"} <= set(metrics)
    per_question = val["val/loss_shape"] + val["val/loss_bar"]
    assert per_question.to_numpy() == pytest.approx(val["val/loss"].to_numpy(), rel=1e-4)
    model = load_model(best)
    assert model.schema == TOY_SCHEMA and model.config["image_size"] == SIZE
    assert model.config["preprocessing"]["train_shift"] == 0.05  # the setting reached the training transform
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    # best = the epoch with the lowest val loss, not the last one
    import yaml

    info = yaml.safe_load((best / "training.yaml").read_text())
    assert info["val_loss"] == pytest.approx(val["val/loss"].min(), rel=1e-5)


@pytest.mark.parametrize(
    "settings, error, match",
    [
        (dict(arch="resnet_10t"), UnknownArchitectureError, "closest: resnet10t"),
        (dict(schema="gz2"), ConfigError, "schema mismatch: --schema gz2 .* 'toy'"),
        (dict(size=64), ConfigError, "image size mismatch: --size 64 .* 32 px"),
        (dict(channels=1), ConfigError, "--channels 1 .* 3-channel"),
        (dict(max_time="35 minutes"), ConfigError, "HH:MM:SS"),
        (dict(epochs=0), ConfigError, "epochs=0"),
        (dict(train_shift=0.8), ConfigError, "train_shift=0.8 must be in"),
        (dict(ema_decay=1.0), ConfigError, "ema_decay=1.0 must be in"),
    ],
)
def test_bad_settings_fail_with_a_clear_message(tmp_path, settings, error, match):
    with pytest.raises(error, match=match):
        train(toy_config(tmp_path / "run", **settings), datamodule=ToyDataModule(n=8))


def test_resume_refuses_other_settings_and_a_missing_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint at"):
        train(toy_config(tmp_path / "run"), resume=True, datamodule=ToyDataModule(n=8))
    train(toy_config(tmp_path / "run", epochs=1), datamodule=ToyDataModule(n=8))
    with pytest.raises(ConfigError, match="started with lr=0.003, not 0.1"):
        train(toy_config(tmp_path / "run", epochs=1, lr=0.1), datamodule=ToyDataModule(n=8))
    other = ToyDataModule(n=8)
    other.schema = Schema("other", [Question("shape", ("round", "disk", "edge"))])
    with pytest.raises(ConfigError, match="schema mismatch: .* trained on 'toy' .* holds 'other'"):
        train(toy_config(tmp_path / "run", epochs=1), datamodule=other)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--schema", "gz2"], "schema mismatch: --schema gz2 but .* holds votes for 'toy'"),
        (["--size", "64"], "image size mismatch: --size 64 is larger than the 32 px images stored"),
        (["--arch", "efficientnet_b9"], "unknown architecture 'efficientnet_b9'; closest: "),
    ],
)
def test_command_line_reports_bad_settings_in_one_line(tmp_path, toy_shards, options, message):
    from typer.testing import CliRunner

    from galaxymorph.cli import app

    result = CliRunner().invoke(app, ["train", "--shards", str(toy_shards), "--out", str(tmp_path / "run"), *options])
    assert result.exit_code == 2
    assert re.search(message, " ".join(result.output.split()))


def test_command_line_trains_from_shards_streamed_through_a_url_template(tmp_path, toy_shards):
    from typer.testing import CliRunner

    from galaxymorph.cli import app

    source = f"pipe:cat {toy_shards}/{{name}}"  # as `pipe:aws s3 cp s3://bucket/shards/{name} -` would
    result = CliRunner().invoke(app, ["train", "--shards", source, "--out", str(tmp_path / "run"), "--arch",
                                      "test_efficientnet", "--epochs", "1", "--batch-size", "8", "--num-workers", "0"])
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "run" / "best").schema == TOY_SCHEMA


def test_mixed_precision_trains(tmp_path):
    best = train(toy_config(tmp_path / "run", epochs=1, precision="bf16-mixed"), datamodule=ToyDataModule(n=16))
    assert load_model(best).config["arch"] == "test_efficientnet"


def test_config_file_and_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("shards: s\nout: o\narch: resnet10t\nepochs: 3\n")
    config = TrainConfig.from_yaml(tmp_path / "c.yaml", epochs=5, lr=None)
    assert (config.arch, config.epochs, config.lr) == ("resnet10t", 5, TrainConfig.lr)
    (tmp_path / "bad.yaml").write_text("shards: s\nout: o\nepoch: 3\n")
    with pytest.raises(ConfigError, match="unknown setting.*'epoch'"):
        TrainConfig.from_yaml(tmp_path / "bad.yaml")


# --------------------------------------------------------------- kill and resume, DDP
def _train_command(shards: Path, run: Path, devices: int) -> list[str]:
    galaxymorph = Path(sys.executable).with_name("galaxymorph")
    return [
        str(galaxymorph), "train", "--shards", str(shards), "--out", str(run), "--arch", "resnet10t",
        "--epochs", "3", "--batch-size", "4", "--num-workers", "0", "--checkpoint-minutes", "0.003",
        "--devices", str(devices),
    ]


def _start(command: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _global_step(run: Path) -> int:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["global_step"]


@pytest.mark.slow
@pytest.mark.parametrize("devices", [1, 2])
def test_killed_mid_epoch_then_rerun_ends_with_the_uninterrupted_step_count(tmp_path, toy_shards, devices):
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    train_count = json.loads((toy_shards / "manifest.json").read_text())["splits"]["train"]["count"]
    steps_per_epoch = math.ceil(train_count / 4) if devices == 1 else train_count // (4 * devices)
    command = _train_command(toy_shards, run, devices)

    proc = _start(command)
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        if last.is_file() and _global_step(run) % steps_per_epoch:  # a mid-epoch checkpoint
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before it could be killed:\n" + proc.stdout.read().decode()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: every DDP rank
    proc.wait()
    assert 0 < _global_step(run) < 3 * steps_per_epoch

    rerun = _start(command)  # the same command resumes
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out.decode()[-3000:]
    assert _global_step(run) == 3 * steps_per_epoch
    assert load_model(run).config["arch"] == "resnet10t"
    assert pd.read_csv(run / "metrics.csv")["version"].max() == 1  # the second attempt logs apart


class _RecordBatches(L.Callback):
    """The galaxies of every optimiser step, by step."""

    def __init__(self):
        self.steps: dict[int, list[str]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.steps[trainer.global_step] = list(batch["id_str"])


class _Crash(RuntimeError):
    pass


class _CheckpointThenCrash(L.Callback):
    """Saves last.ckpt after ``step`` optimiser steps (as the mid-epoch timer would), then dies."""

    def __init__(self, step: int, path: Path):
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)
            raise _Crash


@pytest.mark.slow
def test_a_run_resumed_mid_epoch_trains_on_exactly_the_batches_of_an_uninterrupted_one(tmp_path, toy_shards):
    settings = dict(shards=str(toy_shards), epochs=2, batch_size=8, workers=2)
    whole = _RecordBatches()
    train(toy_config(tmp_path / "whole", **settings), callbacks=[whole])
    steps = len(whole.steps) // 2
    assert sorted(whole.steps) == list(range(2 * steps))
    seen = [i for s in range(steps) for i in whole.steps[s]]
    assert len(seen) == len(set(seen)) == json.loads((toy_shards / "manifest.json").read_text())["splits"]["train"]["count"]

    run = tmp_path / "interrupted"
    before = _RecordBatches()
    crash = _CheckpointThenCrash(steps + 2, run / "checkpoints" / "last.ckpt")  # two steps into the second epoch
    with pytest.raises(_Crash):
        train(toy_config(run, **settings), callbacks=[before, crash])
    after = _RecordBatches()
    train(toy_config(run, **settings), callbacks=[after])
    assert min(after.steps) == steps + 2
    resumed = {**{s: b for s, b in before.steps.items() if s < steps + 2}, **after.steps}
    assert resumed == whole.steps


def test_a_run_cut_short_by_max_time_says_so(tmp_path):
    with pytest.warns(UserWarning, match=r"stopped at --max-time 00:00:00 after 0 of 4 epochs.*longer --max-time"):
        train(toy_config(tmp_path / "run", max_time="00:00:00"), datamodule=ToyDataModule(n=16))


def _weights(best: Path) -> dict[str, torch.Tensor]:
    return load_model(best).state_dict()


def test_ema_exports_the_averaged_weights_that_were_validated(tmp_path):
    best = train(toy_config(tmp_path / "run", epochs=1, ema_decay=0.9), datamodule=ToyDataModule())
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    average = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}  # Lightning keeps the average here
    current = {k.removeprefix("model."): v for k, v in checkpoint["current_model_state"].items()}
    exported = _weights(best)
    assert all(torch.equal(exported[k], average[k]) for k in exported)
    assert not all(torch.equal(exported[k], current[k]) for k in exported)  # not the last step's weights


@pytest.mark.slow
@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_a_run_resumed_mid_epoch_ends_with_the_uninterrupted_weights(tmp_path, toy_shards, ema_decay):
    """Same batches, same augmentations and dropout masks (torch's generator travels in the checkpoint), same average.

    Loader workers and a third epoch: starting the loaders at other moments must not shift the generator.
    """
    settings = dict(shards=str(toy_shards), epochs=3, batch_size=8, workers=2, ema_decay=ema_decay)
    whole = _weights(train(toy_config(tmp_path / "whole", **settings)))
    run = tmp_path / "interrupted"
    with pytest.raises(_Crash):
        train(toy_config(run, **settings), callbacks=[_CheckpointThenCrash(11, run / "checkpoints" / "last.ckpt")])
    resumed = _weights(train(toy_config(run, **settings)))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    # the epoch that was resumed reports the means over all its steps, not only those after the resume
    epoch_means = ["train/loss_epoch", "train/loss_shape", "train/loss_bar"]
    logged = [pd.read_csv(r / "metrics.csv").dropna(subset=epoch_means).groupby("epoch")[epoch_means].last()
              for r in (tmp_path / "whole", run)]
    assert logged[0].index.tolist() == [0, 1, 2]
    assert logged[1].to_numpy() == pytest.approx(logged[0].to_numpy(), rel=1e-6)


def test_a_checkpoint_without_the_random_state_still_resumes(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(_Crash):
        train(toy_config(run, epochs=2), datamodule=ToyDataModule(),
              callbacks=[_CheckpointThenCrash(8, run / "checkpoints" / "last.ckpt")])
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    del checkpoint["torch_rng"]  # as written before the random state travelled
    torch.save(checkpoint, run / "checkpoints" / "last.ckpt")
    train(toy_config(run, epochs=2), datamodule=ToyDataModule())
    assert pd.read_csv(run / "metrics.csv").dropna(subset=["val/loss"])["epoch"].tolist() == [0, 1]


@pytest.mark.slow
def test_a_ddp_run_is_finished_on_every_validation_galaxy_as_one_process_would(tmp_path, toy_shards):
    """Calibration and the OOD reference after a 2-process (gloo) fit: the whole validation split, not rank 0's share."""
    import shutil

    from galaxymorph.data.datamodule import GalaxyDataModule
    from galaxymorph.engine import RunSettings
    from galaxymorph.training.finish import finish_run

    run = tmp_path / "run"
    command = [str(Path(sys.executable).with_name("galaxymorph")), "train", "--shards", str(toy_shards), "--out",
               str(run), "--arch", "resnet10t", "--epochs", "1", "--batch-size", "4", "--workers", "0",
               "--devices", "2", "--accelerator", "cpu"]
    done = subprocess.run(command, env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    finished = json.loads((run / "best" / "config.json").read_text())
    validation = json.loads((toy_shards / "manifest.json").read_text())["splits"]["val"]["count"]
    assert finished["ood"]["galaxies"] == validation

    alone = tmp_path / "alone"
    shutil.copytree(run / "best", alone)
    fitted = finish_run(alone, GalaxyDataModule(toy_shards, batch_size=4), run=RunSettings(accelerator="cpu",
                                                                                        progress=False))
    assert fitted["ood"] == finished["ood"]
    assert fitted["calibration"] == pytest.approx(finished["calibration"], rel=1e-6)


def test_a_short_run_gets_no_warning_about_its_logging_interval(tmp_path, recwarn):
    train(toy_config(tmp_path / "run", epochs=1), datamodule=ToyDataModule(n=16))  # 2 steps per epoch
    assert not [w for w in recwarn if "log_every_n_steps" in str(w.message)]
