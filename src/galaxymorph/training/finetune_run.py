"""Fine-tuning: adapt a pretrained encoder to a new task with few labels (``galaxymorph finetune``).

A fine-tuning run folder ``RUN2/`` holds:
  ``best/``              the best model by validation loss (``model.safetensors`` + ``config.json``,
                         loadable with :func:`galaxymorph.models.load_model`)
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
best model over both stages. A classifier's ``best/`` then gets the temperature
that calibrates its probabilities on the validation labels (``calibrate``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only
from safetensors.torch import load_file

from galaxymorph.accelerators import pin_memory
from galaxymorph.calibration import fit_temperature
from galaxymorph.data.labelled import (
    LabelledDataModule,
    LabelledImages,
    galaxy_loader,
    load_labelled,
    split_train_val,
)
from galaxymorph.data.masks import MaskedDataModule, load_masks
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.engine import ConfigError, RunSettings, build_trainer, run_over_galaxies
from galaxymorph.models import load_encoder, save_model
from galaxymorph.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from galaxymorph.models.finetune_model import Finetunable, FinetunedModel, PretrainedEncoder
from galaxymorph.models.segmentation import SegmentationModel
from galaxymorph.prediction.mc_dropout import DEFAULT_SAMPLES, MCDropoutPredictor
from galaxymorph.quiet import quiet_lightning
from galaxymorph.schema import get_schema
from galaxymorph.training.callbacks import MONITOR, ExportBest
from galaxymorph.training.config import FINETUNE_CONFIG_FILE, FinetuneConfig, claim_run, save_settings
from galaxymorph.training.finetune_module import FinetuneModule, task_loss

__all__ = ["finetune", "fit", "build_model", "class_weights", "calibrate_classifier"]

def class_weights(setting: str | list[float] | None, targets: torch.Tensor, n_classes: int) -> torch.Tensor | None:
    """``"balanced"``: n / (classes * count) per class, as scikit-learn; a list is taken as given."""
    if setting is None:
        return None
    if setting == "balanced":
        counts = torch.bincount(targets, minlength=n_classes).float()
        if (counts == 0).any():
            raise ConfigError("class_weights='balanced': a class has no training example; label some or give weights")
        return len(targets) / (n_classes * counts)
    if isinstance(setting, str):
        raise ConfigError(f"class_weights={setting!r} must be 'balanced' or one number per class")
    if len(setting) != n_classes:
        raise ConfigError(f"class_weights={setting!r} has {len(setting)} values for {n_classes} classes; give one per "
                          "class, in the order of --classes (default: sorted label values)")
    return torch.tensor(setting, dtype=torch.float32)


def build_model(pretrained: PretrainedEncoder, config: FinetuneConfig, classes: list[str] | None) -> Finetunable:
    """The encoder with a new head for ``config.task`` (a decoder and mask head for segmentation)."""
    if config.task == "segmentation":
        return SegmentationModel.create(pretrained, config.mask_cols or [], config.dropout,
                                        volunteers_col=config.volunteers_col)
    return FinetunedModel.create(
        pretrained,
        config.task,
        dropout=config.dropout,
        classes=classes,
        bounded=config.bounded,
        schema=get_schema(config.schema) if config.task == "tree" else None,
        target=config.label_col,
    )


def _stage(model: Finetunable, unfreeze: int | str, epochs: int, module_args: dict[str, Any],
           train_set: LabelledImages, val_set: LabelledImages, config: FinetuneConfig, export: ExportBest,
           name: str) -> None:
    checkpoints = Path(config.out) / "checkpoints"
    resume_from = checkpoints / f"{name}.ckpt"
    model.set_trainable(unfreeze)
    batches = MaskedDataModule if model.task == "segmentation" else LabelledDataModule
    data = batches(train_set, val_set, Preprocessing.from_dict(model.config["preprocessing"]),
                   config.batch_size, config.seed, pin_memory(config.accelerator))
    callbacks = [
        export, EarlyStopping(monitor=MONITOR, patience=config.patience),
        ModelCheckpoint(dirpath=checkpoints, filename=name, enable_version_counter=False),  # every epoch
    ]
    if config.progress:
        callbacks.append(RichProgressBar())
    with quiet_lightning(r".*module\(s\) in eval mode"):  # the frozen parts, on purpose
        trainer = build_trainer(
            config, "fit", callbacks, steps_per_epoch=-(-len(train_set) // config.batch_size), max_epochs=epochs,
            gradient_clip_val=config.grad_clip,
            logger=CSVLogger(Path(config.out) / "logs", name=name),  # version_N per attempt: a resume keeps the earlier logs
        )
        trainer.fit(FinetuneModule(model, **module_args), datamodule=data,
                    ckpt_path=resume_from if resume_from.is_file() else None, weights_only=True)
    (checkpoints / f"{name}.done").touch()
    resume_from.unlink(missing_ok=True)  # the stage is over: its best weights are in best/


def fit(model: Finetunable, train_set: LabelledImages, val_set: LabelledImages, config: FinetuneConfig) -> Path:
    """Train ``model`` in place (head stage, then unfrozen stage) and return ``out/best``.

    ``model`` ends holding the best weights (those in ``out/best``); a classifier also its
    temperature, fitted on ``val_set`` after training (``config.calibrate``) and saved with them. Each stage starts
    from a seed of its own, so it trains the same numbers whether the run got there in
    one go or resumed; a stage killed mid-way continues from its last epoch, random
    state included.
    """
    config.validate()
    claim_run(config, FINETUNE_CONFIG_FILE)
    run = Path(config.out)
    weights = None
    if model.task == "classification":
        weights = class_weights(config.class_weights, train_set.targets, len(model.config["classes"]))
    module_args = dict(
        loss=task_loss(model, weights, config.label_smoothing, config.regression_loss),
        lr=config.lr, weight_decay=config.weight_decay, layer_decay=config.layer_decay,
    )
    save_settings(config, FINETUNE_CONFIG_FILE)
    export = ExportBest(run / "best")
    if (run / "best" / "training.yaml").is_file():  # resuming: only a better model may replace the saved one
        export.best = float(yaml.safe_load((run / "best" / "training.yaml").read_text())["val_loss"])
    stages: list[tuple[int | str, int, str]] = [(config.unfreeze, config.epochs, "finetune")]
    if config.unfreeze != 0 and config.head_epochs > 0:
        stages.insert(0, (0, config.head_epochs, "head"))
    trained = False
    for index, (unfreeze, epochs, name) in enumerate(stages):
        lr = config.head_lr if name == "head" and config.head_lr is not None else config.lr
        if not (run / "checkpoints" / f"{name}.done").is_file():
            L.seed_everything(config.seed + index, workers=True, verbose=False)
            _stage(model, unfreeze, epochs, {**module_args, "lr": lr}, train_set, val_set, config, export, name)
            trained = True
        if not (run / "best" / WEIGHTS_FILE).is_file():
            raise ValueError(f"no finite validation loss in the {name} stage; try a lower --lr or check the labels")
        model.load_state_dict(load_file(str(run / "best" / WEIGHTS_FILE)))  # next stage starts from the best
    if isinstance(model, FinetunedModel) and model.task == "classification" and rank_zero_only.rank == 0:
        _save_calibrated(model, val_set, config, refit=trained)
    return run / "best"


def _save_calibrated(model: FinetunedModel, val_set: LabelledImages, config: FinetuneConfig, refit: bool) -> None:
    """``best/`` with the temperature ``config.calibrate`` asks for: fitted after training, none without calibrate
    (an earlier attempt's goes), or, when this call trained nothing, the one already saved: the same model keeps
    its fingerprint, so predictions made with it still resume."""
    best = Path(config.out) / "best"
    saved = json.loads((best / CONFIG_FILE).read_text()).get("temperature")
    if not config.calibrate:
        model.set_temperature(None)
    elif saved is not None and not refit:
        model.set_temperature(saved)
    else:
        model.set_temperature(calibrate_classifier(model, val_set, config))
    save_model(model.cpu(), best)


def calibrate_classifier(model: FinetunedModel, val_set: LabelledImages, config: FinetuneConfig,
                         samples: int = DEFAULT_SAMPLES) -> float:
    """The temperature that calibrates ``model``'s probabilities on ``val_set``, sampled as ``predict`` samples them.

    It is fitted on the raw probabilities: ``model`` is left without a temperature.
    """
    model.set_temperature(None)
    one_device = RunSettings.of(config.run(), devices=1, num_nodes=1)
    loader = galaxy_loader(val_set, max(config.batch_size, 64), pin_memory(config.accelerator))
    _, outputs = run_over_galaxies(MCDropoutPredictor(model, samples), loader, one_device, return_predictions=True)
    probabilities = torch.cat([batch_samples for batch_samples, _ in outputs])
    return fit_temperature(probabilities.double().numpy(), val_set.targets.numpy())


def finetune(config: FinetuneConfig, data: LabelledImages | None = None) -> Path:
    """Fine-tune ``config.checkpoint`` on ``config.catalogue``; returns ``out/best``.

    Args:
        config: the settings.
        data: already decoded labelled images (skips reading ``config.catalogue``);
            they must match the encoder's preprocessing.

    Example:
        >>> finetune(FinetuneConfig("runs/gz2", "rings.csv", "runs/rings", label_col="ring"))  # doctest: +SKIP
        PosixPath('runs/rings/best')
    """
    config.validate()
    claim_run(config, FINETUNE_CONFIG_FILE)  # before the data is read, not only in fit()
    pretrained = load_encoder(config.checkpoint, config.channels, config.preprocessing, config.image_size,
                              config.source_crop)
    prep = pretrained.config["preprocessing"]
    if data is None and config.task == "segmentation":
        data = load_masks(config.catalogue, config.mask_cols or [], prep, config.volunteers_col, config.workers,
                          config.progress)
    elif data is None:
        schema = get_schema(config.schema) if config.task == "tree" else None
        data = load_labelled(config.catalogue, config.task, prep, config.label_col, schema, config.classes,
                             config.bounded, config.workers, config.progress)
    train_set, val_set = split_train_val(data, config.val_fraction, config.seed)
    L.seed_everything(config.seed, workers=True, verbose=False)  # the new head's initial weights
    model = build_model(pretrained, config, data.classes)
    return fit(model, train_set, val_set, config)
