"""Labelled galaxies for fine-tuning: a catalogue's images decoded once into memory, with targets.

Fine-tuning sets are small (tens to thousands of galaxies), so every image is
decoded once (in parallel loader workers) into a uint8 tensor and augmented as a
batch on each epoch, instead of being decoded again every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress
from torch.utils.data import DataLoader, Dataset

from galaxymorph.data.catalogue import (
    CatalogueError,
    read_catalogue,
    read_table,
    resolve_paths,
    vote_columns,
)
from galaxymorph.data.datamodule import AugmentingDataModule
from galaxymorph.data.inputs import GalaxyStream, Records, collate_galaxies
from galaxymorph.data.stream import EpochShuffle, single_last_batch
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.schema import Schema

__all__ = ["LabelledImages", "read_labels", "decode_images", "load_labelled", "split_train_val", "galaxy_loader"]

_SHOWN = 5


@dataclass
class LabelledImages:
    """Decoded images and their targets, row-aligned.

    ``targets``: class index (int64, (N,)) for classification, value (float32, (N, 1))
    for regression, vote counts (float32, (N, A), NaN = question not provided) for a tree,
    masks (uint8, (N, K, S, S), the share of ``volunteers`` who marked each pixel x 255)
    for segmentation (:mod:`galaxymorph.data.masks`).
    """

    ids: list[str]
    images: torch.Tensor  # uint8 (N, C, S, S)
    targets: torch.Tensor
    classes: list[str] | None = None
    volunteers: torch.Tensor | None = None  # segmentation: how many volunteers drew on each galaxy (float32, (N,))

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: np.ndarray | list[int]) -> "LabelledImages":
        index = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        volunteers = None if self.volunteers is None else self.volunteers[index]
        return LabelledImages([self.ids[i] for i in index.tolist()], self.images[index], self.targets[index],
                              self.classes, volunteers)


def _bad_rows(frame: pd.DataFrame, mask: np.ndarray, reason: str, fix: str) -> None:
    """Raise one error naming the first few offending rows (never drop them silently)."""
    rows = np.flatnonzero(mask)
    if len(rows):
        shown = ", ".join(f"row {i} (id_str={frame.at[i, 'id_str']})" for i in rows[:_SHOWN])
        more = f" and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else ""
        raise CatalogueError(f"{len(rows)} of {len(frame)} rows {reason}: {shown}{more}; {fix}")


def read_labels(
    catalogue: str | Path | pd.DataFrame,
    task: str,
    label_col: str | None = None,
    schema: Schema | None = None,
    classes: list[str] | None = None,
    bounded: bool = False,
) -> tuple[pd.DataFrame, torch.Tensor, list[str] | None]:
    """Validated catalogue (absolute ``file_loc``), targets and class names (classification only).

    Classes are the label values as strings, in sorted order unless ``classes`` is given.

    Raises:
        CatalogueError: a missing column, an empty or unknown label, a value outside [0, 1]
            when ``bounded``; the message names the rows and the fix.
    """
    if task == "tree":
        if schema is None:
            raise ValueError("the tree task needs --schema (the new decision tree)")
        frame = read_catalogue(catalogue, schema)
        return frame, torch.from_numpy(frame[vote_columns(schema)].to_numpy(np.float32)), None
    frame, path = read_table(catalogue)
    frame, root = frame.reset_index(drop=True), path.parent if path else Path.cwd()
    if label_col is None:
        raise ValueError(f"the {task} task needs --label-col (the catalogue column holding each galaxy's label)")
    missing = [c for c in ("id_str", "file_loc", label_col) if c not in frame.columns]
    if missing:
        raise CatalogueError(f"catalogue lacks column(s) {missing}; it has {list(frame.columns)[:12]}")
    frame["id_str"] = frame["id_str"].astype(str)
    frame["file_loc"] = resolve_paths(frame["file_loc"], root)
    _bad_rows(frame, frame["file_loc"].isna().to_numpy(), "have no file_loc", "give each galaxy its image file")
    _bad_rows(frame, frame["id_str"].duplicated().to_numpy(), "repeat an id_str", "ids must be unique")
    labels = frame[label_col]
    _bad_rows(frame, labels.isna().to_numpy(), f"have no {label_col!r}", "label them or remove those rows")
    if task == "classification":
        names = sorted(labels.unique().tolist())
        class_names = [str(c) for c in classes] if classes else [str(c) for c in names]
        text = labels.astype(str)
        _bad_rows(frame, (~text.isin(class_names)).to_numpy(), f"have a {label_col!r} not in the classes {class_names}",
                  "fix the labels or the --classes list")
        if len(set(text)) < 2:
            raise CatalogueError(f"{label_col!r} has a single value {text.iloc[0]!r}; classification needs >= 2 classes")
        index = {c: i for i, c in enumerate(class_names)}
        return frame, torch.tensor([index[t] for t in text], dtype=torch.int64), class_names
    if task != "regression":
        raise ValueError(f"task must be classification, regression or tree, got {task!r}")
    values = pd.to_numeric(labels, errors="coerce")
    _bad_rows(frame, ~np.isfinite(values.to_numpy(np.float64)), f"have a non-numeric or infinite {label_col!r}",
              "regression needs finite numbers")
    if bounded:
        _bad_rows(frame, ((values < 0) | (values > 1)).to_numpy(), f"have {label_col!r} outside [0, 1]",
                  "rescale the target or drop --bounded")
    return frame, torch.tensor(values.to_numpy(np.float32)).unsqueeze(1), None


def decode_images(ids: list[str], paths: list[str], prep: Preprocessing, workers: int = 0, progress: bool = True) -> torch.Tensor:
    """All images as uint8 (N, C, stored_size, stored_size), in input order; unreadable files are one error naming the rows.

    Read by the prediction stack (:class:`galaxymorph.data.inputs.GalaxyStream`), so a model
    sees its fine-tuning images exactly as it will see the galaxies it predicts.
    """
    stream = GalaxyStream(Records(listed=list(zip(ids, paths))), prep.to_dict())
    loader = DataLoader(stream, batch_size=64, num_workers=workers, collate_fn=collate_galaxies)
    row = {id_str: i for i, id_str in enumerate(ids)}
    decoded: dict[str, torch.Tensor] = {}
    errors: list[str] = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("decoding images", total=len(ids))
        for batch in loader:
            if batch["image"] is not None:
                decoded.update(zip(batch["id_str"], batch["image"]))
            errors += [f"row {row[id_str]} ({reason})" for id_str, _, reason in batch["errors"]]
            bar.advance(task, len(batch["id_str"]) + len(batch["errors"]))
    if errors:
        raise CatalogueError(
            f"{len(errors)} of {len(ids)} images cannot be read, e.g. {'; '.join(sorted(errors)[:3])}; "
            "fix or remove those rows"
        )
    if not ids:
        return torch.zeros((0, prep.channels, prep.stored_size, prep.stored_size), dtype=torch.uint8)
    return torch.stack([decoded[id_str] for id_str in ids])


def load_labelled(
    catalogue: str | Path | pd.DataFrame,
    task: str,
    preprocessing: dict[str, Any],
    label_col: str | None = None,
    schema: Schema | None = None,
    classes: list[str] | None = None,
    bounded: bool = False,
    workers: int = 0,
    progress: bool = True,
) -> LabelledImages:
    """A catalogue's labels checked and its images decoded as the encoder expects (``preprocessing``)."""
    frame, targets, class_names = read_labels(catalogue, task, label_col, schema, classes, bounded)
    prep = Preprocessing.from_dict(preprocessing)
    ids = frame["id_str"].astype(str).tolist()
    images = decode_images(ids, frame["file_loc"].tolist(), prep, workers, progress)
    return LabelledImages(ids, images, targets, class_names)


