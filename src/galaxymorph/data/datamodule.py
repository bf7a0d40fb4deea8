"""Batches for training, validation, testing and prediction, from shards or a catalogue.

Loaders yield uint8 images so workers only copy bytes; the float conversion and
augmentation run on the whole batch in ``on_after_batch_transfer`` (on the
training device), random for training and deterministic otherwise.

Shards stream through ``webdataset`` (bounded memory: a shuffle buffer, not the
data set); shards are split between DDP ranks and between loader workers, so each
galaxy is read once per epoch. Training batches come from ``data.stream``: an
order fixed by (seed, epoch) that a resumed run continues exactly, and under DDP
an equal number of batches per rank (DDP needs equal step counts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import webdataset as wds
from torch.utils.data import DataLoader, Dataset

from galaxymorph.data.catalogue import (
    read_catalogue,
    vote_columns,
)
from galaxymorph.data.shards import (
    SPLITS,
    assign_splits,
    check_shards_per_process,
    decode_sample,
    is_shard_source,
    read_manifest,
    shard_files,
)
from galaxymorph.data.stream import ShardSamples, TrainBatches, batches_per_epoch
from galaxymorph.data.transforms import Preprocessing, eval_transform, train_transform
from galaxymorph.schema import Schema, get_schema

__all__ = ["AugmentingDataModule", "CatalogueDataset", "GalaxyDataModule", "collate"]



def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Samples with uint8 HWC images -> ``{"image": uint8 (B, C, H, W), "votes": (B, A), "id_str": [...]}``."""
    images = torch.from_numpy(np.stack([s["image"] for s in samples])).permute(0, 3, 1, 2)
    return {
        "image": images,  # channels_last memory layout, which CPU convolutions prefer
        "votes": torch.from_numpy(np.stack([s["votes"] for s in samples]).astype(np.float32)),
        "id_str": [s["id_str"] for s in samples],
    }


class CatalogueDataset(Dataset):
    """Map-style dataset over validated catalogue rows, decoding images on the fly (or once, ``in_memory``)."""

    def __init__(self, df: pd.DataFrame, schema: Schema, prep: Preprocessing, in_memory: bool = False):
        self.paths = df["file_loc"].tolist()
        self.ids = df["id_str"].tolist()
        self.votes = df[vote_columns(schema)].to_numpy(np.float32)
        self.prep = prep
        self.cache = [self._load(i) for i in range(len(self))] if in_memory else None

    def __len__(self) -> int:
        return len(self.ids)

    def _load(self, i: int) -> np.ndarray:
        return self.prep.read(self.paths[i])

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = self.cache[i] if self.cache is not None else self._load(i)
        return {"image": image, "votes": self.votes[i], "id_str": self.ids[i]}


