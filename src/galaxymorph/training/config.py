"""Training and fine-tuning settings as plain data: the keys of `--config FILE.yaml`, `TrainConfig` and `FinetuneConfig`."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import yaml

from galaxymorph.engine.settings import ConfigError, RunSettings
from galaxymorph.models.finetune_model import TASKS
from galaxymorph.outputs import claim_folder

__all__ = ["FINETUNE_TASKS", "FinetuneConfig", "FitSettings", "TrainConfig", "claim_run", "parse_max_time",
           "save_settings"]


@dataclasses.dataclass(kw_only=True)
class FitSettings(RunSettings):
    """What training and fine-tuning share: how long, how fast, how regularised, and where (:class:`RunSettings`)."""

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.05
    dropout: float = 0.2
    grad_clip: float | None = 1.0  # largest gradient norm (None: no clipping)
    patience: int = 5  # epochs without val-loss improvement before stopping
    seed: int = 0
    # after training, fit the posterior's spread on the validation split: one concentration scale per
    # question (train), a classifier's temperature (finetune)
    calibrate: bool = True

    def rules(self) -> list[tuple[bool, str, str]]:
        return [
            *super().rules(),
            (self.epochs >= 1, "epochs", "must be >= 1"),
            (self.lr > 0, "lr", "must be > 0"),
            (self.weight_decay >= 0, "weight_decay", "must be >= 0"),
            (0 <= self.dropout < 1, "dropout", "must be in [0, 1)"),
            (self.grad_clip is None or self.grad_clip > 0, "grad_clip", "must be > 0, or None for no clipping"),
            (self.patience >= 1, "patience", "must be >= 1"),
        ]


@dataclasses.dataclass
class TrainConfig(FitSettings):
    """Everything a training run needs; a YAML file with these keys can hold any of them."""

    shards: str
    out: str
    arch: str = "efficientnet_b0"
    init: str | None = None  # start the encoder from a galaxymorph run, a Hugging Face style timm folder or hf_hub:ORG/NAME
    size: int | None = None  # model input px; None: the shards' preprocessing image_size
    channels: int | None = None  # None: the shards' channels
    train_shift: float | None = None  # largest training-crop offset, fraction of the frame (0.5: anywhere); None: the shards' (0.03)
    schema: str | None = None  # expected tree name; None: whatever the shards hold
    cosine: bool = True
    warmup_fraction: float = 0.05
    ema_decay: float | None = None  # validate, export and keep an exponential moving average of the weights (e.g. 0.998)
    compile: bool = False
    channels_last: bool = True
    threads: int | None = None  # torch intra-op threads per process; None: torch's default
    max_time: str | None = None  # HH:MM:SS
    checkpoint_minutes: float = 10.0
    ood_reference: int = 4000  # validation galaxies kept for predict's ood_score (0: none, no ood_score column)
    workers: int = dataclasses.field(default=2, kw_only=True)

    MAY_CHANGE: ClassVar[frozenset[str]] = RunSettings.MAY_CHANGE | {
        "calibrate", "ood_reference", "threads", "max_time", "checkpoint_minutes", "compile", "out"}

    def rules(self) -> list[tuple[bool, str, str]]:
        return [
            *super().rules(),
            (self.size is None or self.size >= 8, "size", "must be >= 8 px"),
            (self.channels in (None, 1, 3), "channels", "must be 1 or 3"),
            (self.train_shift is None or 0 <= self.train_shift <= 0.5, "train_shift", "must be in [0, 0.5]"),
            (0 <= self.warmup_fraction < 1, "warmup_fraction", "must be in [0, 1)"),
            (self.ema_decay is None or 0 < self.ema_decay < 1, "ema_decay", "must be in (0, 1), e.g. 0.998, or None"),
            (self.threads is None or self.threads >= 1, "threads", "must be >= 1, or None for torch's default"),
            (self.checkpoint_minutes > 0, "checkpoint_minutes", "must be > 0"),
            (self.ood_reference >= 0, "ood_reference", "must be >= 0 (0: no ood_score)"),
        ]

    def validate(self) -> None:
        super().validate()
        parse_max_time(self.max_time)


FINETUNE_TASKS = (*TASKS, "segmentation")
TRAIN_CONFIG_FILE = "train_config.yaml"
FINETUNE_CONFIG_FILE = "finetune_config.yaml"


@dataclasses.dataclass
class FinetuneConfig(FitSettings):
    """Everything a fine-tuning run needs (a YAML file with these keys can hold any of them)."""

    checkpoint: str  # galaxymorph RUN/ or RUN/best/, a Hugging Face style timm folder, or hf_hub:ORG/NAME
    catalogue: str  # id_str, file_loc, and the label column (or the tree's vote columns)
    out: str
    task: str = "classification"  # classification | regression | tree | segmentation
    label_col: str | None = None  # classification / regression target
    mask_cols: list[str] | None = None  # segmentation: a mask file column per class (mask_spiral -> class spiral)
    volunteers_col: str | None = None  # segmentation: how many volunteers drew (None: binary masks, one volunteer)
    schema: str | None = None  # tree: a built-in tree name or a schema file
    classes: list[str] | None = None  # classification: class order (default: sorted label values)
    class_weights: str | list[float] | None = None  # None, "balanced", or one weight per class
    label_smoothing: float = 0.0
    regression_loss: str = "mse"  # mse | mae
    bounded: bool = False  # regression target in [0, 1]: sigmoid output
    unfreeze: int | str = 0  # encoder blocks to train after the head stage: 0 (head only), N, or "all"
    head_epochs: int = 0  # head-only epochs before unfreezing (only used when unfreeze != 0)
    head_lr: float | None = None  # learning rate of the head-only stage (default: lr)
    layer_decay: float = 0.75
    val_fraction: float = 0.2
    # Only for timm folders and hub names, which carry no galaxymorph preprocessing:
    preprocessing: str | None = None  # galaxymorph | zoobot (default zoobot for hf_hub:mwalmsley/zoobot-encoder-*)
    image_size: int = 64
    source_crop: float = 1.0
    channels: int | None = None
    epochs: int = dataclasses.field(default=20, kw_only=True)
    batch_size: int = dataclasses.field(default=32, kw_only=True)

    MAY_CHANGE: ClassVar[frozenset[str]] = RunSettings.MAY_CHANGE | {"calibrate", "out"}

    def rules(self) -> list[tuple[bool, str, str]]:
        return [
            *super().rules(),
            (self.task in FINETUNE_TASKS, "task", f"must be one of {FINETUNE_TASKS}"),
            (self.task in ("tree", "segmentation") or bool(self.label_col), "label_col",
             f"is needed for the {self.task} task"),
            (self.task != "segmentation" or bool(self.mask_cols), "mask_cols",
             "is needed for the segmentation task (the catalogue columns naming each galaxy's mask files)"),
            (self.task != "tree" or bool(self.schema), "schema", "is needed for the tree task (the new decision tree)"),
            (self.unfreeze == "all" or (isinstance(self.unfreeze, int) and self.unfreeze >= 0), "unfreeze",
             "must be a number of blocks >= 0 or 'all'"),
            (self.regression_loss in ("mse", "mae"), "regression_loss", "must be 'mse' or 'mae'"),
            (self.head_epochs >= 0, "head_epochs", "must be >= 0"),
            (self.head_lr is None or self.head_lr > 0, "head_lr", "must be > 0, or None for --lr"),
            (0 <= self.label_smoothing < 1, "label_smoothing", "must be in [0, 1)"),
            (0 < self.layer_decay <= 1, "layer_decay", "must be in (0, 1]"),
            (0 < self.val_fraction < 1, "val_fraction", "must be in (0, 1)"),
            (self.image_size >= 8, "image_size", "must be >= 8 px"),
            (0 < self.source_crop <= 1, "source_crop", "must be in (0, 1]"),
            (self.channels in (None, 1, 3), "channels", "must be 1 or 3"),
            (not isinstance(self.class_weights, list) or all(w > 0 for w in self.class_weights), "class_weights",
             "must all be > 0"),
        ]


def parse_max_time(text: str | None) -> timedelta | None:
    if text is None:
        return None
    parts = str(text).split(":")
    try:
        hours, minutes, seconds = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"max_time={text!r} must be HH:MM:SS, e.g. 00:35:00") from None
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def claim_run(config: TrainConfig | FinetuneConfig, config_file: str) -> None:
    """Refuse another command's folder, or a started run of this kind with other settings (naming one).

    Resuming a run with other settings would silently mix two experiments; settings in
    ``config.MAY_CHANGE`` (devices, progress, ...) do not change what is trained and are
    free. A folder holding nothing but the settings file is a run that never started
    (refused or killed before its first step): it binds nobody. Settings that an older
    run's file lacks did not exist then and are not compared.
    """
    run = Path(config.out)
    if not claim_folder(run, config_file):
        return
    saved_file = run / config_file
    if not any(p.name != config_file for p in run.iterdir()):
        return
    saved = yaml.safe_load(saved_file.read_text())
    for key, value in config.to_dict().items():
        if key not in config.MAY_CHANGE and saved.get(key, value) != value:
            raise ConfigError(f"{run} was started with {key}={saved.get(key)!r}, not {value!r}; "
                              f"resume with the same settings (see {saved_file}) or choose a new --out")


def save_settings(config: TrainConfig | FinetuneConfig, config_file: str) -> None:
    """The run's settings file, written once everything is checked and training starts (see :func:`claim_run`)."""
    run = Path(config.out)
    run.mkdir(parents=True, exist_ok=True)
    (run / config_file).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
