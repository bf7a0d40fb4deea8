"""Training throughput: the real pipeline (shards -> loader -> batched augmentation -> step)
against the model's own forward + backward + AdamW step on random tensors, side by side,
in channels_last and in the default memory format.

Pipeline cost = 1 - pipeline images/s / random-tensor images/s (goal: under 10%).

    .venv/bin/python benchmarks/bench_train_throughput.py [--arch efficientnet_b0] [--size 64]
        [--batch-size 64] [--steps 30] [--workers 2] [--threads 2] [--rounds 2]

Rounds alternate the variants so that load from other users of the machine spreads
over all of them; the median of the rounds is reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from bench_train_common import GZ2_PREPROCESSING, Throughput, gz2_shards

from galaxymorph.data.transforms import Preprocessing
from galaxymorph.losses import DirichletMultinomialLoss
from galaxymorph.models import GalaxyModel
from galaxymorph.schema import get_schema
from galaxymorph.training import TrainConfig, train


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


def pipeline_rate(arch: str, size: int, batch: int, steps: int, warmup: int, channels_last: bool, workers: int) -> float:
    """Images/s of ``galaxymorph.training.train_run`` on the GZ2 shards (augmentation included)."""
    prep = Preprocessing.from_dict({**GZ2_PREPROCESSING.to_dict(), "image_size": size})
    probe = Throughput(warmup=warmup, steps=steps)
    with tempfile.TemporaryDirectory() as run:
        config = TrainConfig(
            shards=str(gz2_shards(prep)), out=run, arch=arch, size=size, batch_size=batch, epochs=1,
            num_workers=workers, channels_last=channels_last, progress=False,
        )
        train(config, callbacks=[probe])
    return probe.images_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    common = (args.arch, args.size, args.batch_size, args.steps, args.warmup)
    variants = {
        "random tensors, channels_last": lambda: random_tensor_rate(*common, True),
        "random tensors, default format": lambda: random_tensor_rate(*common, False),
        "pipeline, channels_last": lambda: pipeline_rate(*common, True, args.workers),
        "pipeline, default format": lambda: pipeline_rate(*common, False, args.workers),
    }
    rates = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            rates[name].append(run())
            print(f"  {name}: {rates[name][-1]:.1f} img/s", flush=True)
    median = {name: statistics.median(r) for name, r in rates.items()}
    print(f"\n{args.arch} at {args.size} px, batch {args.batch_size}, {args.threads} threads, "
          f"{args.workers} loader workers, median of {args.rounds} rounds of {args.steps} steps")
    print("| variant | images/s |\n|---|---|")
    for name, rate in median.items():
        print(f"| {name} | {rate:.1f} |")
    for fmt in ("channels_last", "default format"):
        cost = 1 - median[f"pipeline, {fmt}"] / median[f"random tensors, {fmt}"]
        print(f"pipeline cost ({fmt}): {100 * cost:.1f}%")
    print(f"channels_last speed-up (random tensors): "
          f"{median['random tensors, channels_last'] / median['random tensors, default format']:.2f}x")


if __name__ == "__main__":
    main()
