"""MC-dropout prediction: the encoder once + the head N times, against N full forward passes (Zoobot's way).

Same model, same inputs, same number of posterior samples; the two are timed
alternately in one run so the shared machine's load hits both alike. Also
times the whole ``predict`` pipeline (posterior summaries and Parquet included)
on in-memory images for context.

    .venv/bin/python benchmarks/bench_predict.py [--arch efficientnet_b0] [--size 64] [--samples 5]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from galaxymorph.data.transforms import Preprocessing
from galaxymorph.models import GalaxyModel
from galaxymorph.predict import predict_records


def encoder_once(model: GalaxyModel, x: torch.Tensor, samples: int) -> torch.Tensor:
    return model.sample(model.features(x), samples)


def full_passes(model: GalaxyModel, x: torch.Tensor, samples: int) -> torch.Tensor:
    return torch.stack([model.head(model.features(x), mc_dropout=True) for _ in range(samples)], dim=-1)


def pixels(n: int, size: int):
    rng = np.random.default_rng(0)
    for i in range(n):
        yield f"g{i}", rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()

    prep = Preprocessing(stored_size=args.size, image_size=args.size, train_zoom=(1.0, 1.0))
    model = GalaxyModel("gz_decals_dr5", arch=args.arch, preprocessing=prep.to_dict()).eval()
    x = torch.rand(args.batch, 3, args.size, args.size)
    seconds = {"encoder once + head x N": 0.0, "N full forward passes": 0.0}
    with torch.inference_mode():
        encoder_once(model, x, args.samples), full_passes(model, x, args.samples)  # warm-up
        for _ in range(args.repeats):
            for name, fn in zip(seconds, (encoder_once, full_passes)):
                start = time.perf_counter()
                out = fn(model, x, args.samples)
                seconds[name] += time.perf_counter() - start
                assert out.shape == (args.batch, model.schema.n_answers, args.samples)
    n = args.batch * args.repeats
    rate = {name: n / s for name, s in seconds.items()}
    print(f"{args.arch} at {args.size} px, batch {args.batch}, {args.samples} samples, "
          f"{torch.get_num_threads()} threads, {n} galaxies each")
    for name, r in rate.items():
        print(f"  {name:26s} {r:8.1f} galaxies/s")
    print(f"  speed-up: {rate['encoder once + head x N'] / rate['N full forward passes']:.2f}x")

    with tempfile.TemporaryDirectory() as tmp:
        galaxies = 2048
        start = time.perf_counter()
        predict_records(model, functools.partial(pixels, galaxies, args.size), Path(tmp) / "p.parquet",
                        samples=args.samples, batch_size=args.batch, progress=False)
        pipeline = galaxies / (time.perf_counter() - start)
    print(f"  whole predict pipeline (in-memory images, summaries, Parquet): {pipeline:.1f} galaxies/s")


if __name__ == "__main__":
    main()
