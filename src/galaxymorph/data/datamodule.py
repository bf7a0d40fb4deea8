"""Batches for training, validation, testing and prediction, from shards or a catalogue.

Loaders yield uint8 images so workers only copy bytes; the float conversion and
augmentation run on the whole batch in ``on_after_batch_transfer`` (on the
training device), random for training and deterministic otherwise.

Shards stream through ``webdataset`` (bounded memory: a shuffle buffer, not the
data set); shards are split between DDP ranks and between loader workers as every
reader splits them (``data.inputs.shard_share``), so each galaxy is read once per
epoch. Training batches come from ``data.stream``: an
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
from torch.utils.data import DataLoader, Dataset, IterableDataset

from galaxymorph.data.catalogue import (
    read_catalogue,
    vote_columns,
)
from galaxymorph.data.inputs import Records, worker_share
from galaxymorph.data.shards import (
    SPLITS,
    assign_splits,
    check_shards_per_process,
    decode_sample,
    is_shard_source,
    read_manifest,
    shard_files,
)
from galaxymorph.data.stream import EpochShuffle, ShardSamples, TrainBatches, batches_per_epoch, single_last_batch
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
        self._generator = generator
        self._train_transform = train_transform(preprocessing, generator)
        self._eval_transform = eval_transform(preprocessing)

    def state_dict(self) -> dict[str, Any]:
        """The augmentation generator's state, kept in checkpoints: a resumed run augments as it would have."""
        return {"augmentation_rng": self._generator.get_state()} if self._generator is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._generator is not None and "augmentation_rng" in state_dict:
            self._generator.set_state(state_dict["augmentation_rng"])

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

    def _rank_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)

    def _train_batches(self) -> TrainBatches:
        files = shard_files(self.source, "train", self.manifest)
        rank, world = self._rank_world()
        samples = ShardSamples([location for location, _ in files], [count for _, count in files], decode_sample,
                               self.seed, self.shuffle_buffer, rank, world, self.num_workers)
        return TrainBatches(samples, self.batch_size, self.train_batches_per_epoch(world), collate, self._global_step,
                            self.pin_memory)

    def evaluation_loader(self, split: str, rank: int = 0, world: int = 1) -> DataLoader:
        """A split's batches in a fixed order, deterministic transform: process ``rank`` of ``world``'s share.

        The validation loop takes each process's share; the pass that finishes a run
        (calibration, OOD reference) takes every galaxy in one process (the defaults).
        """
        generator = torch.Generator().manual_seed(self.seed)  # see TrainBatches: never torch's global one
        if self.is_shards:
            records = Records.from_shards(self.source, split, self.manifest)
            check_shards_per_process(split, len(records.shards or []), world)
            return DataLoader(_SplitSamples(records, rank, world), batch_size=self.batch_size, collate_fn=collate,
                              num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                              pin_memory=self.pin_memory, generator=generator)
        self.setup()
        return DataLoader(self._datasets[split], batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          collate_fn=collate, persistent_workers=self.num_workers > 0, pin_memory=self.pin_memory)

    def train_dataloader(self) -> DataLoader | TrainBatches:
        if self.is_shards:
            return self._train_batches()
        self.setup()
        galaxies = len(self._datasets["train"])
        return DataLoader(self._datasets["train"], batch_size=self.batch_size, sampler=EpochShuffle(galaxies, self.seed),
                          drop_last=single_last_batch(galaxies, self.batch_size),
                          num_workers=self.num_workers, collate_fn=collate, persistent_workers=self.num_workers > 0,
                          pin_memory=self.pin_memory)

    def val_dataloader(self) -> DataLoader:
        # a catalogue's map-style loader is split between processes by Lightning's sampler
        return self.evaluation_loader("val", *(self._rank_world() if self.is_shards else (0, 1)))

    def test_dataloader(self) -> DataLoader:
        return self.evaluation_loader("test", *(self._rank_world() if self.is_shards else (0, 1)))


class _SplitSamples(IterableDataset):
    """A split's shard samples, decoded; each (process, loader worker) slot reads its own share."""

    def __init__(self, records: Records, rank: int, world: int) -> None:
        self.records, self.rank, self.world = records, rank, world

    def __iter__(self):
        for _, sample in worker_share(self.records, self.rank, self.world):
            yield decode_sample(sample)
