"""GPU throughput: training images/s and prediction galaxies/s, galaxymorph beside zoobot 2.9, in one run.

Same accelerator, same random images and vote counts, same precision (bf16 by
default) for both. Training: Lightning steps of the full model (encoder + Dirichlet
head + loss), no augmentation on either side, the first ``--warmup`` steps not
timed, beside the loader alone (the same batches, collated and moved to the device,
no model). Prediction: ``--samples`` posterior samples per galaxy; galaxymorph runs the
encoder once and the head N times (``posterior_samples``), zoobot N full forward
passes with its test-time dropout. Zoobot is optional: when it is not importable
the script says so and measures galaxymorph alone. ``--tiny`` runs timm's tiny test versions of
both architectures at 32 px for a few steps on any machine (the test suite runs it on CPU).

    python -m benchmarks gpu [--archs efficientnet_b0 convnext_nano] [--size 224] [--batch 128]
    python -m benchmarks gpu --tiny
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from typing import Any, Callable

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks._harness import Result
from benchmarks._shared import Throughput
from galaxymorph.models import GalaxyModel
from galaxymorph.prediction.mc_dropout import posterior_samples
from galaxymorph.quiet import quiet_lightning
from galaxymorph.schema import Schema, get_schema
from galaxymorph.training.galaxy_module import GalaxyLightningModule

SCHEMA = "gz_decals_dr5"


class RandomGalaxies(Dataset):
    """Fixed random images in [0, 1] and whole-number votes: what both models are fed."""

    def __init__(self, n: int, size: int, schema: Schema, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, size, size, generator=g)
        self.votes = torch.randint(0, 10, (n, schema.n_answers), generator=g).float()
        self.answers = schema.answers

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        # "votes" for galaxymorph; one entry per answer column for zoobot's batch_to_supervised_tuple
        return {"image": self.images[i], "votes": self.votes[i], **dict(zip(self.answers, self.votes[i]))}


def _loader(data: RandomGalaxies, args: argparse.Namespace, device: torch.device) -> DataLoader:
    """What both libraries' training steps are fed: one process collating, pinned for a GPU."""
    return DataLoader(data, batch_size=args.batch, shuffle=True, drop_last=True, pin_memory=device.type == "cuda")


def train_throughput(module: L.LightningModule, data: RandomGalaxies, args: argparse.Namespace,
                     device: torch.device) -> float:
    """Images per second over ``--steps`` timed Lightning training steps."""
    probe = Throughput(warmup=args.warmup, steps=args.steps)
    with quiet_lightning("You defined a `validation_step` but have no `val_dataloader`"):
        trainer = L.Trainer(accelerator=args.accelerator, devices=1, precision=args.precision, max_epochs=1,
                            callbacks=[probe], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0)
        trainer.fit(module, train_dataloaders=_loader(data, args, device))
    return probe.images_per_second


def loader_throughput(data: RandomGalaxies, args: argparse.Namespace, device: torch.device) -> float:
    """Images per second of that loader alone, batches moved to ``device``: the ceiling of both training figures."""
    batches = iter(_loader(data, args, device))
    for _ in range(args.warmup):
        next(batches)
    start = time.perf_counter()
    for _ in range(args.steps):
        batch = next(batches)
        batch["image"].to(device, non_blocking=True)
    _sync(device)
    return args.steps * args.batch / (time.perf_counter() - start)


def predict_throughput(samples_of: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                       data: RandomGalaxies, args: argparse.Namespace) -> float:
    """Galaxies per second of ``samples_of(batch)`` on ``device``, after one untimed batch."""
    batches = [data.images[i: i + args.batch] for i in range(0, len(data), args.batch)][: args.predict_batches + 1]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision.startswith("bf16"))
    with torch.inference_mode(), autocast:
        samples_of(batches[0].to(device))
        _sync(device)
        start = time.perf_counter()
        for batch in batches[1:]:
            samples_of(batch.to(device, non_blocking=True))
        _sync(device)
    return sum(len(b) for b in batches[1:]) / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device(accelerator: str) -> torch.device:
    if accelerator in ("auto", "gpu") and torch.cuda.is_available():
        return torch.device("cuda")
    if accelerator in ("auto", "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def ours(arch: str, data: RandomGalaxies, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    torch.manual_seed(0)
    model = GalaxyModel(SCHEMA, arch=arch, image_size=args.size)
    train = train_throughput(GalaxyLightningModule(model, cosine=False), data, args, device)
    model = GalaxyModel(SCHEMA, arch=arch, image_size=args.size).to(device).eval()
    predict = predict_throughput(lambda x: posterior_samples(model, x, args.samples), device, data, args)
    return {"train_images_per_s": train, "predict_galaxies_per_s": predict}


def zoobot(arch: str, data: RandomGalaxies, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    from zoobot.pytorch.estimators import define_model

    schema = get_schema(SCHEMA)
    pairs = {q.name: ["_" + a for a in q.answers] for q in schema.questions}
    # zoobot allows one parent answer per question: keep the first
    dependencies = {q.name: (q.after[0] if q.after else None) for q in schema.questions}

    def build() -> L.LightningModule:
        torch.manual_seed(0)
        return define_model.ZoobotTree(output_dim=schema.n_answers, question_answer_pairs=pairs,
                                       dependencies=dependencies, architecture_name=arch, channels=3)

    train = train_throughput(build(), data, args, device)
    model = build().to(device).eval()
    predict = predict_throughput(lambda x: torch.stack([model(x) for _ in range(args.samples)], dim=-1), device, data,
                                 args)
    return {"train_images_per_s": train, "predict_galaxies_per_s": predict}


TINY = {"archs": ["test_efficientnet", "test_convnext"], "size": 32, "batch": 4, "steps": 2, "warmup": 1,
        "predict_batches": 2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archs", nargs="+", default=["efficientnet_b0", "convnext_nano"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed training steps first")
    parser.add_argument("--predict-batches", type=int, default=20)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--accelerator", default="auto")


def measure(args: argparse.Namespace, result: Result) -> None:
    """Every architecture, ours then zoobot's, on the same images."""
    device = _device(args.accelerator)
    data = RandomGalaxies(args.batch * max(args.warmup + args.steps + 2, args.predict_batches + 1), args.size,
                          get_schema(SCHEMA))
    sides = [("galaxymorph", ours)]
    if importlib.util.find_spec("zoobot") is None:
        result.skip("zoobot 2.9", "not importable here: galaxymorph measured alone")
    else:
        sides.append(("zoobot 2.9", zoobot))
    result.figures["device"] = str(device)
    result.figures["loader_images_per_s"] = loader_throughput(data, args, device)
    for arch in args.archs:
        for name, measure_side in sides:
            result.arm(f"{name}, {arch}", **measure_side(arch, data, args, device))
    result.note(f"device {device} ({result.data['machine']['gpu'] or 'CPU'}), {args.size} px, batch {args.batch}, "
                f"{args.precision}, {args.samples} posterior samples. The loader that feeds both tools' training "
                f"steps gives {result.figures['loader_images_per_s']:.1f} images/s alone.")
    result.table(["arch", "library", "train images/s", "predict galaxies/s"],
                 [[name.split(", ")[1], name.split(", ")[0], f"{a['train_images_per_s']:.1f}",
                   f"{a['predict_galaxies_per_s']:.1f}"] for name, a in result.arms.items()],
                 arms=list(result.arms), align=["---", "---", "---:", "---:"])
