"""The command line stays light to start: help and schemas must not wait for torch."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import click
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from galaxymorph.cli import RESUMABLE, app

COMMANDS = [
    "schemas", "fetch", "shard", "convert-kaggle", "train", "predict", "evaluate", "report", "demo",
    "simulate", "finetune", "embed", "similar", "anomalies", "export",
]


def test_cli_import_leaves_out_the_heavy_libraries():
    code = "import galaxymorph.cli, sys; print(sorted(m for m in ('torch','lightning','timm') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_help_lists_every_command():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in COMMANDS:
        assert command in result.output


def test_help_defaults_match_the_configs():
    """The option help writes the config defaults as literals (importing the configs would load torch)."""
    from galaxymorph.training import FinetuneConfig, TrainConfig

    commands = typer.main.get_command(app).commands
    checks = {
        "train": (TrainConfig(shards="", out=""),
                  ["arch", "epochs", "batch_size", "lr", "checkpoint_minutes", "workers", "seed", "accelerator",
                   "devices", "precision"]),
        "finetune": (FinetuneConfig(checkpoint="", catalogue="", out=""),
                     ["epochs", "batch_size", "lr", "layer_decay", "dropout", "patience", "val_fraction", "image_size",
                      "accelerator", "devices", "precision"]),
    }
    for command, (defaults, names) in checks.items():
        helps = {param.name: param.help for param in commands[command].params}
        for name in names:
            assert f"(default {getattr(defaults, name)})" in helps[name], (command, name)


# --- Ctrl-C: one line, exit code 130, and for a command that resumes, how to resume ---------------------------

def _ctrl_c() -> None:
    """What pressing Ctrl-C does to this process: SIGINT, handled by whatever handler is installed."""
    os.kill(os.getpid(), signal.SIGINT)


def _train_as_lightning_does(settings, resume=False):
    """A real Lightning fit stopped by Ctrl-C: Lightning catches the KeyboardInterrupt and calls sys.exit(1)."""
    import lightning as L
    import torch

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.ones(8, 1), batch_size=2)

    class CtrlC(L.Callback):
        def on_train_batch_start(self, *args):
            _ctrl_c()

    L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, callbacks=[CtrlC()]).fit(Tiny())
    raise AssertionError("Lightning did not stop")


@pytest.mark.parametrize("command, library, stop, resumes", [
    ("train", "galaxymorph.training.train", _train_as_lightning_does, True),
    ("shard", "galaxymorph.data.shards.write_shards", lambda *a, **k: _ctrl_c(), True),
    ("evaluate", "galaxymorph.evaluation.evaluate", lambda *a, **k: _ctrl_c(), False),
])
def test_ctrl_c_says_it_stopped_and_how_to_resume_with_exit_code_130(monkeypatch, tmp_path, command, library, stop,
                                                                       resumes):
    monkeypatch.setattr(library, stop)
    handler = signal.getsignal(signal.SIGINT)
    args = {"train": ["--shards", str(tmp_path), "--out", str(tmp_path / "run")],
            "shard": ["--catalog", "c.csv", "--schema", "gz2", "--out", str(tmp_path / "s")],
            "evaluate": ["--predictions", "p.parquet", "--catalog", "c.csv"]}[command]
    result = CliRunner().invoke(app, [command, *args])
    assert result.exit_code == 130, result.output
    assert "Traceback" not in result.output and "Aborted" not in result.output
    assert result.output.strip().splitlines()[-1] == "stopped by Ctrl-C" + (
        "; run the same command again to resume" if resumes else "")
    assert signal.getsignal(signal.SIGINT) is handler  # Lightning's "ignore further Ctrl-C" does not outlive the command


def test_every_command_is_guarded_and_the_resumable_ones_are_those_of_the_refusals_page():
    for command in typer.main.get_command(app).commands.values():
        callbacks = command.commands.values() if isinstance(command, click.Group) else [command]
        assert all(hasattr(c.callback, "__wrapped__") for c in callbacks), command.name
    page = (Path(__file__).resolve().parents[1] / "docs" / "refusals.md").read_text()
    rows = [line.split("|")[1:3] for line in page.splitlines() if line.startswith("| `")]
    resuming = {name for names, rerun in rows if re.search(r"\b(keeps|continues|skips|resumes)\b", rerun)
                for name in re.findall(r"`([a-z-]+)`", names)}
    assert resuming == RESUMABLE


def test_similar_says_when_k_is_more_than_the_galaxies(tmp_path):
    import numpy as np

    from galaxymorph.representations.embed import _embedding_table, embedding_layout

    layout = embedding_layout(4, {"made_by": {}})
    vectors = np.random.default_rng(0).normal(size=(3, 4))
    pq.write_table(_embedding_table(["a", "b", "c"], vectors, [None] * 3, layout), tmp_path / "e.parquet")
    result = CliRunner().invoke(app, ["similar", "--embeddings", str(tmp_path / "e.parquet"), "--query", "a", "--k", "8"])
    assert result.exit_code == 0, result.output
    assert f"note: --k 8 is more than the 3 galaxies in {tmp_path / 'e.parquet'}: all of them are shown" in (
        " ".join(result.output.split()))
