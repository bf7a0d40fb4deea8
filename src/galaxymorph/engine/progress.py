"""A prediction progress bar with a total and an ETA, which a stream of unknown length cannot give Lightning.

The pending galaxies are known before the stream starts (records less those already
written), and how the stream splits them between processes and loader workers is
fixed (:class:`galaxymorph.data.inputs.Records`), so each process knows how many
batches it will see: exactly, except for shards on a resumed run, where it estimates.
"""

from __future__ import annotations

from typing import Collection

from lightning.pytorch.callbacks import RichProgressBar

from galaxymorph.data.inputs import Records, loader_slots

__all__ = ["PendingProgressBar", "stream_batches"]


def stream_batches(records: Records, done: Collection[str], batch_size: int, workers: int, rank: int = 0,
                   world: int = 1) -> int:
    """Batches one process's loader yields: each of its (process, loader worker) slots batches its own share.

    ``workers`` 0 means the main process reads (one slot), as for ``DataLoader``.
    """
    mine, slots = loader_slots(rank, world, workers)
    return sum(-(-records.pending(done, slot, slots) // batch_size) for slot in mine)


class PendingProgressBar(RichProgressBar):
    """Rich's bar (batches done, elapsed and remaining time) with the total from the pending records."""

    def __init__(self, records: Records, done: Collection[str], batch_size: int, workers: int) -> None:
        super().__init__()
        self.records, self.done, self.batch_size, self.workers = records, done, batch_size, workers

    @property
    def total_predict_batches_current_dataloader(self) -> int:
        return stream_batches(self.records, self.done, self.batch_size, self.workers, self.trainer.global_rank,
                              self.trainer.world_size)
