"""``galaxymorph train``: train the Bayesian CNN on shards; re-run the same command to resume."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from galaxymorph.models import TrainConfig, TrainConfigError, UnknownArchitectureError
from galaxymorph.models import train as run_training

_DEFAULTS = TrainConfig(shards="", out="")


def train(
    shards: Path = typer.Option(None, help="Shard folder (with manifest.json) from `galaxymorph shard`."),
    out: Path = typer.Option(None, help="Run folder: best/ model, checkpoints/, metrics.csv."),
    arch: str = typer.Option(None, help=f"Any timm architecture. (default {_DEFAULTS.arch})"),
    size: int = typer.Option(None, help="Model input px. (default the shards' image size)"),
    channels: int = typer.Option(None, help="1 or 3. (default the shards' channels)"),
    epochs: int = typer.Option(None, help=f"(default {_DEFAULTS.epochs})"),
    batch_size: int = typer.Option(None, help=f"Per device. (default {_DEFAULTS.batch_size})"),
    lr: float = typer.Option(None, help=f"AdamW learning rate. (default {_DEFAULTS.lr})"),
    devices: int = typer.Option(None, help="Data-parallel processes (DDP; gloo on CPU). (default 1)"),
    max_time: str = typer.Option(None, help="Stop after this much training, HH:MM:SS."),
    checkpoint_minutes: float = typer.Option(
        None, help=f"Also save last.ckpt this often mid-epoch. (default {_DEFAULTS.checkpoint_minutes})"
    ),
    num_workers: int = typer.Option(None, help=f"Loader workers per device. (default {_DEFAULTS.num_workers})"),
    seed: int = typer.Option(None, help=f"(default {_DEFAULTS.seed})"),
    schema: str = typer.Option(None, help="Refuse shards made for another tree than this one."),
    resume: bool = typer.Option(False, "--resume", help="Require RUN/checkpoints/last.ckpt and continue from it."),
    config: Path = typer.Option(None, help="YAML file with any of these settings (and more: see TrainConfig)."),
) -> None:
    """Train on shards, keep the best model by validation loss in RUN/best/.

    Killed at any moment, the same command continues from RUN/checkpoints/last.ckpt.
    """
    options = dict(
        shards=shards and str(shards), out=out and str(out), arch=arch, size=size, channels=channels,
        epochs=epochs, batch_size=batch_size, lr=lr, devices=devices, max_time=max_time,
        checkpoint_minutes=checkpoint_minutes, num_workers=num_workers, seed=seed, schema=schema,
    )
    err = Console(stderr=True)
    try:
        if config is not None:
            settings = TrainConfig.from_yaml(config, **options)
        else:
            settings = TrainConfig.from_dict({k: v for k, v in options.items() if v is not None}, source="options")
        best = run_training(settings, resume=resume)
    except (TrainConfigError, UnknownArchitectureError, FileNotFoundError) as error:
        err.print(f"[red]error:[/red] {error}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    Console().print(f"best model: {best}")
