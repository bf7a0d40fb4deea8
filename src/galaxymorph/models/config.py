"""Training settings as plain data: the keys of `galaxymorph train --config FILE.yaml` and of `TrainConfig`."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TrainConfig", "TrainConfigError", "parse_max_time"]


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
    patience: int = 5  # epochs without val-loss improvement before stopping
    precision: str = "32-true"  # or "bf16-mixed"
    compile: bool = False
    channels_last: bool = True
    seed: int = 0
    devices: int = 1  # processes per node (DDP when > 1, or with num_nodes > 1)
    num_nodes: int = 1  # machines; launch one process per device with srun/torchrun (see README)
    num_workers: int = 2
    threads: int | None = None  # torch intra-op threads per process; None: torch's default
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
            (self.num_nodes >= 1, "num_nodes", "must be >= 1"),
            (self.size is None or self.size >= 8, "size", "must be >= 8 px"),
            (self.channels in (None, 1, 3), "channels", "must be 1 or 3"),
            (self.train_shift is None or 0 <= self.train_shift <= 0.5, "train_shift", "must be in [0, 0.5]"),
            (0 <= self.warmup_fraction < 1, "warmup_fraction", "must be in [0, 1)"),
            (self.checkpoint_minutes > 0, "checkpoint_minutes", "must be > 0"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise TrainConfigError(f"{name}={getattr(self, name)!r} {rule}")
        parse_max_time(self.max_time)


def parse_max_time(text: str | None) -> timedelta | None:
    if text is None:
        return None
    parts = str(text).split(":")
    try:
        hours, minutes, seconds = (int(p) for p in parts)
    except ValueError:
        raise TrainConfigError(f"max_time={text!r} must be HH:MM:SS, e.g. 00:35:00") from None
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def changed_setting(saved_file: Path, settings: dict[str, Any], may_change: set[str]) -> tuple[str, Any, Any] | None:
    """The first setting (name, saved value, new value) that differs from a run's saved YAML, if any.

    Resuming a run with other settings would silently mix two experiments, so
    callers refuse; settings in ``may_change`` (devices, progress, ...) are free.
    """
    saved = yaml.safe_load(saved_file.read_text())
    for key, value in settings.items():
        if key not in may_change and saved.get(key) != value:
            return key, saved.get(key), value
    return None

