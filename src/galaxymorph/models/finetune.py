"""Fine-tuning: adapt a pretrained encoder to a new task with few labels (``galaxymorph finetune``).

A fine-tuning run folder ``RUN2/`` holds:
  ``best/``              the best model by validation loss (``model.safetensors`` + ``config.json``,
                         loadable with :func:`galaxymorph.models.finetune_model.load_any_model`)
  ``finetune_config.yaml`` the settings
  ``checkpoints/``        Lightning state of each stage (every epoch) and ``<stage>.done`` markers
  ``logs/<stage>/version_N/`` per-stage metrics (CSV), one folder per attempt

Running the same settings again resumes: finished stages are skipped and an
interrupted one continues from its last epoch. Other settings for an existing
run are refused (choose a new ``out``).

Stages: with ``head_epochs`` > 0 the head is first trained alone on the frozen
encoder; then the last ``unfreeze`` encoder blocks (or ``"all"``) are trained
too, with layer-wise learning-rate decay, starting from the best head. Each
stage stops early when the validation loss stops improving; ``best/`` is the
best model over both stages.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset

from galaxymorph.data.transforms import Preprocessing, eval_transform, train_transform
from galaxymorph.models.checkpoint import WEIGHTS_FILE
from galaxymorph.models.config import changed_setting, check_types
from galaxymorph.models.finetune_data import LabelledImages, load_labelled, split_train_val
from galaxymorph.models.finetune_model import TASKS, FinetunedModel, PretrainedEncoder, load_pretrained_encoder
from galaxymorph.models.finetune_module import FinetuneModule, task_loss
from galaxymorph.models.train import MONITOR, ExportBest
from galaxymorph.outputs import claim_folder
from galaxymorph.quiet import quiet_lightning
from galaxymorph.schema import get_schema

__all__ = ["FinetuneConfig", "finetune", "fit", "build_model", "class_weights"]

CONFIG_FILE = "finetune_config.yaml"
# Settings that may change between attempts of one run without changing what is trained.
_RESUMABLE_CHANGES = {"progress", "workers"}


@dataclasses.dataclass
class FinetuneConfig:
    """Everything a fine-tuning run needs (a YAML file with these keys can hold any of them)."""

    checkpoint: str  # galaxymorph RUN/ or RUN/best/, or a Hugging Face style timm folder
    catalog: str  # id_str, file_loc, and the label column (or the tree's vote columns)
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def class_weights(setting: str | list[float] | None, targets: torch.Tensor, n_classes: int) -> torch.Tensor | None:
    """``"balanced"``: n / (classes * count) per class, as scikit-learn; a list is taken as given."""
    if setting is None:
        return None
    if setting == "balanced":
        counts = torch.bincount(targets, minlength=n_classes).float()
        if (counts == 0).any():
            raise ValueError("balanced class weights: a class has no training example")
        return len(targets) / (n_classes * counts)
    if isinstance(setting, str):
        raise ValueError(f"class_weights must be 'balanced' or one number per class, got {setting!r}")
    if len(setting) != n_classes:
        raise ValueError(f"class_weights has {len(setting)} values for {n_classes} classes")
    return torch.tensor(setting, dtype=torch.float32)


def _preprocessing(pretrained: PretrainedEncoder, config: FinetuneConfig) -> dict[str, Any]:
    """The encoder's own preprocessing, or one from the settings for a timm folder."""
    if pretrained.config["preprocessing"] is not None:
        return pretrained.config["preprocessing"]
    # Stored a little larger than the model input so the zoom-crop augmentation keeps detail.
    stored = int(round(config.image_size / 0.75))
    return Preprocessing(
        stored_size=stored, source_crop=config.source_crop, image_size=config.image_size, channels=pretrained.config["channels"]
    ).to_dict()


def build_model(pretrained: PretrainedEncoder, config: FinetuneConfig, classes: list[str] | None) -> FinetunedModel:
    """The encoder with a new head for ``config.task``."""
    return FinetunedModel.create(
        pretrained,
        config.task,
        dropout=config.dropout,
        classes=classes,
        bounded=config.bounded,
        schema=get_schema(config.schema) if config.task == "tree" else None,
        target=config.label_col,
        preprocessing=_preprocessing(pretrained, config),
    )


class _Batches(Dataset):
    def __init__(self, data: LabelledImages) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.data.images[i], "target": self.data.targets[i]}


