"""Prediction inputs are split once between (process, loader worker) slots: each reads only its share, every id once."""

from __future__ import annotations

import collections
import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import webdataset
from PIL import Image
from support import SHARDED_PREP as PREP
from support import TinyModel
from torch.utils.data import DataLoader

import galaxymorph.data.inputs as inputs
import galaxymorph.data.shards as shards_module
from galaxymorph.data.inputs import (
    GalaxyStream,
    Records,
    collate_galaxies,
    loader_slots,
    shard_share,
)
from galaxymorph.prediction import predict


class CountingSkip(frozenset):
    """Done ids that count how many records are tested against them (one test per record a slot walks)."""

    tests = 0

    def __contains__(self, item: object) -> bool:
        CountingSkip.tests += 1
        return super().__contains__(item)


def _slot_streams(monkeypatch, records, workers: int, world: int, skip: frozenset[str] = frozenset()):
    """(rank, worker, stream) of every slot in slot order, read in this process as that rank's loader worker would."""
    for worker, rank in itertools.product(range(workers), range(world)):  # slot = worker * world + rank
        info = SimpleNamespace(num_workers=workers, id=worker)
        monkeypatch.setattr(inputs, "get_worker_info", lambda info=info: info)
        yield rank, worker, GalaxyStream(records, PREP.to_dict(), skip, rank, world)


@pytest.fixture
def tar_reads(monkeypatch) -> list[collections.Counter]:
    """Samples untarred per shard file, one Counter per slot (a new slot appends one)."""
    reads: list[collections.Counter] = []
    real = webdataset.WebDataset

    def counting(*args, **kwargs):
        for sample in real(*args, **kwargs):
            reads[-1][sample["__url__"]] += 1
            yield sample

    monkeypatch.setattr(webdataset, "WebDataset", counting)
    return reads


def _read_per_slot(monkeypatch, records, reads, workers: int = 2, world: int = 2) -> list[list[str]]:
    ids = []
    for _, _, stream in _slot_streams(monkeypatch, records, workers, world):
        reads.append(collections.Counter())
        ids.append([item["id_str"] for item in stream])
    return ids


def test_each_of_two_workers_on_two_ranks_untars_only_its_own_shards(sharded, monkeypatch, tar_reads):
    cat, folder, _ = sharded
    records = Records.from_shards(folder / "shards")
    ids = _read_per_slot(monkeypatch, records, tar_reads)
    assert sorted(i for share in ids for i in share) == sorted(cat["id_str"])
    files = [location for location, _ in records.shards]
    for slot, reads in enumerate(tar_reads):  # 9 shards, 4 slots: shard j to slot j % 4, untarred once
        assert set(reads) == set(files[slot::4])
        assert sum(reads.values()) == len(ids[slot])
    assert sum(sum(r.values()) for r in tar_reads) == 40  # every slot reading every shard was 4 x 40


def test_fewer_shards_than_slots_share_each_shard_between_as_few_slots_as_possible(sharded, monkeypatch,
                                                                                   tar_reads):
    cat, folder, _ = sharded
    records = Records.from_shards(folder / "shards", "val")  # 2 shards (5 + 2 galaxies) for 4 slots
    ids = _read_per_slot(monkeypatch, records, tar_reads)
    assert [len(reads) for reads in tar_reads] == [1, 1, 1, 1]
    opened = collections.Counter(url for reads in tar_reads for url in reads)
    assert sorted(opened.values()) == [2, 2]
    assert sorted(i for share in ids for i in share) == sorted(i for i, _ in records())
    assert [len(share) for share in ids] == [3, 1, 2, 1]  # every 2nd galaxy of a shard, from 0 and from 1


