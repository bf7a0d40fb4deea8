"""Training and fine-tuning settings as plain data: the keys of `--config FILE.yaml`, `TrainConfig` and `FinetuneConfig`."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from galaxymorph.accelerators import check_accelerator
from galaxymorph.files import read_mapping
from galaxymorph.models.finetune_model import TASKS
from galaxymorph.outputs import claim_folder

__all__ = ["FinetuneConfig", "TrainConfig", "TrainConfigError", "check_same_run", "check_types", "parse_max_time",
           "settings_from_dict"]


class TrainConfigError(ValueError):
    """Settings that cannot train: the message names the setting and the fix."""


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; a YAML file with these keys can hold any of them."""

    shards: str
    out: str
    arch: str = "efficientnet_b0"
    init: str | None = None  # start the encoder from a galaxymorph run or a Hugging Face style timm folder
    size: int | None = None  # model input px; None: the shards' preprocessing image_size
    channels: int | None = None  # None: the shards' channels
    train_shift: float | None = None  # largest training-crop offset, fraction of the frame (0.5: anywhere); None: the shards' (0.03)
    schema: str | None = None  # expected tree name; None: whatever the shards hold
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    dropout: float = 0.2
    cosine: bool = True
    warmup_fraction: float = 0.05
    grad_clip: float | None = 1.0
    ema_decay: float | None = None  # validate, export and keep an exponential moving average of the weights (e.g. 0.998)
    patience: int = 5  # epochs without val-loss improvement before stopping
    accelerator: str = "auto"  # auto | cpu | gpu | mps
    precision: str = "32-true"  # or "bf16-mixed", "16-mixed"
    compile: bool = False
    channels_last: bool = True
    seed: int = 0
    devices: int = 1  # processes per node (DDP when > 1, or with num_nodes > 1)
    num_nodes: int = 1  # machines; launch one process per device with srun/torchrun (see docs/training.md)
    num_workers: int = 2
    threads: int | None = None  # torch intra-op threads per process; None: torch's default
    max_time: str | None = None  # HH:MM:SS
    checkpoint_minutes: float = 10.0
    calibrate: bool = True  # fit one concentration scale per question on the validation votes after training
    ood_reference: int = 4000  # validation galaxies kept for predict's ood_score (0: none, no ood_score column)
    progress: bool = True

    def __post_init__(self) -> None:
        check_types(self, TrainConfigError)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        """Settings from a YAML file, then ``overrides`` that are not None (command-line options)."""
        data = read_mapping(path, TrainConfigError, kind="YAML")
        return cls.from_dict({**data, **{k: v for k, v in overrides.items() if v is not None}}, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "settings") -> "TrainConfig":
        return settings_from_dict(cls, data, source, TrainConfigError)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs", "must be >= 1"),
            (self.batch_size >= 1, "batch_size", "must be >= 1"),
            (self.lr > 0, "lr", "must be > 0"),
            (self.devices >= 1, "devices", "must be >= 1"),
            (self.num_nodes >= 1, "num_nodes", "must be >= 1"),
            (self.size is None or self.size >= 8, "size", "must be >= 8 px"),
            (self.channels in (None, 1, 3), "channels", "must be 1 or 3"),
            (self.train_shift is None or 0 <= self.train_shift <= 0.5, "train_shift", "must be in [0, 0.5]"),
            (0 <= self.warmup_fraction < 1, "warmup_fraction", "must be in [0, 1)"),
            (self.ema_decay is None or 0 < self.ema_decay < 1, "ema_decay", "must be in (0, 1), e.g. 0.998, or None"),
            (self.checkpoint_minutes > 0, "checkpoint_minutes", "must be > 0"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise TrainConfigError(f"{name}={getattr(self, name)!r} {rule}")
        parse_max_time(self.max_time)
        try:
            check_accelerator(self.accelerator, self.devices)
        except ValueError as err:
            raise TrainConfigError(str(err)) from None


FINETUNE_CONFIG_FILE = "finetune_config.yaml"
# Settings that may change between attempts of one run without changing what is trained.
FINETUNE_RESUMABLE = {"progress", "workers", "out", "accelerator", "devices"}


@dataclasses.dataclass
class FinetuneConfig:
    """Everything a fine-tuning run needs (a YAML file with these keys can hold any of them)."""

    checkpoint: str  # galaxymorph RUN/ or RUN/best/, or a Hugging Face style timm folder
    catalogue: str  # id_str, file_loc, and the label column (or the tree's vote columns)
    out: str
    task: str = "classification"  # classification | regression | tree
    label_col: str | None = None  # classification / regression target
    schema: str | None = None  # tree: a built-in tree name or a schema file
    classes: list[str] | None = None  # classification: class order (default: sorted label values)
    class_weights: str | list[float] | None = None  # None, "balanced", or one weight per class
    label_smoothing: float = 0.0
    regression_loss: str = "mse"  # mse | mae
    bounded: bool = False  # regression target in [0, 1]: sigmoid output
    unfreeze: int | str = 0  # encoder blocks to train after the head stage: 0 (head only), N, or "all"
    head_epochs: int = 0  # head-only epochs before unfreezing (only used when unfreeze != 0)
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    head_lr: float | None = None  # learning rate of the head-only stage (default: lr)
    layer_decay: float = 0.75
    weight_decay: float = 0.05
    dropout: float = 0.2
    patience: int = 5
    val_fraction: float = 0.2
    seed: int = 0
    # Only for timm folders, which carry no galaxymorph preprocessing:
    image_size: int = 64
    source_crop: float = 1.0
    channels: int | None = None
    workers: int = 0
    accelerator: str = "auto"  # auto | cpu | gpu | mps
    devices: int = 1
    precision: str = "32-true"  # or "bf16-mixed", "16-mixed"
    progress: bool = True

    def __post_init__(self) -> None:
        check_types(self)

    def validate(self) -> None:
        checks = [
            (self.task in TASKS, "task", f"must be one of {TASKS}"),
            (self.task == "tree" or self.label_col, "label_col", f"is needed for the {self.task} task"),
            (self.task != "tree" or self.schema, "schema", "is needed for the tree task (the new decision tree)"),
            (self.unfreeze == "all" or (isinstance(self.unfreeze, int) and self.unfreeze >= 0), "unfreeze",
             "must be a number of blocks >= 0 or 'all'"),
            (self.regression_loss in ("mse", "mae"), "regression_loss", "must be 'mse' or 'mae'"),
            (self.epochs >= 1 and self.head_epochs >= 0, "epochs", "must be >= 1 (head_epochs >= 0)"),
            (0 <= self.label_smoothing < 1, "label_smoothing", "must be in [0, 1)"),
            (0 < self.layer_decay <= 1, "layer_decay", "must be in (0, 1]"),
            (0 < self.val_fraction < 1, "val_fraction", "must be in (0, 1)"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} {rule}")
        check_accelerator(self.accelerator, self.devices)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def settings_from_dict(cls: type, data: dict[str, Any], source: str, error: type[ValueError] = ValueError) -> Any:
    """``cls(**data)`` for a settings dataclass, refusing unknown names and missing required ones."""
    fields = dataclasses.fields(cls)
    known = {f.name for f in fields}
    unknown = sorted(set(map(str, data)) - known)
    if unknown:
        raise error(f"{source}: unknown setting(s) {unknown}; valid: {sorted(known)}")
    required = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = sorted(k for k in required if data.get(k) is None)
    if missing:
        raise error(f"{source}: missing required setting(s) {missing}")
    return cls(**data)


def check_types(config: Any, error: type[ValueError] = ValueError) -> None:
    """Every field of a settings dataclass has its declared type, or ``error`` names setting, value and type.

    YAML reads ``1e-3`` as text and ``1:30:00`` as a number (5400): numbers written as
    text are converted where that is unambiguous; anything else is refused rather
    than failing later, far from the setting.
    """
    for name, hint in typing.get_type_hints(type(config)).items():
        value = getattr(config, name)
        try:
            object.__setattr__(config, name, _typed(value, hint))
        except _Mismatch:
            quote = "; write it in quotes" if str in _options(hint) and isinstance(value, (int, float)) else ""
            raise error(f"{name}={value!r} ({type(value).__name__}) must be {_describe(hint)}{quote}") from None


class _Mismatch(Exception):
    pass


def _options(hint: Any) -> tuple[Any, ...]:
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    return typing.get_args(hint) if union else (hint,)


def _typed(value: Any, hint: Any) -> Any:
    """``value`` as ``hint``: as it is when it already fits an option, else converted from text if possible."""
    for strict in (True, False):
        for option in _options(hint):
            try:
                return _as(value, option, strict)
            except _Mismatch:
                continue
    raise _Mismatch


def _as(value: Any, kind: Any, strict: bool) -> Any:
    if kind is type(None):
        if value is None:
            return None
    elif typing.get_origin(kind) is list:
        if isinstance(value, list):
            (item,) = typing.get_args(kind)
            return [_as(v, item, strict) for v in value]
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind in (int, float) and not isinstance(value, bool):
        number = value
        if isinstance(value, str) and not strict:
            try:
                number = float(value)
            except ValueError:
                raise _Mismatch from None
        if isinstance(number, (int, float)) and math.isfinite(number):
            if kind is float:
                return float(number)
            if isinstance(number, int) or (not strict and number.is_integer()):
                return int(number)
    raise _Mismatch


_NAMES = {type(None): ("null", "nulls"), bool: ("true or false", "booleans"), int: ("a whole number", "whole numbers"),
          float: ("a finite number", "numbers"), str: ("text", "strings")}


def _describe(hint: Any) -> str:
    """``float | None`` -> 'a finite number or null', ``list[str]`` -> 'a list of strings'."""
    return " or ".join(f"a list of {_NAMES[typing.get_args(o)[0]][1]}" if typing.get_origin(o) is list else _NAMES[o][0]
                       for o in _options(hint))


def parse_max_time(text: str | None) -> timedelta | None:
    if text is None:
        return None
    parts = str(text).split(":")
    try:
        hours, minutes, seconds = (int(p) for p in parts)
    except ValueError:
        raise TrainConfigError(f"max_time={text!r} must be HH:MM:SS, e.g. 00:35:00") from None
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def check_same_run(run: str | Path, config_file: str, settings: dict[str, Any], may_change: set[str],
                   error: type[ValueError] = ValueError) -> None:
    """Refuse another command's folder, or a run of this kind with other settings (naming one).

    Resuming a run with other settings would silently mix two experiments; settings in
    ``may_change`` (devices, progress, ...) do not change what is trained and are free.
    """
    if not claim_folder(run, config_file):
        return
    saved_file = Path(run) / config_file
    saved = yaml.safe_load(saved_file.read_text())
    for key, value in settings.items():
        if key not in may_change and saved.get(key) != value:
            raise error(f"{run} was started with {key}={saved.get(key)!r}, not {value!r}; "
                        f"resume with the same settings (see {saved_file}) or choose a new --out")