def _stage(model: FinetunedModel, unfreeze: int | str, epochs: int, module_args: dict[str, Any],
           train_set: LabelledImages, val_set: LabelledImages, config: FinetuneConfig, export: ExportBest,
           name: str) -> None:
    checkpoints = Path(config.out) / "checkpoints"
    resume_from = checkpoints / f"{name}.ckpt"
    model.set_trainable(unfreeze)
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(_Batches(train_set), batch_size=config.batch_size, shuffle=True, generator=generator)
    val_loader = DataLoader(_Batches(val_set), batch_size=max(config.batch_size, 64))
    callbacks = [
        export, EarlyStopping(monitor=MONITOR, patience=config.patience),
        ModelCheckpoint(dirpath=checkpoints, filename=name, enable_version_counter=False),  # every epoch
    ]
    if config.progress:
        callbacks.append(RichProgressBar())
    with quiet_lightning(r".*module\(s\) in eval mode"):  # the frozen parts, on purpose
        trainer = L.Trainer(
            accelerator="cpu", devices=1, max_epochs=epochs, callbacks=callbacks,
            logger=CSVLogger(Path(config.out) / "logs", name=name),  # version_N per attempt: a resume keeps the earlier logs
            enable_progress_bar=config.progress, enable_model_summary=False, num_sanity_val_steps=0,
            log_every_n_steps=1, gradient_clip_val=1.0,
        )
        trainer.fit(FinetuneModule(model, **module_args), train_loader, val_loader,
                    ckpt_path=resume_from if resume_from.is_file() else None, weights_only=True)
    (checkpoints / f"{name}.done").touch()
    resume_from.unlink(missing_ok=True)  # the stage is over: its best weights are in best/


def fit(model: FinetunedModel, train_set: LabelledImages, val_set: LabelledImages, config: FinetuneConfig) -> Path:
    """Train ``model`` in place (head stage, then unfrozen stage) and return ``out/best``.

    ``model`` ends holding the best weights (those in ``out/best``).
    """
    config.validate()
    L.seed_everything(config.seed, workers=True, verbose=False)
    run = Path(config.out)
    _check_same_run(run, config)
    run.mkdir(parents=True, exist_ok=True)
    (run / CONFIG_FILE).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    prep = Preprocessing.from_dict(model.config["preprocessing"])
    weights = None
    if model.task == "classification":
        weights = class_weights(config.class_weights, train_set.targets, len(model.config["classes"]))
    module_args = dict(
        loss=task_loss(model, weights, config.label_smoothing, config.regression_loss),
        train_transform=train_transform(prep, torch.Generator().manual_seed(config.seed)),
        eval_transform=eval_transform(prep),
        lr=config.lr, weight_decay=config.weight_decay, layer_decay=config.layer_decay,
    )
    export = ExportBest(run / "best")
    if (run / "best" / "training.yaml").is_file():  # resuming: only a better model may replace the saved one
        export.best = float(yaml.safe_load((run / "best" / "training.yaml").read_text())["val_loss"])
    stages: list[tuple[int | str, int, str]] = [(config.unfreeze, config.epochs, "finetune")]
    if config.unfreeze != 0 and config.head_epochs > 0:
        stages.insert(0, (0, config.head_epochs, "head"))
    for unfreeze, epochs, name in stages:
        lr = config.head_lr if name == "head" and config.head_lr is not None else config.lr
        if not (run / "checkpoints" / f"{name}.done").is_file():
            _stage(model, unfreeze, epochs, {**module_args, "lr": lr}, train_set, val_set, config, export, name)
        if not (run / "best" / WEIGHTS_FILE).is_file():
            raise ValueError(f"no finite validation loss in the {name} stage; try a lower --lr or check the labels")
        model.load_state_dict(load_file(str(run / "best" / WEIGHTS_FILE)))  # next stage starts from the best
    return run / "best"


def _check_same_run(run: Path, config: FinetuneConfig) -> None:
    """Another command's folder (a training run, say), or this run with other settings, is refused, naming it.

    Nothing in ``run`` is ever deleted: only an attempt with these settings continues there.
    """
    if not claim_folder(run, CONFIG_FILE):
        return
    saved_file = run / CONFIG_FILE
    changed = changed_setting(saved_file, config.to_dict(), _RESUMABLE_CHANGES)
    if changed:
        key, saved, value = changed
        raise ValueError(
            f"{run} holds a fine-tuning run with {key}={saved!r}, not {value!r}; "
            f"run again with the same settings (see {saved_file}) to resume, or choose a new --out"
        )


def finetune(config: FinetuneConfig, data: LabelledImages | None = None) -> Path:
    """Fine-tune ``config.checkpoint`` on ``config.catalog``; returns ``out/best``.

    Args:
        config: the settings.
        data: already decoded labelled images (skips reading ``config.catalog``);
            they must match the encoder's preprocessing.

    Example:
        >>> finetune(FinetuneConfig("runs/gz2", "rings.csv", "runs/rings", label_col="ring"))  # doctest: +SKIP
        PosixPath('runs/rings/best')
    """
    config.validate()
    _check_same_run(Path(config.out), config)  # before the data is read, not only in fit()
    pretrained = load_pretrained_encoder(config.checkpoint, channels=config.channels)
    prep = _preprocessing(pretrained, config)
    if data is None:
        schema = get_schema(config.schema) if config.task == "tree" else None
        data = load_labelled(config.catalog, config.task, prep, config.label_col, schema, config.classes,
                             config.bounded, config.workers, config.progress)
    train_set, val_set = split_train_val(data, config.val_fraction, config.seed)
    model = build_model(pretrained, config, data.classes)
    return fit(model, train_set, val_set, config)
