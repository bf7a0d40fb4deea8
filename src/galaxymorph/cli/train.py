"""``galaxymorph train``: train the Bayesian CNN on shards; re-run the same command to resume."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def train(
    shards: str = typer.Option(None, help="Shard folder from `galaxymorph shard`, or its URL (https://..., gs://..., "
                                "or a pipe: command with {name}; see docs/training.md)."),
    out: Path = typer.Option(None, help="Run folder: best/ model, checkpoints/, metrics.csv."),
    arch: str = typer.Option(None, help="Any timm architecture. (default efficientnet_b0)"),
    init: str = typer.Option(None, help="Start the encoder from a galaxymorph RUN/, a Hugging Face style timm folder "
                              "or hf_hub:ORG/NAME (same --arch); the head is new."),
    size: int = typer.Option(None, help="Model input px. (default the shards' image size)"),
    channels: int = typer.Option(None, help="1 or 3. (default the shards' channels)"),
    epochs: int = typer.Option(None, help="(default 10)"),
    batch_size: int = typer.Option(None, help="Per device. (default 64)"),
    lr: float = typer.Option(None, help="AdamW learning rate. (default 0.001)"),
    accelerator: str = typer.Option(None, help="auto | cpu | gpu | mps. (default auto)"),
    devices: int = typer.Option(None, help="Data-parallel processes (DDP; gloo on CPU). (default 1)"),
    precision: str = typer.Option(None, help="Lightning precision: 32-true, bf16-mixed, 16-mixed. (default 32-true)"),
    max_time: str = typer.Option(None, help="Stop after this much training, HH:MM:SS."),
    checkpoint_minutes: float = typer.Option(
        None, help="Also save last.ckpt this often mid-epoch. (default 10.0)"
    ),
    workers: int = typer.Option(None, "--workers", "--num-workers", help="Loader workers per device. (default 2)"),
    seed: int = typer.Option(None, help="(default 0)"),
    schema: str = typer.Option(None, help="Refuse shards made for another tree than this one."),
    resume: bool = typer.Option(False, "--resume", help="Require RUN/checkpoints/last.ckpt and continue from it."),
    config: Path = typer.Option(None, help="YAML file with any of these settings (and more: see TrainConfig)."),
) -> None:
    """Train on shards, keep the best model by validation loss in RUN/best/.

    Killed at any moment, the same command continues from RUN/checkpoints/last.ckpt.
    """
    from galaxymorph.training import TrainConfig
    from galaxymorph.training import train as run_training

    options = dict(
        shards=shards, out=out and str(out), arch=arch, init=init, size=size, channels=channels,
        epochs=epochs, batch_size=batch_size, lr=lr, accelerator=accelerator, devices=devices,
        precision=precision, max_time=max_time,
        checkpoint_minutes=checkpoint_minutes, workers=workers, seed=seed, schema=schema,
    )
    if config is not None:
        settings = TrainConfig.from_yaml(config, **options)
    else:
        settings = TrainConfig.from_dict({k: v for k, v in options.items() if v is not None}, source="options")
    best = run_training(settings, resume=resume)
    Console().print(f"best model: {best}")
