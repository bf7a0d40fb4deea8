"""``galaxymorph finetune``: a pretrained encoder with a new head for a new task."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

__all__ = ["finetune"]


def _unfreeze(text: str) -> int | str:
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give a number of blocks (0 = head only) or 'all'") from None


def _class_weights(text: str | None) -> str | list[float] | None:
    if text is None or text == "balanced":
        return text
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give 'balanced' or one comma-separated weight per class") from None


def finetune(
    checkpoint: str = typer.Option(None, help="galaxymorph RUN/ or RUN/best/, a Hugging Face style timm folder, or "
                                    "hf_hub:ORG/NAME (e.g. hf_hub:mwalmsley/zoobot-encoder-convnext_nano)."),
    catalogue: Path = typer.Option(None, "--catalog", help="CSV/Parquet: id_str, file_loc, and the label column (or the tree's votes)."),
    out: Path = typer.Option(None, help="Run folder: best/ model (usable by `galaxymorph predict`), logs/."),
    task: str = typer.Option(None, help="classification | regression | tree | segmentation. (default classification)"),
    label_col: str = typer.Option(None, help="Catalogue column with each galaxy's label (classification, regression)."),
    mask_cols: str = typer.Option(None, help="segmentation: comma-separated columns naming each galaxy's mask file "
                                  "per class (PNG/NPY/FITS counts), e.g. mask_spiral,mask_bar."),
    volunteers_col: str = typer.Option(None, help="segmentation: column with how many volunteers drew. "
                                       "(default: none, binary 0/1 masks)"),
    schema: str = typer.Option(None, help="tree: the new decision tree (built-in name or schema file)."),
    classes: str = typer.Option(None, help="Comma-separated class order. (default: sorted label values)"),
    class_weights: str = typer.Option(None, help="'balanced' or comma-separated weights, one per class."),
    label_smoothing: float = typer.Option(None, help="Classification label smoothing. (default 0)"),
    loss: str = typer.Option(None, help="Regression loss: mse | mae. (default mse)"),
    bounded: bool = typer.Option(None, "--bounded", help="Regression target in [0, 1]: sigmoid output."),
    unfreeze: str = typer.Option(None, help="Encoder blocks to train: 0 (head only), N (the last N), or 'all'. (default 0)"),
    head_epochs: int = typer.Option(None, help="Head-only epochs before unfreezing. (default 0)"),
    epochs: int = typer.Option(None, help="Maximum epochs, early stopping on validation loss. (default 20)"),
    batch_size: int = typer.Option(None, help="(default 32)"),
    lr: float = typer.Option(None, help="Head learning rate; encoder layers get lr * layer_decay**depth. (default 0.001)"),
    head_lr: float = typer.Option(None, help="Learning rate of the head-only stage. (default --lr)"),
    layer_decay: float = typer.Option(None, help="Layer-wise learning-rate decay per encoder layer. (default 0.75)"),
    dropout: float = typer.Option(None, help="Head dropout, also used for MC-dropout predictions. (default 0.2)"),
    patience: int = typer.Option(None, help="Epochs without validation-loss improvement before stopping. (default 5)"),
    val_fraction: float = typer.Option(None, help="Share of the labelled galaxies kept for validation. (default 0.2)"),
    calibrate: bool = typer.Option(None, "--calibrate/--no-calibrate", help="classification: fit a temperature on "
                                   "the validation labels so the probabilities are calibrated. (default --calibrate)"),
    seed: int = typer.Option(None, help="(default 0)"),
    preprocessing: str = typer.Option(None, help="timm folders and hub names: galaxymorph | zoobot (images prepared as "
                                       "zoobot 2.9 does, fed without mean/std). (default zoobot for Zoobot's encoders, "
                                       "else galaxymorph)"),
    image_size: int = typer.Option(None, help="timm folders and hub names: model input px. (default 64)"),
    source_crop: float = typer.Option(None, help="timm folders and hub names: central fraction of each image kept "
                                      "(galaxymorph preprocessing). (default 1)"),
    channels: int = typer.Option(None, help="timm folders and hub names: 1 or 3. (default: as saved)"),
    workers: int = typer.Option(None, help="Image-decoding worker processes. (default 0)"),
    accelerator: str = typer.Option(None, help="auto | cpu | gpu | mps. (default auto)"),
    devices: int = typer.Option(None, help="Devices (processes) to train on. (default 1)"),
    precision: str = typer.Option(None, help="Lightning precision: 32-true, bf16-mixed, 16-mixed. (default 32-true)"),
    config: Path = typer.Option(None, help="YAML file with any FinetuneConfig settings (options given here win)."),
) -> None:
    """Fine-tune a pretrained encoder on a labelled catalogue; the best model goes to OUT/best/."""
    from galaxymorph.training import FinetuneConfig
    from galaxymorph.training.finetune_run import finetune as run

    options = dict(
        checkpoint=checkpoint, catalogue=catalogue and str(catalogue), out=out and str(out), task=task,
        label_col=label_col, mask_cols=mask_cols.split(",") if mask_cols else None, volunteers_col=volunteers_col,
        schema=schema, classes=classes.split(",") if classes else None,
        class_weights=_class_weights(class_weights), label_smoothing=label_smoothing, regression_loss=loss,
        bounded=bounded, unfreeze=_unfreeze(unfreeze) if unfreeze is not None else None, head_epochs=head_epochs,
        epochs=epochs, batch_size=batch_size, lr=lr, head_lr=head_lr, layer_decay=layer_decay, dropout=dropout,
        patience=patience, val_fraction=val_fraction, calibrate=calibrate, seed=seed, preprocessing=preprocessing,
        image_size=image_size,
        source_crop=source_crop,
        channels=channels, workers=workers, accelerator=accelerator, devices=devices, precision=precision,
    )
    if config is not None:
        settings = FinetuneConfig.from_yaml(config, **options)
    else:
        settings = FinetuneConfig.from_dict({k: v for k, v in options.items() if v is not None}, source="options")
    best = run(settings)
    Console().print(f"best model: {best}")
