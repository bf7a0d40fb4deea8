"""Shared fixtures: the real GZ2 data beside the project, skipped (or required in CI); the hub kept offline."""

import os
from pathlib import Path

import pytest

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