@pytest.mark.parametrize("workers, world", list(itertools.product([0, 1, 2, 3], [1, 2, 3])))
def test_every_id_exactly_once_for_any_shards_workers_and_ranks_fresh_or_resumed(sharded, workers, world):
    _, folder, _ = sharded
    files = Records.from_shards(folder / "shards").shards
    slots = world * max(workers, 1)
    for count in (0, 1, 2, 3, 5, 9):
        records = Records(shards=files[:count])
        every = [i for i, _ in records()]
        for done in (frozenset(), frozenset(every[::3])):
            shares = [[i for i, _ in records.share(slot, slots, done)] for slot in range(slots)]
            got = [i for share in shares for i in share]
            assert sorted(got) == sorted(set(every) - done) and len(got) == len(set(got)), (count, done)
            if not done:
                assert [records.pending(done, slot, slots) for slot in range(slots)] == [len(s) for s in shares]


def test_shard_share_gives_each_sample_of_each_shard_to_one_slot():
    for shards, slots in itertools.product(range(1, 8), range(1, 12)):
        owners = collections.Counter()
        for slot in range(slots):
            for j, first, step in shard_share(shards, slot, slots):
                owners.update((j, i) for i in range(first, 60, step))
        assert set(owners.values()) == {1} and len(owners) == shards * 60
    assert shard_share(0, 0, 4) == []


def test_whole_shards_are_split_between_processes_within_one():
    for shards, world, workers in itertools.product(range(1, 14), range(1, 4), range(0, 4)):
        per_rank = []
        for rank in range(world):
            mine, slots = loader_slots(rank, world, workers)
            per_rank.append(sum(len(shard_share(shards, slot, slots)) for slot in mine))
        if shards >= world * max(workers, 1):
            assert max(per_rank) - min(per_rank) <= 1, (shards, world, workers, per_rank)


def test_listed_records_are_sliced_once_per_slot_not_walked_by_every_slot(tmp_path, monkeypatch):
    records = Records(listed=[(f"g{i}", np.zeros((4, 4, 3), np.uint8)) for i in range(40)])
    done = CountingSkip({"g0", "g7"})
    CountingSkip.tests = 0
    ids = [item["id_str"] for _, _, stream in _slot_streams(monkeypatch, records, 2, 2, done) for item in stream]
    assert sorted(ids) == sorted(f"g{i}" for i in range(1, 40) if i != 7)
    assert CountingSkip.tests == 40  # each slot tests its 10 records, not all 40 (160)


def test_two_workers_on_two_ranks_read_every_image_once_and_report_the_unreadable(tmp_path):
    listed = []
    for i in range(11):
        path = tmp_path / f"g{i}.png"
        Image.fromarray(np.full((16, 16, 3), i, np.uint8)).save(path)
        listed.append((f"g{i}", str(path)))
    (tmp_path / "g4.png").write_bytes(b"broken")
    ids, errors = [], []
    for rank in range(2):
        stream = GalaxyStream(Records(listed=listed), PREP.to_dict(), frozenset({"g9"}), rank, 2)
        for batch in DataLoader(stream, batch_size=2, num_workers=2, collate_fn=collate_galaxies):
            ids += batch["id_str"]
            errors += [e[0] for e in batch["errors"]]
    assert sorted(ids) == sorted(f"g{i}" for i in range(11) if i not in (4, 9)) and errors == ["g4"]


def test_predicting_from_shards_with_two_workers_reads_the_manifest_once(sharded, tmp_path, monkeypatch):
    cat, folder, _ = sharded
    log = tmp_path / "manifest_reads.txt"  # a file, so that reads in the loader workers' processes count too
    real = shards_module.read_manifest

    def counting(source):
        with open(log, "a") as file:
            file.write(f"{source}\n")
        return real(source)

    monkeypatch.setattr(shards_module, "read_manifest", counting)
    monkeypatch.setattr(inputs, "read_manifest", counting)
    counts = predict(TinyModel(size=16), tmp_path / "p.parquet", shards=folder / "shards", samples=1, batch_size=8,
                     workers=2)
    assert counts["rows"] == 40 and counts["errors"] == 0
    assert len(log.read_text().splitlines()) == 1
