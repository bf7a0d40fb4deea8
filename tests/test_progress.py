"""``predict`` and ``embed`` show a total (and so an ETA): the pending galaxies are counted before the stream starts."""

import itertools
import math

import numpy as np
import pytest
from lightning.pytorch.callbacks import Callback
from support import TinyModel
from torch.utils.data import DataLoader

from galaxymorph.data.inputs import (
    GalaxyStream,
    Records,
    collate_galaxies,
)
from galaxymorph.engine.progress import stream_batches
from galaxymorph.prediction import predict_records
from galaxymorph.representations import embed


class RecordTotals(Callback):
    """The total the progress bar was given, and that of the Rich task it shows."""

    def __init__(self) -> None:
        self.totals: list[tuple[float, float]] = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        bar = trainer.progress_bar_callback
        task = bar.progress.tasks[bar.predict_progress_bar_id]
        self.totals.append((bar.total_predict_batches_current_dataloader, task.total))


def _pixels(n: int) -> list:
    rng = np.random.default_rng(0)
    return [(f"g{i}", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)) for i in range(n)]


@pytest.mark.parametrize("pending, batch_size, workers, world", list(itertools.product([0, 1, 7, 30], [1, 4], [0, 1, 3], [1, 2])))
def test_batch_count_follows_how_the_stream_splits_records(pending, batch_size, workers, world):
    stride = world * max(workers, 1)
    for rank in range(world):
        slots = [rank * max(workers, 1) + w for w in range(max(workers, 1))]
        expected = sum(math.ceil(len(range(slot, pending, stride)) / batch_size) for slot in slots)
        assert stream_batches(Records(listed=_pixels(pending)), set(), batch_size, workers, rank, world) == expected


def test_batch_count_is_what_two_loader_workers_yield():
    stream = GalaxyStream(Records(listed=_pixels(11)), TinyModel().config["preprocessing"])
    loader = DataLoader(stream, batch_size=4, num_workers=2, collate_fn=collate_galaxies)
    assert sum(1 for _ in loader) == stream_batches(stream.records, set(), 4, 2)


def test_batch_count_is_what_two_loader_workers_yield_from_whole_shards(sharded):
    _, folder, _ = sharded
    records = Records.from_shards(folder / "shards")  # 9 shards: 5 of them (20 galaxies) to one worker, 4 (20) to the other
    stream = GalaxyStream(records, TinyModel(size=16).config["preprocessing"])
    loader = DataLoader(stream, batch_size=3, num_workers=2, collate_fn=collate_galaxies)
    assert sum(1 for _ in loader) == stream_batches(records, set(), 3, 2) == 14


def test_predict_bar_total_counts_only_the_galaxies_still_to_do(tmp_path):
    out = tmp_path / "p.parquet"
    predict_records(TinyModel(), Records(listed=_pixels(4)), out, samples=2, progress=False)
    recorder = RecordTotals()
    predict_records(TinyModel(), Records(listed=_pixels(10)), out, samples=2, batch_size=4, callbacks=[recorder])
    assert recorder.totals == [(2, 2), (2, 2)]  # 6 pending galaxies in batches of 4


def test_shard_records_count_their_pending_galaxies_from_the_manifest(sharded):
    _, folder, _ = sharded
    records = Records.from_shards(folder / "shards", "val")
    ids = [id_str for id_str, _ in records()]
    assert records.pending(set()) == len(ids)
    assert records.pending(set(ids[:3])) == len(ids) - 3
    assert Records.from_shards(folder / "shards").pending(set()) == 40


def test_embed_bar_has_the_total(untrained_run, twelve_galaxies, tmp_path):
    recorder = RecordTotals()
    embed(untrained_run, tmp_path / "e.parquet", catalogue=twelve_galaxies, batch_size=5, callbacks=[recorder])
    assert recorder.totals == [(3, 3)] * 3  # 12 galaxies in batches of 5


def test_the_pass_that_finishes_a_shard_run_has_a_total(toy_shards, tmp_path):
    """Before, its stream of validation shards had no length, so the bar showed batches done and no ETA."""
    from support import toy_config

    from galaxymorph.data.datamodule import GalaxyDataModule
    from galaxymorph.engine import RunSettings
    from galaxymorph.training import train
    from galaxymorph.training.finish import finish_run

    best = train(toy_config(tmp_path / "run", shards=str(toy_shards), epochs=1, ood_reference=0))
    recorder = RecordTotals()
    finish_run(best, GalaxyDataModule(toy_shards, batch_size=4, num_workers=2), ood_galaxies=0,
               run=RunSettings(accelerator="cpu", progress=True), callbacks=[recorder])
    batches = stream_batches(Records.from_shards(toy_shards, "val"), set(), 4, 2)
    assert batches > 1 and recorder.totals == [(batches, batches)] * batches
