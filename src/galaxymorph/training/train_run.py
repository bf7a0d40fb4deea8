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

import importlib.util
import json
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import timm
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from galaxymorph.accelerators import pin_memory
from galaxymorph.engine import ConfigError, build_trainer
from galaxymorph.models import load_encoder
from galaxymorph.models.galaxy_model import GalaxyModel
from galaxymorph.quiet import quiet_lightning
from galaxymorph.schema import Schema, get_schema
from galaxymorph.training.callbacks import (
    MONITOR,
    ExportBest,
    TrainingProgress,
    WeightsEMA,
)
from galaxymorph.training.config import (
    TRAIN_CONFIG_FILE,
    TrainConfig,
    claim_run,
    parse_max_time,
    save_settings,
)
from galaxymorph.training.finish import finish_run
from galaxymorph.training.galaxy_module import GalaxyLightningModule

__all__ = ["train", "LAST_CHECKPOINT"]

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def train(
    config: TrainConfig,
    resume: bool = False,
    datamodule: L.LightningDataModule | None = None,
    callbacks: list[Callback] | None = None,
) -> Path:
    """Train (or resume) a run; returns ``RUN/best``, the best model by validation loss.

    Args:
        config: the settings; ``config.out`` is the run folder.
        resume: require ``RUN/checkpoints/last.ckpt`` (an error if absent). Without
            it a run still resumes when that file exists, so re-running the same
            command after a crash continues.
        datamodule: use this instead of building a ``GalaxyDataModule`` from
            ``config.shards``; it must expose ``.schema`` and ``.preprocessing``.
        callbacks: extra Lightning callbacks (e.g. a ``Timer`` or a throughput probe).
    """
    config.validate()
    run = Path(config.out)
    last = run / LAST_CHECKPOINT
    if resume and not last.is_file():
        raise ConfigError(f"--resume: no checkpoint at {last}; drop --resume to start this run")
    claim_run(config, TRAIN_CONFIG_FILE)
    L.seed_everything(config.seed, workers=True, verbose=False)
    if config.threads:
        torch.set_num_threads(config.threads)
    if datamodule is None:
        datamodule = _shard_datamodule(config)
    prep = datamodule.preprocessing
    prep_dict = prep.to_dict() if hasattr(prep, "to_dict") else dict(prep)
    _check_data(config, run, datamodule.schema, prep_dict)
    model = _model(config, datamodule.schema, prep_dict)
    if config.compile:
        model.encoder.compile()
    module = GalaxyLightningModule(
        model, lr=config.lr, weight_decay=config.weight_decay, cosine=config.cosine, warmup_fraction=config.warmup_fraction
    )
    with quiet_lightning():
        trainer = _trainer(config, run, datamodule, _steps_per_epoch(datamodule, config), callbacks or [])
        if trainer.is_global_zero:
            save_settings(config, TRAIN_CONFIG_FILE)
        trainer.fit(module, datamodule=datamodule, ckpt_path=last if last.is_file() else None, weights_only=True)
    _warn_if_stopped_by_time(trainer, config)
    if trainer.is_global_zero:
        _merge_metrics(run)
        if (run / "best").is_dir():  # also when neither is asked: an earlier attempt's must not stay
            finish_run(run / "best", datamodule, config.calibrate, config.ood_reference, run=config.run(),
                       callbacks=callbacks)
    return run / "best"


