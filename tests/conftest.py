"""Shared fixtures: the real GZ2 data beside the project, skipped (or required in CI); the hub kept offline;
the made-up runs, catalogues and shards that more than one test module uses (their helpers are in support.py).

A module-scoped fixture here is built once per test module that asks for it, as if each module defined it.
Torch, Lightning and galaxymorph are imported inside the fixtures that need them, so that a quick module
(``pytest tests/test_schema.py``) does not wait for them.
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

GZ2_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gz2_kaggle"


@pytest.fixture(scope="session")
def gz2_dir() -> Path:
    """``../shared/data/gz2_kaggle``; skip when absent, fail instead under ``.ci/run``."""
    if not (GZ2_DIR / "labels.csv").exists():
        if os.environ.get("GALAXYMORPH_REQUIRE_REAL_DATA") == "1":
            pytest.fail(f"GALAXYMORPH_REQUIRE_REAL_DATA=1 but the real GZ2 data is missing at {GZ2_DIR}")
        pytest.skip(f"real GZ2 data not found at {GZ2_DIR} (it lives beside the project root)")
    return GZ2_DIR


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch, tmp_path_factory) -> Path:
    """No test reaches the Hugging Face hub: offline, with an empty cache of its own (returned), for subprocesses too."""
    from huggingface_hub import constants

    cache = tmp_path_factory.mktemp("hf_cache")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def toy_shards(tmp_path_factory) -> Path:
    """The toy training galaxies (``support.ToyDataModule``) sharded by the real data pipeline."""
    from support import make_toy_shards

    return make_toy_shards(tmp_path_factory.mktemp("toy_catalogue"))


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """40 random gz2 galaxies (``support.make_catalogue``) in shards of <= 5: (catalogue, folder, manifest)."""
    from support import SHARDED_PREP, make_catalogue

    from galaxymorph.data.shards import write_shards

    folder = tmp_path_factory.mktemp("cat")
    cat = make_catalogue(folder, n=40)
    cat.to_parquet(folder / "cat.parquet")
    manifest = write_shards(folder / "cat.parquet", "gz2", folder / "shards", SHARDED_PREP, 0.2, 0.2, seed=1, workers=2,
                            shard_size=5, progress=False)
    return cat, folder, manifest


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory):
    """A galaxymorph run folder (RUN/best/) of a gz2 test_resnet with random weights, 20 px stored, 16 px in."""
    import torch

    from galaxymorph.data.transforms import Preprocessing
    from galaxymorph.models import GalaxyModel, save_model

    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("run")
    prep = Preprocessing(stored_size=20, image_size=16, channels=3).to_dict()
    save_model(GalaxyModel("gz2", arch="test_resnet", preprocessing=prep), run / "best")
    return run


@pytest.fixture(scope="module")
def twelve_galaxies(tmp_path_factory):
    """A catalogue of 12 random galaxies without votes; g11 is a byte-for-byte copy of g0 under another id."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    rows = []
    for i in range(12):
        pixels = rng.integers(0, 255, (24, 24, 3)).astype(np.uint8)
        name = "g0.png" if i == 11 else f"g{i}.png"
        if i != 11:
            Image.fromarray(pixels).save(root / name)
        rows.append({"id_str": f"g{i}", "file_loc": name})
    pd.DataFrame(rows).to_csv(root / "catalogue.csv", index=False)
    return root / "catalogue.csv"


@pytest.fixture(scope="module")
def toy_catalogue(tmp_path_factory):
    """Learnable toy task: 'ring' galaxies have a bright centre square, the others are dark noise."""
    root = tmp_path_factory.mktemp("toy")
    (root / "img").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        ring = i % 2 == 1
        pixels = rng.integers(0, 60, (24, 24, 3)).astype(np.uint8)
        if ring:
            pixels[6:18, 6:18] += 150
        Image.fromarray(pixels).save(root / "img" / f"g{i}.png")
        rows.append({"id_str": f"g{i}", "file_loc": f"img/g{i}.png", "ring": "yes" if ring else "no", "x": float(ring)})
    pd.DataFrame(rows).to_csv(root / "catalogue.csv", index=False)
    return root / "catalogue.csv"
