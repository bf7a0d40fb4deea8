"""Training throughput: the real pipeline (shards -> loader -> batched augmentation -> step)
against the model's own forward + backward + AdamW step on random tensors, side by side,
in channels_last and in the default memory format.

Pipeline cost = 1 - pipeline images/s / random-tensor images/s (goal: under 10%).

    python -m benchmarks train_throughput [--arch efficientnet_b0] [--size 64]
        [--batch-size 64] [--steps 30] [--workers 2] [--threads 2] [--rounds 2]

Rounds alternate the variants so that load from other users of the machine spreads
over all of them; the median of the rounds is reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._harness import Result
from benchmarks._shared import TINY_ARCH, Throughput, add_gz2_option, gz2_preprocessing, gz2_shards
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.losses import DirichletMultinomialLoss
from galaxymorph.models import GalaxyModel
from galaxymorph.schema import get_schema
from galaxymorph.training import TrainConfig, train

TINY = {"arch": TINY_ARCH, "size": 16, "batch_size": 4, "steps": 2, "warmup": 1, "workers": 0, "threads": 1, "rounds": 1}


def random_tensor_rate(arch: str, size: int, batch: int, steps: int, warmup: int, channels_last: bool) -> float:
    """Images/s of forward + loss + backward + AdamW step on random images and votes, no data pipeline."""
    schema = get_schema("gz2")
    model = GalaxyModel(schema, arch=arch, channels_last=channels_last).train()
    loss = DirichletMultinomialLoss(schema)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size)
    votes = torch.randint(0, 20, (batch, schema.n_answers)).float()
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss(model(x), votes).backward()
        optimizer.step()
    return batch * steps / (time.perf_counter() - start)


def pipeline_rate(shards: Path, work: Path, arch: str, size: int, batch: int, steps: int, warmup: int,
                  channels_last: bool, workers: int) -> float:
    """Images/s of ``galaxymorph.training.train`` on the GZ2 shards (augmentation included)."""
    probe = Throughput(warmup=warmup, steps=steps)
    with tempfile.TemporaryDirectory(dir=work) as run:
        config = TrainConfig(
            shards=str(shards), out=run, arch=arch, size=size, batch_size=batch, epochs=1,
            workers=workers, channels_last=channels_last, progress=False,
        )
        train(config, callbacks=[probe])
    return probe.images_per_second


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gz2_option(parser)
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=2)


def measure(args: argparse.Namespace, result: Result) -> None:
    torch.set_num_threads(args.threads)
    shards = gz2_shards(args, Preprocessing.from_dict({**gz2_preprocessing(args).to_dict(), "image_size": args.size}))
    common = (args.arch, args.size, args.batch_size, args.steps, args.warmup)
    variants = {
        "random tensors, channels_last": lambda: random_tensor_rate(*common, True),
        "random tensors, default format": lambda: random_tensor_rate(*common, False),
        "pipeline, channels_last": lambda: pipeline_rate(shards, args.work, *common, True, args.workers),
        "pipeline, default format": lambda: pipeline_rate(shards, args.work, *common, False, args.workers),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            rates[name].append(run())
            print(f"  {name}: {rates[name][-1]:.1f} img/s", flush=True)
    for name, r in rates.items():
        result.arm(name, images_per_s=statistics.median(r), rounds=r)
    result.note(f"{args.arch} at {args.size} px, batch {args.batch_size}, {args.threads} threads, "
                f"{args.workers} loader workers, median of {args.rounds} rounds of {args.steps} steps")
    result.table(["variant", "images/s"], [[name, f"{result.arms[name]['images_per_s']:.1f}"] for name in variants],
                 arms=list(variants))
    for fmt in ("channels_last", "default format"):
        cost = 1 - result.ratio(f"pipeline, {fmt}", f"random tensors, {fmt}", "images_per_s")
        result.figures[f"pipeline_cost, {fmt}"] = cost
        result.note(f"pipeline cost ({fmt}): {100 * cost:.1f}%")
    speedup = result.ratio("random tensors, channels_last", "random tensors, default format", "images_per_s")
    result.note(f"channels_last speed-up (random tensors): {speedup:.2f}x")
