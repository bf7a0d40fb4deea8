"""Predicting from shards with 2 loader workers: each worker reading its own shards, against every worker reading all.

Before issue #13 each (process, loader worker) slot walked every record and kept every
k-th, so with shards every worker untarred every shard: I/O grew with workers x ranks.
Now each slot reads only its share (``galaxymorph.data.inputs.Records``). The old split is
kept here as a benchmark-local subclass of ``GalaxyStream``. Simulated galaxies are
sharded once; then, side by side in one run, the loader alone (2 workers, no model) and
the whole ``predict`` (a tiny ``test_resnet``, so reading is a visible part of it) run the
old way and the new, alternately. Counted per worker: tar files opened, samples untarred
and their bytes (a counting wrapper around ``webdataset.WebDataset``, inherited by the
forked workers through shared memory).

    python -m benchmarks predict_shards [--n 3000] [--size 64] [--shard-size 200]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import torch
import webdataset
from torch.utils.data import DataLoader, get_worker_info

import galaxymorph.engine.loop as loop
from benchmarks._harness import Result
from galaxymorph.data.inputs import GalaxyStream, Records, collate_galaxies
from galaxymorph.data.shards import write_shards
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.models import GalaxyModel
from galaxymorph.prediction import predict, read_predictions
from galaxymorph.simulate import simulate_catalogue

WORKERS = 2
FIELDS = ("tars", "samples", "bytes")
TINY = {"n": 24, "size": 16, "shard_size": 4, "rounds": 1}


class EveryKth(GalaxyStream):
    """The split before issue #13: every slot walks all the records (untarring every shard) and keeps every k-th."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        slot, stride = self.rank * workers + worker, self.world * workers
        pending = (r for r in self.records() if r[0] not in self.skip)
        for i, (id_str, source) in enumerate(pending):
            if i % stride == slot:
                yield self._load(id_str, source)


class TarCounter:
    """Tar files opened, samples untarred and their bytes, per loader worker (shared memory, set before the fork)."""

    def __init__(self) -> None:
        self.counts = multiprocessing.Array("q", len(FIELDS) * WORKERS, lock=False)
        self._real = webdataset.WebDataset

    def reset(self) -> None:
        self.counts[:] = [0] * len(self.counts)

    def per_worker(self) -> list[dict[str, int]]:
        n = len(FIELDS)
        return [dict(zip(FIELDS, self.counts[w * n:(w + 1) * n])) for w in range(WORKERS)]

    def __call__(self, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        base, url = len(FIELDS) * (info.id if info else 0), None
        for sample in self._real(*args, **kwargs):
            if sample["__url__"] != url:
                url = sample["__url__"]
                self.counts[base] += 1
            self.counts[base + 1] += 1
            self.counts[base + 2] += sum(len(v) for v in sample.values() if isinstance(v, bytes))
            yield sample


@contextlib.contextmanager
def stream_class(cls: type[GalaxyStream]) -> Iterator[None]:
    """``predict``'s loop builds its loader from this stream class (the old split is not in the library)."""
    before, loop.GalaxyStream = loop.GalaxyStream, cls
    try:
        yield
    finally:
        loop.GalaxyStream = before


def loader_pass(cls: type[GalaxyStream], records: Records, prep: dict[str, Any]) -> list[str]:
    stream = cls(records, prep)
    loader = DataLoader(stream, batch_size=64, num_workers=WORKERS, collate_fn=collate_galaxies)
    return [id_str for batch in loader for id_str in batch["id_str"]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=3000, help="simulated galaxies")
    parser.add_argument("--size", type=int, default=64, help="stored pixels (simulated at this size)")
    parser.add_argument("--shard-size", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4, help="loader-only rounds per way (alternating)")


def measure(args: argparse.Namespace, result: Result) -> None:
    torch.set_num_threads(1)  # 2 shared cores: the loader workers need the other one
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        start = time.perf_counter()
        sim = Path(tmp) / "sim"
        simulate_catalogue(args.n, args.size, sim, workers=2, progress=False)
        prep = Preprocessing(stored_size=args.size, image_size=args.size, train_zoom=(1.0, 1.0))
        write_shards(sim / "catalogue.parquet", "gz_decals_dr5", Path(tmp) / "shards", prep, workers=2,
                     shard_size=args.shard_size, progress=False)
        records = Records.from_shards(Path(tmp) / "shards")
        result.figures.update(shards=len(records.shards), simulate_and_shard_s=time.perf_counter() - start)

        counter = TarCounter()
        real, webdataset.WebDataset = webdataset.WebDataset, counter
        ways = {"before: every worker reads all": EveryKth, "after: each its own shards": GalaxyStream}
        try:
            for _ in range(args.rounds):
                for name, cls in ways.items():
                    counter.reset()
                    begin = time.perf_counter()
                    ids = loader_pass(cls, records, prep.to_dict())
                    arm = result.arms.get(name) or result.arm(name, loader_s=[])
                    arm["loader_s"].append(time.perf_counter() - begin)
                    assert sorted(ids) == sorted(set(ids)) and len(ids) == args.n, name
                    arm["reads"] = counter.per_worker()
            model = GalaxyModel("gz_decals_dr5", arch="test_resnet", image_size=args.size, preprocessing=prep.to_dict())
            for name, cls in ways.items():
                counter.reset()
                out = Path(tmp) / f"{cls.__name__}.parquet"
                begin = time.perf_counter()
                with stream_class(cls):
                    counts = predict(model.eval(), out, shards=Path(tmp) / "shards", samples=5, batch_size=64,
                                     workers=WORKERS, progress=False)
                result.arm(name, predict_s=time.perf_counter() - begin, predict_reads=counter.per_worker())
                assert counts["rows"] == args.n and read_predictions(out)[0]["id_str"].is_unique, name
        finally:
            webdataset.WebDataset = real
    result.note(f"{args.n} galaxies at {args.size} px in {result.figures['shards']} shards (all splits), simulated and "
                f"sharded in {result.figures['simulate_and_shard_s']:.0f} s; {WORKERS} loader workers, batch 64")
    rows = []
    for name, r in result.arms.items():
        reads = r["reads"]
        assert reads == r["predict_reads"], (name, reads, r["predict_reads"])
        loader = f"{statistics.median(r['loader_s']):.2f}; " + ", ".join(f"{s:.1f}" for s in r["loader_s"])
        rows.append([name, " + ".join(str(w["tars"]) for w in reads), " + ".join(str(w["samples"]) for w in reads),
                     f"{sum(w['bytes'] for w in reads) / 1e6:.1f}", loader, f"{r['predict_s']:.1f}"])
    result.table(["split", "tars opened per worker", "samples untarred per worker", "MB untarred (total)",
                  "loader only, s (median; each round)", "whole predict, s"], rows, arms=list(ways),
                 align=["---", "---", "---", "---:", "---", "---:"])
