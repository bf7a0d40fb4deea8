"""Settings as plain data: typed fields checked at the edge, read from YAML, and where and how a model runs.

:class:`Settings` is the base of every settings dataclass (the keys of ``--config
FILE.yaml``): types checked on construction, unknown or missing names refused, one
error class. :class:`RunSettings` says where and how a model runs (accelerator,
devices, nodes, precision, batch size, loader workers, progress): one object shared
by training, fine-tuning, prediction and embedding, passed down and never rebuilt.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

from galaxymorph.accelerators import check_accelerator
from galaxymorph.files import read_mapping

__all__ = ["ConfigError", "RunSettings", "Settings"]

PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")


class ConfigError(ValueError):
    """Settings that cannot run: the message names the setting and the fix."""


@dataclasses.dataclass
class Settings:
    """Typed settings: every field is checked against its type hint on construction (see :func:`check_types`)."""

    # Settings that may differ between attempts of one run without changing what it computes.
    MAY_CHANGE: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        check_types(self, ConfigError)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "settings") -> Any:
        """``cls(**data)``, refusing unknown names (listing the valid ones) and missing required ones."""
        fields = dataclasses.fields(cls)
        known = {f.name for f in fields}
        unknown = sorted(set(map(str, data)) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {unknown}; valid: {sorted(known)}")
        required = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = sorted(k for k in required if data.get(k) is None)
        if missing:
            raise ConfigError(f"{source}: missing required setting(s) {missing}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> Any:
        """Settings from a YAML file, then ``overrides`` that are not None (command-line options)."""
        data = read_mapping(path, ConfigError, kind="YAML")
        return cls.from_dict({**data, **{k: v for k, v in overrides.items() if v is not None}}, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """Every setting, the command's own first (what a settings file shows on top), then the shared ones."""
        values = dataclasses.asdict(self)
        names = dict.fromkeys(name for cls in type(self).__mro__ for name in vars(cls).get("__annotations__", {}))
        return {name: values[name] for name in names if name in values}

    def rules(self) -> list[tuple[bool, str, str]]:
        """(holds, setting, what it must be) for each rule a subclass adds to."""
        return []

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first setting that breaks a rule."""
        for ok, name, rule in self.rules():
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r} {rule}")


@dataclasses.dataclass(kw_only=True)
class RunSettings(Settings):
    """Where and how a model runs; Lightning's meaning for each (``batch_size`` and ``workers`` per process)."""

    accelerator: str = "auto"  # auto | cpu | gpu | mps
    devices: int = 1  # processes per node (DDP when > 1, or with num_nodes > 1)
    num_nodes: int = 1  # machines; launch one process per device with srun/torchrun (see docs/training.md)
    precision: str = "32-true"  # or "bf16-mixed", "16-mixed"
    batch_size: int = 64
    workers: int = 0  # loader worker processes per device
    progress: bool = True

    # Where and how many: a run may move, not its batch size or numerics.
    MAY_CHANGE: ClassVar[frozenset[str]] = frozenset({"accelerator", "devices", "num_nodes", "workers", "progress"})

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    def rules(self) -> list[tuple[bool, str, str]]:
        return [
            *super().rules(),
            (self.devices >= 1, "devices", "must be >= 1"),
            (self.num_nodes >= 1, "num_nodes", "must be >= 1"),
            (self.batch_size >= 1, "batch_size", "must be >= 1"),
            (self.workers >= 0, "workers", "must be >= 0 (0: read in the main process)"),
            (self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}"),
        ]

    def validate(self) -> None:
        super().validate()
        try:
            check_accelerator(self.accelerator, self.devices)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def run(self) -> RunSettings:
        """Only the run settings (of a training or fine-tuning config, say), for a pass over galaxies."""
        return RunSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(RunSettings)})

    @classmethod
    def of(cls, run: RunSettings | None = None, **options: Any) -> RunSettings:
        """``run`` with ``options`` (any field) changed; checked."""
        settings = dataclasses.replace(run or cls(), **options)
        settings.validate()
        return settings


def check_types(config: Any, error: type[ValueError] = ValueError) -> None:
    """Every field of a settings dataclass has its declared type, or ``error`` names setting, value and type.

    YAML reads ``1e-3`` as text and ``1:30:00`` as a number (5400): numbers written as
    text are converted where that is unambiguous; anything else is refused rather
    than failing later, far from the setting.
    """
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        hint = hints[field.name]
        value = getattr(config, field.name)
        try:
            object.__setattr__(config, field.name, _typed(value, hint))
        except _Mismatch:
            quote = "; write it in quotes" if str in _options(hint) and isinstance(value, (int, float)) else ""
            raise error(f"{field.name}={value!r} ({type(value).__name__}) must be {_describe(hint)}{quote}") from None


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
