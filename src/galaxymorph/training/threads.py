"""How many torch threads to train with, measured on this machine at run time rather than assumed.

On a quiet 2-core AVX2 machine two threads trained resnet10t at 48 px 1.4x faster than
one, but efficientnet_b0 no faster; on a machine shared with other jobs (load 4) two
OpenMP threads spinning against them trained 4x slower than one. So the answer depends
on the model and on the moment: time a few steps with each candidate and keep the fastest.
"""

from __future__ import annotations

import os
import time

import torch

from galaxymorph.losses import DirichletMultinomialLoss
from galaxymorph.models.galaxy_model import GalaxyModel
from galaxymorph.schema import Schema

__all__ = ["available_cores", "fastest_thread_count"]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a cluster job's share), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fastest_thread_count(schema: Schema, arch: str, image_size: int, batch_size: int, steps: int = 2) -> int:
    """The thread count (1 or every available core) that trains ``arch`` fastest right now (a few seconds)."""
    candidates = sorted({1, available_cores()})
    if len(candidates) == 1:
        return 1
    before = torch.get_num_threads()
    model = GalaxyModel(schema, arch=arch, image_size=image_size).train()
    loss = DirichletMultinomialLoss(schema)
    images = torch.rand(batch_size, 3, image_size, image_size).contiguous(memory_format=torch.channels_last)
    votes = torch.randint(0, 10, (batch_size, schema.n_answers)).float()
    seconds = {}
    try:
        for threads in candidates:
            torch.set_num_threads(threads)
            for step in range(steps + 1):  # the first step warms up
                if step == 1:
                    start = time.perf_counter()
                model.zero_grad(set_to_none=True)
                loss(model(images), votes).backward()
            seconds[threads] = time.perf_counter() - start
    finally:
        torch.set_num_threads(before)
    return min(seconds, key=seconds.get)
