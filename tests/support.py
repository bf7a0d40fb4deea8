"""Helpers the test modules share: they import them from here, never from one another.

Not a test module (pytest collects nothing here); the fixtures built from these helpers live in
``conftest.py``. A subprocess started by a test imports them too, with this folder on ``sys.path``.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from timm.models._hub import save_for_hf
from torch import nn
from torch.utils.data import DataLoader, Dataset

from galaxymorph.data.transforms import Preprocessing
from galaxymorph.models.head import keyed_dropout
from galaxymorph.schema import Question, Schema, get_schema
from galaxymorph.training import TrainConfig, train

# --- a stand-in model and streams of tiny images, for predict ------------------------------

TINY = Schema("tiny", [Question("shape", ("round", "disk")), Question("bar", ("yes", "no"), after=("shape_disk",))])


class TinyModel(nn.Module):
    """Stand-in with the contract's API: ``features`` once, ``sample`` (MC dropout) n times."""

    def __init__(self, size: int = 4):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.linear = nn.Linear(4, TINY.n_answers)
        prep = Preprocessing(stored_size=size, image_size=size, train_zoom=(1.0, 1.0))
        self.config = {"schema": TINY.to_dict(), "preprocessing": prep.to_dict()}
        self.feature_calls = 0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.feature_calls += 1
        return self.encoder(x)

    def sample(self, features: torch.Tensor, n: int, keys: torch.Tensor | None = None) -> torch.Tensor:
        if n == 1:
            return (1 + F.softplus(self.linear(features)))[..., None]
        if keys is None:
            masked = torch.stack([F.dropout(features, 0.5, training=True) for _ in range(n)])
        else:
            masked = keyed_dropout(features, n, 0.5, keys).view(n, *features.shape)
        return torch.stack([1 + F.softplus(self.linear(m)) for m in masked], dim=-1)


def pixel_records(n: int, size: int = 4, fail_after: int | None = None, rss: list | None = None):
    """A generator of n tiny random images; optionally crashes after ``fail_after`` records."""
    rng = np.random.default_rng(0)
    for i in range(n):
        if fail_after is not None and i == fail_after:
            raise RuntimeError("simulated crash")
        if rss is not None and i % 10_000 == 0:
            rss.append(_rss_mb())
        yield f"g{i:06d}", rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def slow_records(n: int, delay: float):
    """Like :func:`pixel_records`, slowly, so a process can be killed half way."""
    for record in pixel_records(n):
        time.sleep(delay)
        yield record


# --- the toy training task -------------------------------------------------------------------

TOY_SCHEMA = Schema(
    "toy",
    [Question("shape", ("round", "disk")), Question("bar", ("yes", "no"), after=("shape_disk",))],
)
TOY_SIZE = 32
TOY_ARCH = "test_efficientnet"  # toy_config's


class _Galaxies(Dataset):
    def __init__(self, images, votes, ids):
        self.images, self.votes, self.ids = images, votes, ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"image": self.images[i], "votes": self.votes[i], "id_str": self.ids[i]}


