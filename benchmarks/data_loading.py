"""Training images/s: galaxymorph shards + batched tensor augmentation vs JPEG files + PIL/torchvision.

The baseline loads the way Zoobot's galaxy-datasets does: decode each 424 px
JPEG with PIL every epoch, then per-image torchvision transforms (rotation by
any angle, flip, RandomResizedCrop scale 0.7-0.8 ratio 0.9-1.1, to 128 px).
galaxymorph decodes once into shards (full frame at 171 px, so a 0.75 crop
gives 128 px), then streams uint8 batches and augments each whole batch with
one affine_grid/grid_sample (in the main process, as ``on_after_batch_transfer``
does). Both sides run in one process, interleaved, on the same images.
Also reported: sharding throughput and the read cost of .npy vs PNG pixels.

    python -m benchmarks data_loading --n 3000
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from benchmarks._harness import Result
from benchmarks._shared import add_gz2_option, gz2_folder
from galaxymorph.data.datamodule import GalaxyDataModule
from galaxymorph.data.kaggle_gz2 import kaggle_to_catalogue
from galaxymorph.data.shards import write_shards
from galaxymorph.data.transforms import Preprocessing

TINY = {"n": 24, "size": 16, "batch": 8, "repeats": 1}


class JpegFiles(Dataset):
    """The baseline: PIL decode + torchvision transforms per image, every epoch."""

    def __init__(self, paths: list[str], size: int):
        self.paths = paths
        self.transform = v2.Compose([
            v2.PILToTensor(),
            v2.RandomRotation(180),
            v2.RandomHorizontalFlip(),
            v2.RandomResizedCrop(size, scale=(0.7, 0.8), ratio=(0.9, 1.1), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
        ])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB"))


def rate(images: int, seconds: float) -> float:
    return images / seconds


def time_baseline(paths: list[str], size: int, batch: int, workers: int) -> float:
    loader = DataLoader(JpegFiles(paths, size), batch_size=batch, shuffle=True, num_workers=workers)
    start, n = time.perf_counter(), 0
    for x in loader:
        n += len(x)
    return rate(n, time.perf_counter() - start)


def time_shards(shards: Path, size: int, batch: int, workers: int) -> float:
    dm = GalaxyDataModule(shards, image_size=size, batch_size=batch, num_workers=workers, shuffle_buffer=1000)
    start, n = time.perf_counter(), 0
    for b in dm.train_dataloader():
        x = dm.transform_batch(b, train=True)["image"]
        n += len(x)
    assert x.shape[-1] == size and x.dtype == torch.float32
    return rate(n, time.perf_counter() - start)


def time_pixel_formats(paths: list[str], stored: int) -> tuple[float, float]:
    """Samples/s reading pixels stored as .npy vs as PNG (the choice made for shards)."""
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((stored, stored))) for p in paths]
    npy, png = [], []
    for a in arrays:
        buf = io.BytesIO()
        np.save(buf, a)
        npy.append(buf.getvalue())
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        png.append(buf.getvalue())
    start = time.perf_counter()
    for b in npy:
        np.load(io.BytesIO(b))
    t_npy = time.perf_counter() - start
    start = time.perf_counter()
    for b in png:
        np.asarray(Image.open(io.BytesIO(b)))
    t_png = time.perf_counter() - start
    return len(paths) / t_npy, len(paths) / t_png


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gz2_option(parser)
    parser.add_argument("--n", type=int, default=3000, help="images from the GZ2 folder")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the best of each is kept")


def measure(args: argparse.Namespace, result: Result) -> None:
    torch.set_num_threads(1)  # on this shared 2-core machine, 2 intra-op threads made the baseline 10x slower
    stored = round(args.size / 0.75)
    gz2 = gz2_folder(args)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        tmp = Path(tmp)
        cat = kaggle_to_catalogue(gz2 / "labels.csv", gz2 / "images").iloc[: args.n]
        cat.to_parquet(tmp / "cat.parquet")
        start = time.perf_counter()
        write_shards(tmp / "cat.parquet", "gz2", tmp / "shards", Preprocessing(stored_size=stored, image_size=args.size),
                     val_fraction=0.0, test_fraction=0.0, workers=2, shard_size=500, progress=False)
        result.figures["sharding_images_per_s"] = len(cat) / (time.perf_counter() - start)
        paths = cat["file_loc"].tolist()
        for _ in range(args.repeats):
            for workers in (0, 2):
                for name, fn, source in (("files", time_baseline, paths), ("shards", time_shards, tmp / "shards")):
                    arm = f"{name}, {workers} workers"
                    best = max(fn(source, args.size, args.batch, workers), result.arms.get(arm, {}).get("images_per_s", 0))
                    result.arm(arm, images_per_s=best)
        npy, png = time_pixel_formats(paths[:500], stored)
        result.figures.update(npy_samples_per_s=npy, png_samples_per_s=png)
    result.note(f"sharding (2 processes, validation + decode + write, {len(cat)} images at {stored} px): "
                f"{result.figures['sharding_images_per_s']:.0f} images/s")
    result.table(["loader workers", "JPEG files + PIL/torchvision (img/s)", "shards + batched augmentation (img/s)", "ratio"],
                 [[str(w), f"{result.arms[f'files, {w} workers']['images_per_s']:.0f}",
                   f"{result.arms[f'shards, {w} workers']['images_per_s']:.0f}",
                   f"{result.ratio(f'shards, {w} workers', f'files, {w} workers', 'images_per_s'):.1f}x"] for w in (0, 2)],
                 arms=list(result.arms))
    result.note(f"pixel read cost at {stored} px: .npy {npy:.0f} samples/s, PNG {png:.0f} samples/s ({npy / png:.0f}x)")
