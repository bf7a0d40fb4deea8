"""The library entry point behind ``galaxymorph train``: shards in, a resumable run folder out.

A run folder ``RUN/`` holds:
  ``best/``               the best model by validation loss (safetensors + config.json)
  ``checkpoints/last.ckpt`` Lightning state to resume from (every epoch and every N minutes)
  ``train_config.yaml``    the settings, checked again when the run is resumed
  ``logs/version_*/``      metrics of each attempt (CSV, and TensorBoard when installed)
  ``metrics.csv``          all attempts' metrics in one table
Running the same call again resumes from ``last.ckpt`` and ends with the same
number of optimiser steps as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
import yaml
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import DDPStrategy

from galaxymorph.models.checkpoint import save_model
from galaxymorph.models.galaxy_model import GalaxyModel
from galaxymorph.models.lightning_module import GalaxyLightningModule

__all__ = ["TrainConfig", "TrainConfigError", "train", "LAST_CHECKPOINT", "MONITOR"]

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
CONFIG_FILE = "train_config.yaml"
MONITOR = "val/loss"
# Settings that may change between attempts of one run without changing what is trained.
_RESUMABLE_CHANGES = {"devices", "num_workers", "max_time", "progress", "checkpoint_minutes", "compile", "out"}


class TrainConfigError(ValueError):
    """Settings that cannot train: the message names the setting and the fix."""


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; a YAML file with these keys can hold any of them."""

    shards: str
    out: str
    arch: str = "efficientnet_b0"
    size: int | None = None  # model input px; None: the shards' preprocessing image_size
    channels: int | None = None  # None: the shards' channels
    schema: str | None = None  # expected tree name; None: whatever the shards hold
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    dropout: float = 0.2
    cosine: bool = True
    warmup_fraction: float = 0.05
    grad_clip: float | None = 1.0
    patience: int = 5  # epochs without val-loss improvement before stopping
    precision: str = "32-true"  # or "bf16-mixed"
    compile: bool = False
    channels_last: bool = True
    seed: int = 0
    devices: int = 1
    num_workers: int = 2
    max_time: str | None = None  # HH:MM:SS
    checkpoint_minutes: float = 10.0
    progress: bool = True

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        """Settings from a YAML file, then ``overrides`` that are not None (command-line options)."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise TrainConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
        return cls.from_dict({**data, **{k: v for k, v in overrides.items() if v is not None}}, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "settings") -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainConfigError(f"{source}: unknown setting(s) {unknown}; valid: {sorted(known)}")
        missing = sorted(k for k in ("shards", "out") if data.get(k) is None)
        if missing:
            raise TrainConfigError(f"{source}: missing required setting(s) {missing}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs", "must be >= 1"),
            (self.batch_size >= 1, "batch_size", "must be >= 1"),
            (self.lr > 0, "lr", "must be > 0"),
            (self.devices >= 1, "devices", "must be >= 1"),
            (self.size is None or self.size >= 8, "size", "must be >= 8 px"),
            (self.channels in (None, 1, 3), "channels", "must be 1 or 3"),
            (0 <= self.warmup_fraction < 1, "warmup_fraction", "must be in [0, 1)"),
            (self.checkpoint_minutes > 0, "checkpoint_minutes", "must be > 0"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise TrainConfigError(f"{name}={getattr(self, name)!r} {rule}")
        _parse_max_time(self.max_time)


def train(config: TrainConfig, resume: bool = False, datamodule: L.LightningDataModule | None = None) -> Path:
    """Train (or resume) a run; returns ``RUN/best``, the best model by validation loss.

    Args:
        config: the settings; ``config.out`` is the run folder.
        resume: require ``RUN/checkpoints/last.ckpt`` (an error if absent). Without
            it a run still resumes when that file exists, so re-running the same
            command after a crash continues.
        datamodule: use this instead of building a ``GalaxyDataModule`` from
            ``config.shards``; it must expose ``.schema`` and ``.preprocessing``.
    """
    config.validate()
    run = Path(config.out)
    last = run / LAST_CHECKPOINT
    if resume and not last.is_file():
        raise TrainConfigError(f"--resume: no checkpoint at {last}; drop --resume to start this run")
    _check_same_run(run, config, resuming=last.is_file())
    L.seed_everything(config.seed, workers=True, verbose=False)
    if datamodule is None:
        datamodule = _shard_datamodule(config)
    prep = datamodule.preprocessing
    prep_dict = prep.to_dict() if hasattr(prep, "to_dict") else dict(prep)
    _check_data(config, datamodule.schema, prep_dict)
    model = GalaxyModel(
        datamodule.schema,
        arch=config.arch,
        channels=config.channels or prep_dict["channels"],
        dropout=config.dropout,
        image_size=prep_dict["image_size"],
        preprocessing=prep_dict,
        channels_last=config.channels_last,
    )
    if config.compile:
        model.encoder.compile()
    module = GalaxyLightningModule(
        model, lr=config.lr, weight_decay=config.weight_decay, cosine=config.cosine, warmup_fraction=config.warmup_fraction
    )
    trainer = _trainer(config, run)
    if trainer.is_global_zero:
        run.mkdir(parents=True, exist_ok=True)
        (run / CONFIG_FILE).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    trainer.fit(module, datamodule=datamodule, ckpt_path=last if last.is_file() else None, weights_only=True)
    if trainer.is_global_zero:
        _merge_metrics(run)
    return run / "best"


# ------------------------------------------------------------------------------ data
def _shard_datamodule(config: TrainConfig) -> L.LightningDataModule:
    from galaxymorph.data.datamodule import GalaxyDataModule
    from galaxymorph.data.shards import read_manifest

    shards = Path(config.shards)
    if not (shards / "manifest.json").is_file():
        raise TrainConfigError(f"--shards {shards}: no manifest.json there; make shards first (galaxymorph data shards)")
    manifest = read_manifest(shards)
    stored = manifest["preprocessing"]
    size = config.size or stored.get("image_size") or stored["stored_size"]
    if size > stored["stored_size"]:
        raise TrainConfigError(
            f"--size {size} is larger than the {stored['stored_size']} px images stored in {shards}; "
            f"use --size {stored['stored_size']} or less, or remake the shards at a larger size"
        )
    return GalaxyDataModule(shards, batch_size=config.batch_size, num_workers=config.num_workers, image_size=size)


def _check_data(config: TrainConfig, schema, prep: dict[str, Any]) -> None:
    """The settings agree with what the shards hold (schema, channels, image size)."""
    if config.schema is not None and config.schema != schema.name:
        raise TrainConfigError(
            f"schema mismatch: --schema {config.schema} but {config.shards} holds votes for {schema.name!r} "
            f"({schema.n_answers} answers); make shards for {config.schema} or drop --schema"
        )
    if config.channels is not None and config.channels != prep["channels"]:
        raise TrainConfigError(
            f"--channels {config.channels} but {config.shards} holds {prep['channels']}-channel images; "
            f"use --channels {prep['channels']} or remake the shards"
        )
    if config.size is not None and config.size != prep["image_size"]:
        raise TrainConfigError(
            f"image size mismatch: --size {config.size} but the data module gives {prep['image_size']} px images"
        )


def _check_same_run(run: Path, config: TrainConfig, resuming: bool) -> None:
    """Resuming with other settings would silently mix two experiments: refuse, naming the setting."""
    saved_file = run / CONFIG_FILE
    if not (resuming and saved_file.is_file()):
        return
    saved = yaml.safe_load(saved_file.read_text())
    for key, value in config.to_dict().items():
        if key not in _RESUMABLE_CHANGES and saved.get(key) != value:
            raise TrainConfigError(
                f"{run} was started with {key}={saved.get(key)!r}, not {value!r}; "
                f"resume with the same settings (see {saved_file}) or choose a new --out"
            )


# --------------------------------------------------------------------------- trainer
class ExportBest(Callback):
    """Writes ``RUN/best`` (safetensors + JSON) whenever the validation loss improves."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.best = float("inf")

    def on_validation_end(self, trainer: L.Trainer, pl_module: GalaxyLightningModule) -> None:
        if trainer.sanity_checking or MONITOR not in trainer.callback_metrics:
            return
        loss = float(trainer.callback_metrics[MONITOR])
        if loss < self.best:
            self.best = loss
            if trainer.is_global_zero:
                save_model(pl_module.model, self.directory)
                info = {"val_loss": loss, "epoch": trainer.current_epoch, "global_step": trainer.global_step}
                (self.directory / "training.yaml").write_text(yaml.safe_dump(info))

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes beside the target then renames: a kill mid-save leaves the previous checkpoint intact."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        tmp = f"{path}.tmp"
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


