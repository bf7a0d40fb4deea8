"""Shared fixtures: the real GZ2 data beside the project, skipped (or required in CI)."""

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
