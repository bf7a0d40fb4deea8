"""The command line stays light to start: help and schemas must not wait for torch."""

import subprocess
import sys

import typer
from typer.testing import CliRunner

from galaxymorph.cli import app

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
