"""``galaxymorph finetune``, ``embed``, ``similar`` and ``anomalies``: reuse a trained encoder."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

__all__ = ["finetune", "embed", "similar", "anomalies"]


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
    checkpoint: Path = typer.Option(None, help="galaxymorph RUN/ or RUN/best/, or a Hugging Face style timm folder."),
    catalog: Path = typer.Option(None, help="CSV/Parquet: id_str, file_loc, and the label column (or the tree's votes)."),
    out: Path = typer.Option(None, help="Run folder: best/ model (usable by `galaxymorph predict`), logs/."),
    task: str = typer.Option(None, help="classification | regression | tree. (default classification)"),
    label_col: str = typer.Option(None, help="Catalogue column with each galaxy's label (classification, regression)."),
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
    seed: int = typer.Option(None, help="(default 0)"),
    image_size: int = typer.Option(None, help="timm folders only: model input px. (default 64)"),
    source_crop: float = typer.Option(None, help="timm folders only: central fraction of each image kept. (default 1)"),
    channels: int = typer.Option(None, help="timm folders only: 1 or 3. (default: as saved)"),
    workers: int = typer.Option(None, help="Image-decoding worker processes. (default 0)"),
    config: Path = typer.Option(None, help="YAML file with any FinetuneConfig settings (options given here win)."),
) -> None:
    """Fine-tune a pretrained encoder on a labelled catalogue; the best model goes to OUT/best/."""
    from galaxymorph.files import read_mapping
    from galaxymorph.models.config import settings_from_dict
    from galaxymorph.models.finetune import FinetuneConfig
    from galaxymorph.models.finetune import finetune as run

    options = dict(
        checkpoint=checkpoint and str(checkpoint), catalog=catalog and str(catalog), out=out and str(out), task=task,
        label_col=label_col, schema=schema, classes=classes.split(",") if classes else None,
        class_weights=_class_weights(class_weights), label_smoothing=label_smoothing, regression_loss=loss,
        bounded=bounded, unfreeze=_unfreeze(unfreeze) if unfreeze is not None else None, head_epochs=head_epochs,
        epochs=epochs, batch_size=batch_size, lr=lr, head_lr=head_lr, layer_decay=layer_decay, dropout=dropout,
        patience=patience, val_fraction=val_fraction, seed=seed, image_size=image_size, source_crop=source_crop,
        channels=channels, workers=workers,
    )
    settings = read_mapping(config, kind="YAML") if config else {}
    settings.update({k: v for k, v in options.items() if v is not None})
    best = run(settings_from_dict(FinetuneConfig, settings, str(config or "options")))
    Console().print(f"best model: {best}")


def embed(
    checkpoint: Path = typer.Option(..., help="Training or fine-tuning run (RUN/ or RUN/best/)."),
    out: Path = typer.Option(..., help="Parquet file: id_str, file_loc, embedding."),
    images: Path = typer.Option(None, help="A folder of images (id_str = file name without suffix)."),
    catalog: Path = typer.Option(None, help="A catalogue with id_str and file_loc."),
    shards: str = typer.Option(None, help="A shard folder (with manifest.json), or its URL (see docs/training.md)."),
    split: str = typer.Option(None, help="Shards: only this split."),
    pca: int = typer.Option(None, help="Keep only the first K principal components (full features kept beside)."),
    batch_size: int = typer.Option(64, min=1),
    workers: int = typer.Option(0, help="Image-decoding worker processes."),
) -> None:
    """Encoder features per galaxy, streamed to Parquet; re-run the same command to resume."""
    from galaxymorph.representations import embed as run

    counts = run(checkpoint, out, images_dir=images, catalog=catalog, shards=shards, split=split, pca=pca,
                 batch_size=batch_size, workers=workers)
    Console().print(f"{out}: {counts['rows']} galaxies ({counts['new']} new, {counts['errors']} unreadable)")


def similar(
    embeddings: Path = typer.Option(..., help="Parquet file from `galaxymorph embed`."),
    query: str = typer.Option(..., help="id_str of the galaxy to find look-alikes of."),
    k: int = typer.Option(8, min=1, help="How many galaxies to show, the query included."),
    grid: Path = typer.Option(None, help="Also draw them into this PNG."),
) -> None:
    """Nearest neighbours by cosine similarity (scikit-learn NearestNeighbors, exact search)."""
    from galaxymorph.representations import image_grid, read_embeddings
    from galaxymorph.representations import similar as search

    frame, vectors, _ = read_embeddings(embeddings)
    found = search(frame, vectors, query, k)
    Console().print(found[["rank", "id_str", "similarity"]].to_string(index=False))
    if grid:
        captions = [f"{i} ({s:.3f})" for i, s in zip(found["id_str"], found["similarity"])]
        image_grid(found["file_loc"].tolist(), captions, grid, title=f"most similar to {query} (cosine)")
        Console().print(f"grid: {grid}")


def anomalies(
    embeddings: Path = typer.Option(..., help="Parquet file from `galaxymorph embed`."),
    out: Path = typer.Option(None, help="CSV of every galaxy's score (id_str, file_loc, anomaly_score), highest first."),
    method: str = typer.Option("knn", help="knn (cosine distance to the k-th neighbour) | isolation-forest."),
    k: int = typer.Option(10, min=1, help="knn: which neighbour's distance."),
    top: int = typer.Option(20, help="How many of the most unusual galaxies to list and draw."),
    grid: Path = typer.Option(None, help="Draw the most unusual galaxies into this PNG."),
    seed: int = typer.Option(0),
) -> None:
    """Anomaly scores from embeddings; the most unusual galaxies as a table and an image grid."""
    from galaxymorph.representations import anomaly_scores, image_grid, read_embeddings

    frame, vectors, _ = read_embeddings(embeddings)
    frame["anomaly_score"] = anomaly_scores(vectors, method, k, seed)
    ranked = frame.sort_values("anomaly_score", ascending=False, kind="stable")
    if out:
        ranked.to_csv(out, index=False)
    Console().print(ranked.head(top)[["id_str", "anomaly_score"]].to_string(index=False))
    if grid:
        shown = ranked.head(top)
        captions = [f"{i} ({s:.3g})" for i, s in zip(shown["id_str"], shown["anomaly_score"])]
        image_grid(shown["file_loc"].tolist(), captions, grid, title=f"most unusual ({method})")
        Console().print(f"grid: {grid}")

