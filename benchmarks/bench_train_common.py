"""Shared by the training benchmarks: cached GZ2 shards, test-split predictions, a throughput probe.

Not a benchmark itself. Work files go to ``runs/bench_train/`` (git-ignored), or ``$GALAXYMORPH_BENCH_WORK``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from galaxymorph.data.datamodule import GalaxyDataModule
from galaxymorph.data.kaggle_gz2 import kaggle_to_catalogue
from galaxymorph.data.shards import write_shards
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.models import GalaxyModel
from galaxymorph.predict.predictor import posterior_samples

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("GALAXYMORPH_BENCH_WORK", ROOT / "runs" / "bench_train"))
GZ2 = Path(os.environ.get("GALAXYMORPH_GZ2", ROOT.parent / "shared" / "data" / "gz2_kaggle"))  # another checkout: set it
# The galaxy sits in the central ~207 of 424 px; keep 0.65 of the frame (276 px) so the
# 0.7-0.8 training zoom-crop still covers it, store at 96 px, train at 64 px.
GZ2_PREPROCESSING = Preprocessing(stored_size=96, source_crop=0.65, image_size=64, channels=3)
SPLIT_SEED = 0  # fixed train/val/test split (80/10/10 by hash of id_str): the same for every benchmark


def add_shift_option(parser: argparse.ArgumentParser) -> None:
    """``--shift``: the training crop's largest offset (``TrainConfig.train_shift``)."""
    parser.add_argument("--shift", type=float, default=None,
                        help="largest training-crop offset, fraction of the frame (default: the shards', 0.03; 0.5: anywhere)")


def shift_suffix(shift: float | None) -> str:
    """Run-folder suffix for a ``--shift`` given on the command line, so runs of other settings never resume each other."""
    return "" if shift is None else f"_shift{shift:g}"


def hhmmss(minutes: float) -> str:
    """A budget in minutes as Lightning's ``HH:MM:SS`` ``max_time``."""
    seconds = int(minutes * 60)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def gz2_shards(prep: Preprocessing = GZ2_PREPROCESSING, workers: int = 2) -> Path:
    """Kaggle GZ2 -> gz2 catalogue -> shards, once (resumable); returns the shard folder."""
    if not (GZ2 / "labels.csv").is_file():
        raise SystemExit(f"real GZ2 data not found at {GZ2}")
    out = WORK / f"gz2_shards_{prep.stored_size}px_crop{prep.source_crop}"
    if not (out / "manifest.json").is_file():
        catalogue = WORK / "gz2_catalogue.parquet"
        kaggle_to_catalogue(GZ2 / "labels.csv", GZ2 / "images", out=catalogue)
        write_shards(catalogue, "gz2", out, prep, val_fraction=0.1, test_fraction=0.1, seed=SPLIT_SEED,
                     workers=workers, shard_size=500)
    return out


@torch.no_grad()
def predict_split(model: GalaxyModel, shards: Path, split: str = "test", samples: int = 5, tta: bool = False,
                  batch_size: int = 128):
    """(ids, concentrations (G, A, S), vote counts (G, A)) of a split, deterministic eval transform.

    ``samples`` MC-dropout masks per view; ``tta`` adds the 8 rotation/flip views as
    further samples of the posterior mixture (S = 8 x samples).
    """
    prep = Preprocessing.from_dict(model.config["preprocessing"])
    data = GalaxyDataModule(shards, preprocessing=prep, batch_size=batch_size)
    model.eval()
    ids, conc, votes = [], [], []
    loader = data.test_dataloader() if split == "test" else data.val_dataloader()
    for batch in loader:
        x = data.transform_batch(batch, train=False)["image"]
        conc.append(posterior_samples(model, x, samples, tta).numpy())
        ids += batch["id_str"]
        votes.append(batch["votes"].numpy())
    return ids, np.concatenate(conc), np.concatenate(votes)


class Throughput(L.Callback):
    """Training images per second: time between consecutive training batch ends (data loading
    included) after ``warmup`` steps, skipping the gaps that contain a validation run.

    With ``stop=True`` the run ends after ``steps`` measured steps.
    """

    def __init__(self, warmup: int = 5, steps: int = 30, stop: bool = True) -> None:
        self.warmup, self.steps, self.stop = warmup, steps, stop
        self.images, self.seconds, self.last_end = 0, 0.0, None

    def on_validation_start(self, trainer, pl_module) -> None:
        self.last_end = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self.last_end is not None and trainer.global_step > self.warmup:
            self.seconds += now - self.last_end
            self.images += batch["image"].shape[0]
        self.last_end = now
        if self.stop and trainer.global_step >= self.warmup + self.steps:
            trainer.should_stop = True

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else float("nan")
