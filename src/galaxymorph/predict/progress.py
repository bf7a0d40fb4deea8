"""A prediction progress bar with a total and an ETA, which a stream of unknown length cannot give Lightning.

The pending galaxies are known before the stream starts (records less those already
written), and how the stream splits them between processes and loader workers is
fixed, so each process knows exactly how many batches it will see.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar

__all__ = ["PendingProgressBar", "stream_batches"]


def stream_batches(pending: int, batch_size: int, workers: int, rank: int = 0, world: int = 1) -> int:
    """Batches one process's loader yields: each (process, worker) slot takes every k-th record and batches its own.

    ``workers`` 0 means the main process reads (one slot), as for ``DataLoader``.
    """
    per_process = max(workers, 1)
    stride = world * per_process
    total = 0
    for worker in range(per_process):
        slot = rank * per_process + worker
        records = max(0, -(-(pending - slot) // stride))
        total += -(-records // batch_size)
    return total


class PendingProgressBar(RichProgressBar):
    """Rich's bar (batches done, elapsed and remaining time) with the total from ``pending`` galaxies."""

    def __init__(self, pending: int, batch_size: int, workers: int) -> None:
        super().__init__()
        self.pending, self.batch_size, self.workers = pending, batch_size, workers

    @property
    def total_predict_batches_current_dataloader(self) -> int:
        return stream_batches(self.pending, self.batch_size, self.workers, self.trainer.global_rank,
                              self.trainer.world_size)
