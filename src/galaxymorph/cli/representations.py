"""``galaxymorph embed``, ``similar`` and ``anomalies``: encoder features, neighbours and outliers."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from galaxymorph.cli.options import CATALOGUE_HELP, warn_unreadable, warnings_as_lines

__all__ = ["embed", "similar", "anomalies"]


def embed(
    checkpoint: str = typer.Option(..., help="Training or fine-tuning run (RUN/ or RUN/best/), or an encoder alone: "
                                   "a Hugging Face style timm folder or hf_hub:ORG/NAME."),
    out: Path = typer.Option(..., help="Parquet file: id_str, file_loc, embedding."),
    images: Path = typer.Option(None, help="A folder of images (id_str = file name without suffix)."),
    catalogue: Path = typer.Option(None, "--catalog", help="A catalogue with id_str and file_loc."),
    shards: str = typer.Option(None, help="A shard folder (with manifest.json), or its URL (see docs/training.md)."),
    split: str = typer.Option(None, help="Shards: only this split."),
    pca: int = typer.Option(None, min=1, help="Keep only the first K principal components (full features kept beside)."),
    preprocessing: str = typer.Option(None, help="Encoders alone: galaxymorph | zoobot. (default zoobot for Zoobot's "
                                       "encoders, else galaxymorph)"),
    image_size: int = typer.Option(None, min=1, help="Encoders alone: model input px. (default 224 zoobot, 64 galaxymorph)"),
    batch_size: int = typer.Option(64, min=1),
    workers: int = typer.Option(0, min=0, help="Image-decoding worker processes."),
    accelerator: str = typer.Option("auto", help="auto | cpu | gpu | mps."),
    devices: int = typer.Option(1, min=1, help="Data-parallel processes on this node."),
    precision: str = typer.Option("32-true", help="Lightning precision: 32-true, bf16-mixed, 16-mixed."),
) -> None:
    """Encoder features per galaxy, streamed to Parquet; re-run the same command to resume."""
    from galaxymorph.representations import embed as run
    from galaxymorph.representations.embed import features_path

    counts = run(checkpoint, out, images_dir=images, catalogue=catalogue, shards=shards, split=split, pca=pca,
                 preprocessing=preprocessing, image_size=image_size, batch_size=batch_size, workers=workers,
                 accelerator=accelerator, devices=devices, precision=precision)
    Console().print(f"{out}: {counts['rows']} galaxies ({counts['new']} new, {counts['errors']} unreadable)")
    warn_unreadable(features_path(out, pca))


def similar(
    embeddings: Path = typer.Option(..., help="Parquet file from `galaxymorph embed`."),
    query: str = typer.Option(..., help="id_str of the galaxy to find look-alikes of."),
    k: int = typer.Option(8, min=1, help="How many galaxies to show, the query included."),
    grid: Path = typer.Option(None, help="Also draw them into this PNG."),
    exact: bool = typer.Option(False, help="Exact search even for large sets (no index)."),
    catalogue: Path = typer.Option(None, "--catalog", help=CATALOGUE_HELP),
) -> None:
    """Nearest neighbours by cosine similarity: exact for small sets, else a saved HNSW index (built on first use)."""
    from galaxymorph.data.images import MissingImagesWarning
    from galaxymorph.data.inputs import image_paths
    from galaxymorph.outputs import claim_picture
    from galaxymorph.representations import image_grid, neighbour_index, read_embeddings
    from galaxymorph.representations import similar as search

    if grid:
        claim_picture(grid)
    frame, vectors, _ = read_embeddings(embeddings)
    found = search(frame, vectors, query, k, neighbour_index(embeddings, vectors, approximate=False if exact else None))
    Console().print(found[["rank", "id_str", "similarity"]].to_string(index=False))
    if len(found) < k:
        Console(stderr=True).print(f"[yellow]note:[/yellow] --k {k} is more than the {len(found)} galaxies in "
                                   f"{embeddings}: all of them are shown", soft_wrap=True)  # paths unbroken
    if grid:
        captions = [f"{i} ({s:.3f})" for i, s in zip(found["id_str"], found["similarity"])]
        with warnings_as_lines(MissingImagesWarning):
            image_grid(image_paths(found, catalogue), captions, grid, title=f"most similar to {query} (cosine)")
        Console().print(f"grid: {grid}")


def anomalies(
    embeddings: Path = typer.Option(..., help="Parquet file from `galaxymorph embed`."),
    out: Path = typer.Option(None, help="CSV of every galaxy's score (id_str, file_loc, anomaly_score), highest first."),
    method: str = typer.Option("knn", help="knn (cosine distance to the k-th neighbour) | isolation-forest."),
    k: int = typer.Option(10, min=1, help="knn: which neighbour's distance."),
    top: int = typer.Option(20, min=1, help="How many of the most unusual galaxies to list and draw."),
    grid: Path = typer.Option(None, help="Draw the most unusual galaxies into this PNG."),
    seed: int = typer.Option(0),
    exact: bool = typer.Option(False, help="knn: exact search even for large sets (no index)."),
    catalogue: Path = typer.Option(None, "--catalog", help=CATALOGUE_HELP),
) -> None:
    """Anomaly scores from embeddings; the most unusual galaxies as a table and an image grid."""
    from galaxymorph.data.images import MissingImagesWarning
    from galaxymorph.data.inputs import image_paths
    from galaxymorph.outputs import claim_picture, claim_table
    from galaxymorph.representations import (
        anomaly_scores,
        image_grid,
        neighbour_index,
        read_embeddings,
    )

    if out:
        claim_table(out, ["id_str", "anomaly_score"])
    if grid:
        claim_picture(grid)
    frame, vectors, _ = read_embeddings(embeddings)
    index = neighbour_index(embeddings, vectors, approximate=False if exact else None) if method == "knn" else None
    frame["anomaly_score"] = anomaly_scores(vectors, method, k, seed, index)
    if catalogue:
        frame["file_loc"] = image_paths(frame, catalogue)
    ranked = frame.sort_values("anomaly_score", ascending=False, kind="stable")
    if out:
        ranked.to_csv(out, index=False)
    Console().print(ranked.head(top)[["id_str", "anomaly_score"]].to_string(index=False))
    if grid:
        shown = ranked.head(top)
        captions = [f"{i} ({s:.3g})" for i, s in zip(shown["id_str"], shown["anomaly_score"])]
        with warnings_as_lines(MissingImagesWarning):
            image_grid(image_paths(shown), captions, grid, title=f"most unusual ({method})")
        Console().print(f"grid: {grid}")