def split_train_val(data: LabelledImages, val_fraction: float, seed: int = 0) -> tuple[LabelledImages, LabelledImages]:
    """A seeded random split; stratified by class for classification so rare classes reach both sides."""
    from sklearn.model_selection import train_test_split

    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rows = np.arange(len(data))
    stratify = data.targets.numpy() if data.classes is not None else None
    if stratify is not None and np.bincount(stratify).min() < 2:
        stratify = None  # a class with one example cannot be on both sides
    train_rows, val_rows = train_test_split(rows, test_size=val_fraction, random_state=seed, stratify=stratify)
    return data.subset(np.sort(train_rows)), data.subset(np.sort(val_rows))


class _Rows(Dataset):
    def __init__(self, data: LabelledImages) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = {"image": self.data.images[i], "target": self.data.targets[i], "id_str": self.data.ids[i]}
        return row if self.data.volunteers is None else {**row, "volunteers": self.data.volunteers[i]}


def galaxy_loader(data: LabelledImages, batch_size: int, pin_memory: bool = False) -> DataLoader:
    """The galaxies in order, as stored: ``{"image" (uint8), "target", "id_str"}`` batches, as predict reads them."""
    return DataLoader(_Rows(data), batch_size=batch_size, pin_memory=pin_memory)


class LabelledDataModule(AugmentingDataModule):
    """Fine-tuning batches ``{"image", "target", "id_str"}`` of decoded images, augmented on the device."""

    def __init__(self, train_set: LabelledImages, val_set: LabelledImages, preprocessing: Preprocessing,
                 batch_size: int, seed: int = 0, pin_memory: bool = False) -> None:
        super().__init__(preprocessing, torch.Generator().manual_seed(seed))
        self.train_set, self.val_set, self.batch_size, self.seed = train_set, val_set, batch_size, seed
        self.pin_memory = pin_memory

    def train_dataloader(self) -> DataLoader:
        galaxies = len(self.train_set)
        return DataLoader(_Rows(self.train_set), batch_size=self.batch_size, sampler=EpochShuffle(galaxies, self.seed),
                          drop_last=single_last_batch(galaxies, self.batch_size), pin_memory=self.pin_memory)

    def val_dataloader(self) -> DataLoader:
        return galaxy_loader(self.val_set, max(self.batch_size, 64), self.pin_memory)
