"""Micro-benchmarks of the hot paths, timed by pytest-benchmark: the loss, MC-dropout prediction,
loading training batches, simulating, nearest neighbours, and evaluate (with its traced memory).

Through the harness, which runs them for this tree and, with ``--against``, another commit's
library, side by side in one run (``benchmarks/micro.py``)::

    python -m benchmarks micro --against main

or with pytest-benchmark alone, saving at one commit and comparing at another::

    PYTHONPATH=src:. pytest benchmarks/_micro.py --benchmark-save=before
    PYTHONPATH=src:. pytest benchmarks/_micro.py --benchmark-compare

``GALAXYMORPH_BENCH_TINY=1`` shrinks every case to seconds (what ``--tiny`` sets). Each case
imports the library inside itself, so a case whose functions an older commit lacks fails
alone and the others still run against it.
"""

from __future__ import annotations

import os
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

TINY = os.environ.get("GALAXYMORPH_BENCH_TINY") == "1"


def size(real: int, tiny: int) -> int:
    return tiny if TINY else real


@pytest.fixture(autouse=True)
def which_library(benchmark):
    """Every case records the galaxymorph it timed (the harness checks it is the tree it asked for)."""
    import galaxymorph

    benchmark.extra_info["galaxymorph"] = str(Path(galaxymorph.__file__).resolve().parent)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the figures of a shared 2-core machine are steadier, and comparable
    yield
    torch.set_num_threads(before)


def test_loss(benchmark):
    """Forward and backward of the Dirichlet-Multinomial loss on a gz2 batch (256 galaxies, 0-40 votes)."""
    from galaxymorph import DirichletMultinomialLoss, get_schema

    schema = get_schema("gz2")
    generator = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 41, (size(256, 8), schema.n_answers), generator=generator).float()
    conc = (1 + 99 * torch.rand(counts.shape, generator=generator)).requires_grad_()
    loss = DirichletMultinomialLoss(schema)

    def step() -> None:
        conc.grad = None
        loss(conc, counts).backward()

    benchmark(step)


def test_mc_prediction(benchmark):
    """5 posterior samples of a batch: the encoder once, the head 5 times (efficientnet_b0, 64 galaxies at 64 px)."""
    from galaxymorph.models import GalaxyModel

    px = size(64, 16)
    model = GalaxyModel("gz_decals_dr5", arch="test_resnet" if TINY else "efficientnet_b0", image_size=px).eval()
    x = torch.rand(size(64, 4), 3, px, px, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        benchmark(lambda: model.sample(model.features(x), 5))


@pytest.fixture(scope="module")
def simulated_shards():
    from galaxymorph.data.shards import write_shards
    from galaxymorph.data.transforms import Preprocessing
    from galaxymorph.simulate import simulate_catalogue

    with tempfile.TemporaryDirectory() as tmp:
        px = size(64, 16)
        simulate_catalogue(size(512, 24), px, Path(tmp) / "sim", workers=1, progress=False)
        write_shards(Path(tmp) / "sim" / "catalogue.parquet", "gz_decals_dr5", Path(tmp) / "shards",
                     Preprocessing(stored_size=px, image_size=round(0.75 * px)), workers=1, shard_size=128,
                     progress=False)
        yield Path(tmp) / "shards"


def test_loading(benchmark, simulated_shards):
    """One epoch of training batches from shards, batched augmentation included (512 galaxies at 64 px)."""
    from galaxymorph.data.datamodule import GalaxyDataModule

    data = GalaxyDataModule(simulated_shards, batch_size=64, num_workers=0, shuffle_buffer=256)

    def epoch() -> int:
        return sum(len(data.transform_batch(batch, train=True)["image"]) for batch in data.train_dataloader())

    benchmark.extra_info["images"] = benchmark(epoch)


def test_simulate(benchmark, tmp_path):
    """Simulating 64 galaxies at 64 px in this process: truth, votes, rendering, PNGs, catalogue."""
    from galaxymorph.simulate import simulate_catalogue

    folders = iter(range(10**6))
    benchmark.pedantic(lambda out: simulate_catalogue(size(64, 4), size(64, 16), out, workers=1, progress=False),
                       setup=lambda: ((tmp_path / str(next(folders)),), {}), rounds=size(5, 1))


def test_neighbours(benchmark):
    """100 queries for 10 neighbours each through the HNSW index of 100,000 embedding-like vectors."""
    from galaxymorph.representations import NeighbourIndex

    rng = np.random.default_rng(0)
    dim = size(64, 8)
    vectors = (rng.standard_normal((size(100_000, 500), dim)) * np.arange(1, dim + 1) ** -0.75).astype(np.float32)
    index = NeighbourIndex.build(vectors, approximate=True)
    benchmark(index.search, vectors[:100], 10)


def test_evaluate(benchmark, tmp_path):
    """``evaluate`` of 20,000 prediction rows against a catalogue; peak traced memory (Python and numpy) beside it."""
    from benchmarks._shared import write_catalogue, write_predictions
    from galaxymorph.evaluation import evaluate

    rows = size(20_000, 200)
    predictions = write_predictions(tmp_path / "predictions.parquet", rows, block=5000)
    catalogue = write_catalogue(tmp_path / "catalogue.parquet", rows)
    tracemalloc.start()
    evaluate(predictions, catalogue)
    benchmark.extra_info["peak_traced_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    benchmark(evaluate, predictions, catalogue)
