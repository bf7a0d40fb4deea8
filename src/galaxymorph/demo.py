"""The whole pipeline on simulated galaxies, end to end, in minutes on a laptop CPU.

simulate (known truth) -> shards -> train -> predict the held-out galaxies with
MC dropout -> evaluate against votes and truth -> HTML report. Every step
resumes, so a re-run after an interruption continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from galaxymorph.data.shards import write_shards
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.evaluation import evaluate
from galaxymorph.prediction import predict
from galaxymorph.report import build_report
from galaxymorph.schema import get_schema
from galaxymorph.simulate import simulate_catalogue
from galaxymorph.training import TrainConfig, train
from galaxymorph.training.threads import fastest_thread_count

__all__ = ["DemoSettings", "run_demo"]

SCHEMA = "gz_decals_dr5"  # the tree the simulated volunteers answer


@dataclasses.dataclass
class DemoSettings:
    """Sizes of the demo; the defaults finish in under 5 minutes on 2 CPU cores with AVX2 alone (BENCHMARKS: demo)."""

    galaxies: int = 3000
    image_px: int = 64  # simulated images and stored shard pixels
    model_px: int = 48  # model input after the central zoom-crop
    arch: str = "resnet10t"  # 2.9x efficientnet_b0's training images/s at 48 px on such a machine, and closer to the truth
    epochs: int = 16
    batch_size: int = 64
    lr: float = 2e-3
    samples: int = 5
    test_fraction: float = 0.2
    workers: int = 2  # processes simulating and sharding
    loader_workers: int = 1  # training reads raw shard pixels: one reader keeps up and leaves the cores to the model
    threads: int | None = None  # torch threads; None: the fastest, timed on this machine when the demo starts
    seed: int = 0


def run_demo(out: str | Path = "demo_output", settings: DemoSettings | None = None, progress: bool = True) -> dict[str, Any]:
    """Run every step into ``out``; returns the paths written and the headline numbers."""
    settings = settings or DemoSettings()
    if settings.threads is None:
        schema = get_schema(SCHEMA)
        threads = fastest_thread_count(schema, settings.arch, settings.model_px, settings.batch_size)
        settings = dataclasses.replace(settings, threads=threads)
    before = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return _run(Path(out), settings, progress)
    finally:
        torch.set_num_threads(before)


def _run(out: Path, settings: DemoSettings, progress: bool) -> dict[str, Any]:
    console = Console(quiet=not progress)
    load_at_start = _load_average()
    paths = {name: out / name for name in ("simulation", "shards", "run", "evaluation")}
    paths.update(predictions=out / "predictions.parquet", report=out / "report.html")

    seconds: dict[str, float] = {}

    @contextmanager
    def step(name: str, title: str):
        console.rule(title)
        start = time.perf_counter()
        yield
        seconds[name] = round(time.perf_counter() - start, 1)

    with step("simulate", f"1/5 simulating {settings.galaxies} galaxies and their volunteers"):
        simulate_catalogue(settings.galaxies, settings.image_px, paths["simulation"], seed=settings.seed,
                           workers=settings.workers, progress=progress)
    catalogue = paths["simulation"] / "catalogue.parquet"

    with step("shard", "2/5 decoding the images once into shards (train / val / test)"):
        prep = Preprocessing(stored_size=settings.image_px, image_size=settings.model_px)
        write_shards(catalogue, SCHEMA, paths["shards"], prep, test_fraction=settings.test_fraction,
                     seed=settings.seed, workers=settings.workers, shard_size=500, progress=progress)

    with step("train", f"3/5 training {settings.arch} at {settings.model_px} px for up to {settings.epochs} epochs "
                       f"({settings.threads} torch thread{'s' if settings.threads > 1 else ''})"):
        best = train(TrainConfig(shards=str(paths["shards"]), out=str(paths["run"]), arch=settings.arch,
                                 epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
                                 workers=settings.loader_workers, threads=settings.threads, seed=settings.seed,
                                 progress=progress))

    with step("predict", f"4/5 predicting the held-out galaxies, {settings.samples} MC-dropout samples each"):
        predict(best, paths["predictions"], shards=paths["shards"], split="test", samples=settings.samples,
                batch_size=128, progress=progress)

    with step("evaluate_report", "5/5 evaluating against the votes and the simulator's truth; writing the report"):
        result = evaluate(paths["predictions"], catalogue, out=paths["evaluation"])
        build_report(paths["predictions"], paths["report"], evaluation=paths["evaluation"], catalogue=catalogue)

    headline = {**_headline(result), "seconds": seconds}
    # how busy the machine was: a time means little without it
    summary = {"settings": dataclasses.asdict(settings), **headline, "load_average": [load_at_start, _load_average()]}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    console.print(_summary(headline, paths))
    return {"paths": {k: str(v) for k, v in paths.items()}, **headline}


def _load_average() -> float | None:
    """The 1-minute load average (None where the system keeps none, as on Windows)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _headline(result: dict[str, Any]) -> dict[str, Any]:
    overall = result["overall"]
    return {
        "test_galaxies": result["galaxies"],
        "mae_votes": overall["model"]["mae"],
        "mae_votes_constant": overall["constant"]["mae"],
        "mae_truth": overall["truth"]["model"]["mae"],
        "mae_truth_constant": overall["truth"]["constant"]["mae"],
        "mae_truth_noise_floor": overall["truth"]["noise_floor"]["mae"],
        "coverage_90": overall["coverage"]["0.9"],
        "nll_per_galaxy": overall["nll_per_galaxy"],
    }


def _summary(h: dict[str, Any], paths: dict[str, Path]) -> str:
    better = 1 - h["mae_truth"] / h["mae_truth_constant"]
    return (
        f"\n[bold]Held-out galaxies: {h['test_galaxies']}[/bold]\n"
        f"  vote-fraction MAE against the volunteers' votes: {h['mae_votes']:.3f} "
        f"(constant prediction {h['mae_votes_constant']:.3f})\n"
        f"  MAE against the true probabilities: {h['mae_truth']:.3f} (constant {h['mae_truth_constant']:.3f}, "
        f"{better:.0%} lower; the votes themselves, i.e. the noise floor: {h['mae_truth_noise_floor']:.3f})\n"
        f"  observed votes inside the 90% predictive interval: {h['coverage_90']:.1%}\n"
        f"  seconds per step: {h['seconds']}\n\n"
        f"Open [bold]{paths['report']}[/bold] in a browser; metrics in {paths['evaluation'] / 'evaluation.json'}, "
        f"predictions in {paths['predictions']}."
    )
