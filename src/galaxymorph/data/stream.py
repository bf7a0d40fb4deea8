"""The training stream over shards: every galaxy once per epoch, in an order fixed by (seed, epoch).

A shard stream cannot seek, so its order must be a pure function of where the
run stands. For epoch ``e`` the shards are permuted by ``(seed, e)`` and split
between the (rank, loader worker) slots as every other reader splits them
(:func:`galaxymorph.data.inputs.shard_share`: whole shards while there are enough,
else every g-th galaxy of a shared one); each worker reads its share in that order
through a shuffle buffer seeded by ``(seed, e, pass, r, w)``. The loader hands out one
sample per worker in turn (PyTorch's round-robin over the workers still
running), and batches are formed here, in the main process, so no worker ends
an epoch on a short batch of its own.

The position is the run's optimiser step: after a resume at step ``k`` the
stream skips the ``k mod steps_per_epoch`` batches already trained, reading
(not decoding) their bytes to replay the shuffle, and yields exactly the
batches an uninterrupted run would have. The order depends on the number of
loader workers too, so a resume mid-epoch with another number is refused. One process sees every training
galaxy once per epoch (the last batch partial). Under DDP each rank yields the
same number of full batches (``count // (world * batch)``); a rank whose shards
hold fewer galaxies starts a second pass over them, reshuffled, and extra
galaxies wait for another epoch.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, Sampler, get_worker_info

from galaxymorph.data.inputs import loader_slots, shard_share
from galaxymorph.data.shards import check_shards_per_process

__all__ = ["EpochShuffle", "ShardSamples", "TrainBatches", "batches_per_epoch", "interleaved_share", "single_last_batch"]


def batches_per_epoch(count: int, batch_size: int, world: int) -> int:
    """One process: every galaxy once (last batch partial); DDP: the equal per-rank share of full batches.

    A last batch of a single galaxy joins the one before (batch norm cannot train on one
    image whose features are 1 x 1), so ``count = k * batch_size + 1`` takes k steps.
    """
    if world > 1:
        return max(1, count // (world * batch_size))
    if single_last_batch(count, batch_size):
        return count // batch_size
    return max(1, -(-count // batch_size))


def single_last_batch(count: int, batch_size: int) -> bool:
    """Whether an epoch of ``count`` in batches of ``batch_size`` would end on one galaxy (map-style loaders drop it:
    each epoch's order differs, so it is another galaxy each time)."""
    return count > batch_size and count % batch_size == 1


def interleaved_share(counts: Sequence[int], n: int) -> list[int]:
    """How many of the first ``n`` items of a round-robin over streams of these lengths come from each.

    Streams take turns in order; one that has run out drops out of the turn.
    """
    share = [0] * len(counts)
    left = n
    active = [i for i, c in enumerate(counts) if c > 0]
    while left > 0 and active:
        step = min(min(counts[i] - share[i] for i in active), left // len(active))
        if step == 0:  # fewer items left than a full round: the first streams in the turn get one more
            for i in active[:left]:
                share[i] += 1
            break
        for i in active:
            share[i] += step
        left -= step * len(active)
        active = [i for i in active if share[i] < counts[i]]
    return share


def _buffered_shuffle(items: Iterator[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = int(rng.integers(size))
        yield buffer[j]
        buffer[j] = item
    rng.shuffle(buffer)
    yield from buffer


def _pinned(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _identity(item: Any) -> Any:
    return item


class ShardSamples(IterableDataset):
    """One pass of one rank's share of an epoch, sample by sample; each loader worker reads its own shards.

    ``urls`` and ``counts`` list the split's non-empty shards. :meth:`at` gives a
    copy positioned at (epoch, pass, galaxies already taken from this pass).
    """

    def __init__(self, urls: Sequence[str], counts: Sequence[int], decode: Callable[[dict], Any], seed: int,
                 shuffle_buffer: int, rank: int = 0, world: int = 1, workers: int = 0):
        check_shards_per_process("train", len(urls), world)
        self.urls, self.counts, self.decode = list(urls), list(counts), decode
        self.seed, self.shuffle_buffer = seed, shuffle_buffer
        self.rank, self.world = rank, world
        self.loader_workers, self.workers = workers, max(workers, 1)  # 0 workers: read in the main process
        self.epoch = self.pass_ = 0
        self.skip = [0] * self.workers

    def worker_shares(self, epoch: int) -> list[list[tuple[int, int, int]]]:
        """(shard index, first sample, step) of what each loader worker of this rank reads in ``epoch``, in order."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.urls))
        slots, count = loader_slots(self.rank, self.world, self.loader_workers)
        return [[(int(order[j]), first, step) for j, first, step in shard_share(len(order), slot, count)]
                for slot in slots]

    def _worker_counts(self, epoch: int) -> list[int]:
        return [sum(len(range(first, self.counts[i], step)) for i, first, step in share)
                for share in self.worker_shares(epoch)]

    def rank_count(self, epoch: int) -> int:
        """Galaxies this rank reads in ``epoch``: the length of one pass."""
        return sum(self._worker_counts(epoch))

    def at(self, epoch: int, pass_: int, taken: int) -> "ShardSamples":
        """A copy that starts ``taken`` galaxies into the pass (each worker skips its share of them)."""
        positioned = copy.copy(self)
        positioned.epoch, positioned.pass_ = epoch, pass_
        positioned.skip = interleaved_share(self._worker_counts(epoch), taken)
        return positioned

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker = info.id if info else 0
        if (info.num_workers if info else 1) != self.workers:
            raise RuntimeError(f"ShardSamples was built for {self.workers} loader workers")
        share = self.worker_shares(self.epoch)[worker]
        if not share:
            return
        rng = np.random.default_rng([self.seed, self.epoch, self.pass_, self.rank, worker])
        raw = itertools.chain.from_iterable(
            itertools.islice(wds.WebDataset([self.urls[i]], shardshuffle=False, nodesplitter=None, workersplitter=None,
                                            empty_check=False), first, None, step)
            for i, first, step in share)
        for i, sample in enumerate(_buffered_shuffle(raw, self.shuffle_buffer, rng)):
            # skipped samples are read to replay the shuffle, never decoded; each still takes its turn
            # (a None) so the loader's round-robin over the workers stays where an uninterrupted run has it
            yield self.decode(sample) if i >= self.skip[worker] else None


class TrainBatches:
    """What Lightning iterates for training: the epoch's batches from the run's current step on.

    ``position`` returns the optimiser steps done so far (``trainer.global_step``);
    each ``iter`` yields the rest of that epoch, ``steps_per_epoch`` batches in all.
    With ``pin_memory`` the batches' tensors are page-locked (for copies to a CUDA GPU).
    """

    def __init__(self, samples: ShardSamples, batch_size: int, steps_per_epoch: int,
                 collate: Callable[[list], Any], position: Callable[[], int], pin_memory: bool = False):
        self.samples, self.batch_size, self.steps = samples, batch_size, steps_per_epoch
        self.position = position
        self.collate = (lambda b: _pinned(collate(b))) if pin_memory else collate

    def __iter__(self) -> Iterator[Any]:
        epoch, done = divmod(self.position(), self.steps)
        per_pass = self.samples.rank_count(epoch)
        pass_, taken = divmod(done * self.batch_size, per_pass)
        batch: list[Any] = []
        rest_in_last = self.samples.world == 1  # one process: the last step takes what the pass has left
        while done < self.steps:
            # its own generator: starting a loader must not draw from torch's global one, which
            # the augmentation and dropout use (a resumed run starts its loader at another moment)
            loader = DataLoader(self.samples.at(epoch, pass_, taken), batch_size=None,
                                num_workers=self.samples.loader_workers, collate_fn=_identity,
                                generator=torch.Generator().manual_seed(self.samples.seed))
            for sample in loader:
                if sample is None:  # a turn of a galaxy trained before the resume
                    continue
                batch.append(sample)
                if len(batch) == self.batch_size and not (rest_in_last and done == self.steps - 1):
                    yield self.collate(batch)
                    batch, done = [], done + 1
                    if done == self.steps:
                        return
            if self.samples.world == 1:  # one process: one pass holds every galaxy once
                break
            pass_, taken = pass_ + 1, 0
        if batch:
            yield self.collate(batch)

    def state_dict(self) -> dict[str, int]:
        """Saved in each checkpoint (Lightning's resumable-loader hook): what the order depends on besides the step."""
        return {"steps_per_epoch": self.steps, "batch_size": self.batch_size, "loader_workers": self.samples.workers}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Refuse a resume whose order would differ: other steps per epoch, or other workers mid-epoch."""
        if (state["steps_per_epoch"], state["batch_size"]) != (self.steps, self.batch_size):
            raise ValueError(
                f"the checkpoint was written with {state['steps_per_epoch']} steps per epoch of {state['batch_size']} "
                f"galaxies, this run has {self.steps} of {self.batch_size}: resume with the same shards, --devices "
                "and --num-nodes, or choose a new --out"
            )
        workers = state.get("loader_workers", self.samples.workers)
        if workers != self.samples.workers and self.position() % self.steps:
            raise ValueError(
                f"the run stopped mid-epoch with {workers} loader worker(s), which fix the order of the epoch's "
                f"galaxies; resume with --num-workers {workers} (another count is fine from the next epoch on)"
            )


class EpochShuffle(Sampler[int]):
    """A map-style data set's order for an epoch, fixed by (seed, epoch): a run resumed at epoch e sees e's order.

    Lightning calls :meth:`set_epoch` before each training epoch (as for a distributed
    sampler); a generator seeded once would restart at epoch 0's order after a resume.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())