class AugmentingDataModule(L.LightningDataModule):
    """Loaders give uint8 batches; on the device, training batches get the random augmentation, others the fixed transform.

    Training (:class:`GalaxyDataModule`) and fine-tuning (``data.labelled.LabelledDataModule``)
    both augment this one way. ``generator`` seeds the augmentation (None: torch's global RNG).
    """

    def __init__(self, preprocessing: Preprocessing, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.preprocessing = preprocessing
        self._train_transform = train_transform(preprocessing, generator)
        self._eval_transform = eval_transform(preprocessing)

    def transform_batch(self, batch: dict[str, Any], train: bool) -> dict[str, Any]:
        """uint8 batch -> model batch: random augmentation if ``train``, else the deterministic transform."""
        transform = self._train_transform if train else self._eval_transform
        return {**batch, "image": transform(batch["image"])}

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        training = self.trainer is not None and self.trainer.training
        return self.transform_batch(batch, train=training)


class GalaxyDataModule(AugmentingDataModule):
    """Lightning data over a shard directory (streamed) or a catalogue (small data).

    Args:
        source: a shard directory (with ``manifest.json``) or its URL, or a catalogue file / DataFrame.
        schema: needed for a catalogue; read from the manifest for shards.
        preprocessing: for shards, defaults to the manifest's (its stored pixels are fixed);
            for a catalogue, defaults to ``Preprocessing()``.
        image_size: model input size, overriding ``preprocessing.image_size``.
        batch_size: as for ``DataLoader``.
        num_workers: as for ``DataLoader``.
        shuffle_buffer: samples held for shuffling a shard stream (bounds memory).
        seed: shard order / shuffle seed, and for a catalogue the split seed.
        val_fraction: share of a catalogue's galaxies for validation (hash of id_str, as for shards).
        test_fraction: share for the test split, likewise.
        on_error: for a catalogue, ``"raise"`` or ``"skip"`` bad rows (see ``read_catalogue``).
        in_memory: for a catalogue, decode every image once and keep it in RAM.
        pin_memory: page-locked batches, so copies to a CUDA GPU overlap compute (``accelerators.pin_memory``).

    Example:
        >>> dm = GalaxyDataModule("shards/", batch_size=64, num_workers=2, image_size=64)  # doctest: +SKIP
        >>> trainer.fit(model, datamodule=dm)  # doctest: +SKIP
    """

    def __init__(
        self,
        source: str | Path | pd.DataFrame,
        schema: Schema | str | None = None,
        preprocessing: Preprocessing | None = None,
        image_size: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        shuffle_buffer: int = 2000,
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        on_error: str = "raise",
        in_memory: bool = False,
        pin_memory: bool = False,
    ):
        self.source = source
        self.is_shards = not isinstance(source, pd.DataFrame) and is_shard_source(source)
        if self.is_shards:
            self.manifest = read_manifest(source)
            self.schema = Schema.from_dict(self.manifest["schema"])
            if schema is not None and (get_schema(schema) if isinstance(schema, str) else schema) != self.schema:
                raise ValueError(f"schema {getattr(schema, 'name', schema)!r} differs from the shards' ({self.schema.name})")
            stored = Preprocessing.from_dict(self.manifest["preprocessing"])
            prep = preprocessing or stored
            if (prep.stored_size, prep.source_crop) != (stored.stored_size, stored.source_crop):
                raise ValueError(f"shards hold {stored.stored_size} px at source_crop {stored.source_crop}; preprocessing says otherwise")
        else:
            if schema is None:
                raise ValueError("a catalogue source needs a schema (e.g. schema='gz2')")
            self.schema = get_schema(schema) if isinstance(schema, str) else schema
            prep = preprocessing or Preprocessing()
        if image_size is not None:
            prep = Preprocessing.from_dict({**prep.to_dict(), "image_size": image_size})
        super().__init__(prep)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.on_error, self.in_memory, self.pin_memory = on_error, in_memory, pin_memory
        self._datasets: dict[str, Dataset] = {}

    # --- catalogue mode ---------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.is_shards or self._datasets:
            return
        df = read_catalogue(self.source, self.schema, on_error=self.on_error)
        split = assign_splits(df["id_str"], self.seed, self.val_fraction, self.test_fraction)
        for name in SPLITS:
            part = df[split == name].reset_index(drop=True)
            self._datasets[name] = CatalogueDataset(part, self.schema, self.preprocessing, self.in_memory)

    def split_size(self, split: str) -> int:
        """Number of galaxies in a split (from the manifest, or the catalogue after ``setup``)."""
        if self.is_shards:
            return self.manifest["splits"][split]["count"]
        self.setup()
        return len(self._datasets[split])

    # --- loaders --------------------------------------------------------------
    def train_batches_per_epoch(self, world: int = 1) -> int:
        """Training steps per epoch: fixed from the counts, since a stream has no length (see ``data.stream``)."""
        return batches_per_epoch(self.split_size("train"), self.batch_size, world)

    def _global_step(self) -> int:
        return self.trainer.global_step if self.trainer is not None else 0

    def _shard_loader(self, split: str, train: bool) -> DataLoader | TrainBatches:
        files = shard_files(self.source, split, self.manifest)
        urls = [location for location, _ in files]
        world = self.trainer.world_size if self.trainer is not None else 1
        check_shards_per_process(split, len(urls), world)
        if train:
            counts = [count for _, count in files]
            rank = self.trainer.global_rank if self.trainer is not None else 0
            samples = ShardSamples(urls, counts, decode_sample, self.seed, self.shuffle_buffer, rank, world,
                                   self.num_workers)
            return TrainBatches(samples, self.batch_size, self.train_batches_per_epoch(world), collate, self._global_step,
                                self.pin_memory)
        dataset = wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.split_by_node,
                                 workersplitter=wds.split_by_worker, empty_check=False)
        dataset = dataset.map(decode_sample).batched(self.batch_size, collation_fn=collate, partial=True)
        return DataLoader(dataset, batch_size=None, num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=self.pin_memory, generator=torch.Generator().manual_seed(self.seed))  # see TrainBatches

    def _loader(self, split: str, train: bool) -> DataLoader | TrainBatches:
        if self.is_shards:
            return self._shard_loader(split, train)
        self.setup()
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self._datasets[split], batch_size=self.batch_size, shuffle=train, generator=generator,
            num_workers=self.num_workers, collate_fn=collate, persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader | TrainBatches:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
