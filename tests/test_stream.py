"""The training stream: every galaxy once per epoch, an order fixed by (seed, epoch), exact resumption."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from galaxymorph.data.datamodule import GalaxyDataModule
from galaxymorph.data.stream import batches_per_epoch, interleaved_share


def _round_robin(counts: list[int], n: int) -> list[int]:
    """What a loader does: streams take turns, one that has run out drops out."""
    streams = [iter([i] * c) for i, c in enumerate(counts)]
    order = [x for turn in itertools.zip_longest(*streams) for x in turn if x is not None]
    return [order[:n].count(i) for i in range(len(counts))]


def test_interleaved_share_counts_each_streams_turns():
    assert interleaved_share([3, 1], 3) == [2, 1]
    assert interleaved_share([1, 3], 3) == [1, 2]
    assert interleaved_share([5, 5], 3) == [2, 1]
    assert interleaved_share([0, 4, 2], 5) == [0, 3, 2]
    for counts in ([7, 2, 4], [1, 1, 9], [0, 3], [6]):
        for n in range(sum(counts) + 1):
            assert interleaved_share(counts, n) == _round_robin(counts, n), (counts, n)


def test_batches_per_epoch_one_process_and_ddp():
    assert batches_per_epoch(10, 4, 1) == 3  # every galaxy once, the last batch partial
    assert batches_per_epoch(9, 4, 1) == 2  # ... but never one galaxy alone: it joins the batch before
    assert batches_per_epoch(1, 4, 1) == 1
    assert batches_per_epoch(10, 4, 2) == 1  # equal full batches per rank
    assert batches_per_epoch(3, 4, 2) == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_a_last_galaxy_alone_joins_the_batch_before_it(sharded, workers):  # noqa: F811
    """Batch norm cannot train on one image with 1 x 1 features: no epoch ends on a batch of one."""
    _, folder, manifest = sharded
    count = manifest["splits"]["train"]["count"]
    batch = next(b for b in range(2, count) if count % b == 1)
    dm = GalaxyDataModule(folder / "shards", batch_size=batch, num_workers=workers, shuffle_buffer=6)
    batches = _ids(dm.train_dataloader())
    seen = [i for b in batches for i in b]
    assert sorted(seen) == sorted(set(seen)) and len(seen) == count
    assert [len(b) for b in batches] == [batch] * (count // batch - 1) + [batch + 1]


def _ids(loader) -> list[list[str]]:
    return [list(b["id_str"]) for b in loader]


@pytest.mark.parametrize("workers", [0, 2])
def test_every_training_galaxy_once_per_epoch_in_the_fixed_number_of_batches(sharded, workers):
    _, folder, manifest = sharded
    count = manifest["splits"]["train"]["count"]
    batch = 7 if count % 7 > 1 else 6  # a partial last batch of more than one galaxy
    dm = GalaxyDataModule(folder / "shards", batch_size=batch, num_workers=workers, shuffle_buffer=6)
    batches = _ids(dm.train_dataloader())
    seen = [i for b in batches for i in b]
    assert len(seen) == count and len(set(seen)) == count
    assert len(batches) == dm.train_batches_per_epoch() == -(-count // batch)
    assert all(len(b) == batch for b in batches[:-1])


@pytest.mark.parametrize("workers, batch", [(0, 4), (2, 4), (2, 3), (3, 4)])
def test_a_stream_started_mid_epoch_yields_the_batches_not_yet_seen_in_order(sharded, workers, batch):
    _, folder, _ = sharded
    dm = GalaxyDataModule(folder / "shards", batch_size=batch, num_workers=workers, shuffle_buffer=6)
    steps = dm.train_batches_per_epoch()
    loader = dm.train_dataloader()
    dm.trainer = SimpleNamespace(global_step=steps, world_size=1, global_rank=0)  # epoch 1 from its start
    whole = _ids(loader)
    for done in (1, 3, steps - 1):
        dm.trainer.global_step = steps + done
        assert _ids(loader) == whole[done:], done


def test_ddp_ranks_resume_mid_epoch_and_wrap_around_with_equal_batches(sharded):
    _, folder, manifest = sharded
    count = manifest["splits"]["train"]["count"]
    dm = GalaxyDataModule(folder / "shards", batch_size=2)
    dm.trainer = SimpleNamespace(global_step=0, world_size=3, global_rank=2)
    loader = dm.train_dataloader()
    steps = dm.train_batches_per_epoch(3)
    assert steps == count // 6
    whole = _ids(loader)
    assert len(whole) == steps and all(len(b) == 2 for b in whole)
    dm.trainer.global_step = 2
    assert _ids(loader) == whole[2:]


def test_ddp_needs_a_training_shard_per_process(sharded):
    _, folder, manifest = sharded
    shards = len([s for s in manifest["splits"]["train"]["shards"] if s["count"]])
    dm = GalaxyDataModule(folder / "shards", batch_size=2)
    dm.trainer = SimpleNamespace(global_step=0, world_size=shards + 1, global_rank=0)
    with pytest.raises(ValueError, match=rf"train split has {shards} shard\(s\) for {shards + 1} processes"):
        dm.train_dataloader()


def test_a_resume_mid_epoch_with_other_loader_workers_is_refused(sharded):
    _, folder, _ = sharded
    dm = GalaxyDataModule(folder / "shards", batch_size=4, num_workers=2)
    dm.trainer = SimpleNamespace(global_step=3, world_size=1, global_rank=0)
    saved = dm.train_dataloader().state_dict()
    other = GalaxyDataModule(folder / "shards", batch_size=4, num_workers=1)
    other.trainer = dm.trainer
    with pytest.raises(ValueError, match="stopped mid-epoch with 2 loader worker.*--num-workers 2"):
        other.train_dataloader().load_state_dict(saved)
    other.trainer = SimpleNamespace(global_step=other.train_batches_per_epoch(), world_size=1, global_rank=0)
    other.train_dataloader().load_state_dict(saved)  # at an epoch boundary another count is fine