class ToyDataModule(L.LightningDataModule):
    """Bright galaxies are voted round, dark ones disks; ``delay`` seconds per batch slows steps down.

    It stands in for ``galaxymorph.data.GalaxyDataModule`` (same batch dicts, ``.schema``,
    ``.preprocessing``): the image brightness sets the vote split, so there is something to learn in a few steps.
    """

    def __init__(self, n: int = 64, batch_size: int = 8, delay: float = 0.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        level = torch.rand(n, generator=g)
        noise = 0.05 * torch.randn(n, 3, TOY_SIZE, TOY_SIZE, generator=g)
        images = (0.1 + 0.8 * level[:, None, None, None] + noise).clamp(0, 1)
        round_votes = torch.binomial(torch.full((n,), 20.0), level, generator=g)
        disk = 20 - round_votes
        bar = torch.binomial(disk, torch.full((n,), 0.3), generator=g)
        votes = torch.stack([round_votes, disk, bar, disk - bar], dim=1)
        ids = [f"toy{i}" for i in range(n)]
        cut = n * 3 // 4
        self.train_set = _Galaxies(images[:cut], votes[:cut], ids[:cut])
        self.val_set = _Galaxies(images[cut:], votes[cut:], ids[cut:])
        self.batch_size, self.delay = batch_size, delay
        self.schema = TOY_SCHEMA
        self.preprocessing = {"stored_size": TOY_SIZE, "image_size": TOY_SIZE, "channels": 3, "source_crop": 1.0}

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        time.sleep(self.delay)
        return batch


def make_toy_shards(root: Path) -> Path:
    """The toy galaxies as PNG files, sharded by the real data pipeline (32 px, 96 galaxies)."""
    from galaxymorph.data.shards import write_shards

    (root / "images").mkdir()
    data = ToyDataModule(n=96)
    rows = []
    for part in (data.train_set, data.val_set):
        for image, votes, id_str in zip(part.images, part.votes, part.ids):
            Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy()).save(root / "images" / f"{id_str}.png")
            rows.append({"id_str": id_str, "file_loc": f"images/{id_str}.png", **dict(zip(TOY_SCHEMA.answers, votes.tolist()))})
    pd.DataFrame(rows).to_csv(root / "catalogue.csv", index=False)
    prep = Preprocessing(stored_size=TOY_SIZE, image_size=TOY_SIZE, channels=3)
    write_shards(root / "catalogue.csv", TOY_SCHEMA, root / "shards", prep, val_fraction=0.2, test_fraction=0.1,
                 shard_size=8, workers=1, progress=False)
    return root / "shards"


def toy_config(out, **kw) -> TrainConfig:
    settings = dict(
        shards="toy", out=str(out), arch=TOY_ARCH, epochs=4, batch_size=8, lr=3e-3, workers=0,
        progress=False, patience=100, checkpoint_minutes=10.0,
    )
    return TrainConfig(**{**settings, **kw})


def train_from(init, out, **kw):
    """One epoch at a learning rate too small to move the weights: what is left is where they started."""
    return train(toy_config(out, epochs=1, lr=1e-12, init=str(init), **kw), datamodule=ToyDataModule(n=16))


def assert_encoder_parameters_equal(model, source) -> None:
    start = dict(source.named_parameters())
    for name, value in model.encoder.named_parameters():
        torch.testing.assert_close(value, start[name], rtol=0, atol=1e-6, msg=name)


# --- catalogues of random PNG galaxies, and their shards ------------------------------------

SHARDED_PREP = Preprocessing(stored_size=16, image_size=8)  # the ``sharded`` fixture's


def make_catalogue(folder: Path, n: int = 12, size: int = 24, seed: int = 0, not_provided: int = 3) -> pd.DataFrame:
    """``n`` random PNG galaxies + integer gz2 votes; the first ``not_provided`` rows lack question 3 (NaN)."""
    schema = get_schema("gz2")
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / "images" / f"g{i}.png")
        votes = {a: float(rng.integers(0, 20)) for a in schema.answers}
        if i < not_provided:
            votes.update({c: np.nan for c in schema.questions[2].columns})
        rows.append({"id_str": f"J{i:03d}.5+1", "file_loc": f"images/g{i}.png", **votes})
    return pd.DataFrame(rows)


# --- encoders as Zoobot publishes them ----------------------------------------------------------

TIMM_ARCH = "test_resnet"  # timm's tiny test network: 5 coarse groups (stem, layer1..4)


def timm_folder(folder: Path, arch: str = TIMM_ARCH, safe_serialization: bool = True) -> nn.Module:
    """A Hugging Face style folder written by timm itself, as Zoobot publishes its encoders; returns its model."""
    torch.manual_seed(1)
    source = timm.create_model(arch, num_classes=7)
    save_for_hf(source, folder, safe_serialization=safe_serialization)
    return source
