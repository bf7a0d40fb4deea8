"""MC-dropout prediction: the encoder once + the head N times, against N full forward passes (Zoobot's way).

Same model, same inputs, same number of posterior samples; the two are timed
alternately in one run so the shared machine's load hits both alike. Also
times the whole ``predict`` pipeline (posterior summaries and Parquet included)
on in-memory images for context.

    python -m benchmarks predict [--arch efficientnet_b0] [--size 64] [--samples 5]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._harness import Result
from benchmarks._shared import TINY_ARCH
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.models import GalaxyModel
from galaxymorph.prediction import predict_records

TINY = {"arch": TINY_ARCH, "size": 16, "batch": 4, "repeats": 1, "pipeline_galaxies": 8}


def encoder_once(model: GalaxyModel, x: torch.Tensor, samples: int) -> torch.Tensor:
    return model.sample(model.features(x), samples)


def full_passes(model: GalaxyModel, x: torch.Tensor, samples: int) -> torch.Tensor:
    return torch.stack([model.head(model.features(x), mc_dropout=True) for _ in range(samples)], dim=-1)


def pixels(n: int, size: int):
    rng = np.random.default_rng(0)
    for i in range(n):
        yield f"g{i}", rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--pipeline-galaxies", type=int, default=2048, help="galaxies through the whole predict")


def measure(args: argparse.Namespace, result: Result) -> None:
    prep = Preprocessing(stored_size=args.size, image_size=args.size, train_zoom=(1.0, 1.0))
    model = GalaxyModel("gz_decals_dr5", arch=args.arch, preprocessing=prep.to_dict()).eval()
    x = torch.rand(args.batch, 3, args.size, args.size)
    ways = {"encoder once + head x N": encoder_once, "N full forward passes": full_passes}
    seconds = dict.fromkeys(ways, 0.0)
    with torch.inference_mode():
        encoder_once(model, x, args.samples), full_passes(model, x, args.samples)  # warm-up
        for _ in range(args.repeats):
            for name, fn in ways.items():
                start = time.perf_counter()
                out = fn(model, x, args.samples)
                seconds[name] += time.perf_counter() - start
                assert out.shape == (args.batch, model.schema.n_answers, args.samples)
    n = args.batch * args.repeats
    for name, s in seconds.items():
        result.arm(name, galaxies_per_s=n / s)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        start = time.perf_counter()
        predict_records(model, functools.partial(pixels, args.pipeline_galaxies, args.size), Path(tmp) / "p.parquet",
                        samples=args.samples, batch_size=args.batch, progress=False)
        result.figures["whole_pipeline_galaxies_per_s"] = args.pipeline_galaxies / (time.perf_counter() - start)
    result.note(f"{args.arch} at {args.size} px, batch {args.batch}, {args.samples} samples, "
                f"{torch.get_num_threads()} threads, {n} galaxies each")
    result.table(["method", "galaxies/s"],
                 [[name, f"{result.arms[name]['galaxies_per_s']:.1f}"] for name in ways]
                 + [["**speed-up**", f"**{result.ratio(*ways, 'galaxies_per_s'):.2f}x**"],
                    ["whole `predict` pipeline on in-memory images (posterior summaries, Parquet, Lightning)",
                     f"{result.figures['whole_pipeline_galaxies_per_s']:.1f}"]], arms=list(ways))