def _trainer(config: TrainConfig, run: Path) -> L.Trainer:
    checkpoints = run / LAST_CHECKPOINT.parent
    callbacks: list[Callback] = [
        ExportBest(run / "best"),
        # Same file, two triggers: every epoch, and every N minutes mid-epoch.
        ModelCheckpoint(dirpath=checkpoints, filename="last", enable_version_counter=False),
        ModelCheckpoint(
            dirpath=checkpoints, filename="last", enable_version_counter=False,
            train_time_interval=timedelta(minutes=config.checkpoint_minutes),
        ),
        EarlyStopping(monitor=MONITOR, patience=config.patience),
    ]
    if config.progress:
        callbacks.append(RichProgressBar())
    loggers = [CSVLogger(run, name="logs", flush_logs_every_n_steps=10)]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run, name="logs", version=loggers[0].version))
    cpu = not torch.cuda.is_available()
    strategy: Any = "auto"
    if config.devices > 1:
        strategy = DDPStrategy(process_group_backend="gloo") if cpu else "ddp"
    return L.Trainer(
        accelerator="cpu" if cpu else "auto",
        devices=config.devices,
        strategy=strategy,
        max_epochs=config.epochs,
        max_time=_parse_max_time(config.max_time),
        precision=config.precision,
        gradient_clip_val=config.grad_clip,
        callbacks=callbacks,
        logger=loggers,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=config.progress,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        enable_model_summary=False,
    )


def _parse_max_time(text: str | None) -> timedelta | None:
    if text is None:
        return None
    parts = str(text).split(":")
    try:
        hours, minutes, seconds = (int(p) for p in parts)
    except ValueError:
        raise TrainConfigError(f"max_time={text!r} must be HH:MM:SS, e.g. 00:35:00") from None
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _merge_metrics(run: Path) -> None:
    """All attempts' CSV logs in one ``RUN/metrics.csv``, tagged by attempt (``version``)."""
    frames = [
        pd.read_csv(f).assign(version=int(f.parent.name.split("_")[-1]))
        for f in sorted((run / "logs").glob("version_*/metrics.csv"))
    ]
    if frames:
        pd.concat(frames, ignore_index=True).sort_values(["version", "step"]).to_csv(run / "metrics.csv", index=False)