# ----------------------------------------------------------------------------- model
def _model(config: TrainConfig, schema: Schema, prep: dict[str, Any]) -> GalaxyModel:
    """A new model for the tree being trained; with ``init``, its encoder (and input normalisation) from there."""
    channels = config.channels or prep["channels"]
    settings = dict(arch=config.arch, channels=channels, dropout=config.dropout, image_size=prep["image_size"],
                    preprocessing=prep, channels_last=config.channels_last)
    if config.init is None:
        return GalaxyModel(schema, **settings)
    try:
        pretrained = load_encoder(config.init, channels=channels)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"--init: {err}") from None
    found = pretrained.config["arch"]
    if timm.models.split_model_name_tag(found)[0] != timm.models.split_model_name_tag(config.arch)[0]:
        raise ConfigError(f"architecture mismatch: --init {config.init} holds a {found} encoder but --arch is "
                               f"{config.arch}; use --arch {found}")
    model = GalaxyModel(schema, **settings, input_mean=pretrained.config["input_mean"],
                        input_std=pretrained.config["input_std"], pretrained_from=config.init)
    missing, unexpected = model.encoder.load_state_dict(pretrained.encoder.state_dict(), strict=False)
    if missing or unexpected:
        raise ConfigError(f"--init {config.init}: its {found} weights do not fit a plain {config.arch} encoder "
                               f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    return model


# ------------------------------------------------------------------------------ data
def _shard_datamodule(config: TrainConfig) -> L.LightningDataModule:
    from galaxymorph.data.datamodule import GalaxyDataModule
    from galaxymorph.data.shards import (
        check_shards_per_process,
        is_shard_source,
        read_manifest,
        shard_paths,
    )
    from galaxymorph.data.transforms import Preprocessing

    shards = config.shards
    if not is_shard_source(shards):
        raise ConfigError(
            f"--shards {shards}: no manifest.json there; make shards first with "
            "`galaxymorph shard --catalog ... --schema ... --out DIR`"
        )
    manifest = read_manifest(shards)
    _check_schema(config, Schema.from_dict(manifest["schema"]))
    for split in ("val", "train"):  # before the run folder is claimed
        check_shards_per_process(split, len(shard_paths(shards, split, manifest)), config.devices * config.num_nodes)
    stored = Preprocessing.from_dict(manifest["preprocessing"])
    size = config.size or stored.image_size
    if size > stored.stored_size:
        raise ConfigError(
            f"image size mismatch: --size {size} is larger than the {stored.stored_size} px images stored in "
            f"{shards}; use --size {stored.stored_size} or less, or remake the shards at a larger size"
        )
    settings = {"image_size": size, "channels": config.channels or stored.channels}
    if config.train_shift is not None:
        settings["train_shift"] = config.train_shift
    prep = Preprocessing.from_dict({**stored.to_dict(), **settings})
    return GalaxyDataModule(
        shards, preprocessing=prep, batch_size=config.batch_size, num_workers=config.workers, seed=config.seed,
        pin_memory=pin_memory(config.accelerator),
    )


def _steps_per_epoch(datamodule: L.LightningDataModule, config: TrainConfig) -> int | None:
    """Batches per epoch of a shard stream, whose loader has no length; map-style loaders know theirs: None.

    Fixing it makes a resumed epoch stop where an uninterrupted one would and gives
    the cosine schedule its length.
    """
    if not getattr(datamodule, "is_shards", False):
        return None
    return datamodule.train_batches_per_epoch(config.world_size)


def _batches_per_epoch(datamodule: L.LightningDataModule, stream_steps: int | None) -> int | None:
    """Training batches per epoch, where known before fitting (a shard stream's, or a sized loader's)."""
    if stream_steps is not None:
        return stream_steps
    try:
        return len(datamodule.train_dataloader())
    except TypeError:  # an iterable loader of unknown length
        return None


def _check_schema(config: TrainConfig, schema: Schema) -> None:
    if config.schema is None:
        return
    try:
        expected = get_schema(config.schema)
    except KeyError as err:
        raise ConfigError(f"--schema: {err.args[0]}") from None
    if expected != schema:
        raise ConfigError(
            f"schema mismatch: --schema {config.schema} but {config.shards} holds votes for {schema.name!r} "
            f"({schema.n_answers} answers); make shards for {config.schema} or drop --schema"
        )


def _check_data(config: TrainConfig, run: Path, schema: Schema, prep: dict[str, Any]) -> None:
    """The settings (and a run being resumed) agree with what the data holds."""
    _check_schema(config, schema)
    best = run / "best" / "config.json"
    if best.is_file():
        trained = Schema.from_dict(json.loads(best.read_text())["schema"])
        if trained != schema:
            raise ConfigError(
                f"schema mismatch: {run} was trained on {trained.name!r} ({trained.n_answers} answers) but "
                f"{config.shards} holds {schema.name!r} ({schema.n_answers} answers); choose a new --out"
            )
    if config.channels is not None and config.channels != prep["channels"]:
        raise ConfigError(
            f"--channels {config.channels} but the data module gives {prep['channels']}-channel images"
        )
    if config.size is not None and config.size != prep["image_size"]:
        raise ConfigError(
            f"image size mismatch: --size {config.size} but the data module gives {prep['image_size']} px images"
        )


# --------------------------------------------------------------------------- trainer
def _trainer(config: TrainConfig, run: Path, datamodule: L.LightningDataModule, steps_per_epoch: int | None,
             extra: list[Callback]) -> L.Trainer:
    checkpoints = run / LAST_CHECKPOINT.parent
    callbacks: list[Callback] = [
        ExportBest(run / "best"),
        # Same file, two triggers: every epoch, and every N minutes mid-epoch.
        ModelCheckpoint(dirpath=checkpoints, filename="last", enable_version_counter=False),
        ModelCheckpoint(
            dirpath=checkpoints, filename="last", enable_version_counter=False,
            train_time_interval=timedelta(minutes=config.checkpoint_minutes),
        ),
        *([WeightsEMA(config.ema_decay)] if config.ema_decay else []),  # after ExportBest: see WeightsEMA
        EarlyStopping(monitor=MONITOR, patience=config.patience),
        *extra,
    ]
    if config.progress:
        callbacks.append(TrainingProgress())
    loggers = [CSVLogger(run, name="logs", flush_logs_every_n_steps=10)]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run, name="logs", version=loggers[0].version))
    return build_trainer(
        config, "fit", callbacks, _batches_per_epoch(datamodule, steps_per_epoch),
        max_epochs=config.epochs,
        limit_train_batches=steps_per_epoch or 1.0,
        max_time=parse_max_time(config.max_time),
        gradient_clip_val=config.grad_clip,
        logger=loggers,
    )


def _warn_if_stopped_by_time(trainer: L.Trainer, config: TrainConfig) -> None:
    """A run cut short by ``max_time`` must not look finished: a cluster user has to know to resubmit."""
    stopped_early = trainer.early_stopping_callback is not None and trainer.early_stopping_callback.stopped_epoch > 0
    if config.max_time and trainer.current_epoch < config.epochs and not stopped_early:
        warnings.warn(
            f"training stopped at --max-time {config.max_time} after {trainer.current_epoch} of {config.epochs} "
            f"epochs; best/ holds the best model so far. To train on, run the same command with a longer "
            "--max-time (it resumes from checkpoints/last.ckpt)", stacklevel=2)


def _merge_metrics(run: Path) -> None:
    """All attempts' CSV logs in one ``RUN/metrics.csv``, tagged by attempt (``version``)."""
    frames = [
        pd.read_csv(f).assign(version=int(f.parent.name.split("_")[-1]))
        for f in sorted((run / "logs").glob("version_*/metrics.csv"))
    ]
    if frames:
        pd.concat(frames, ignore_index=True).sort_values(["version", "step"]).to_csv(run / "metrics.csv", index=False)
