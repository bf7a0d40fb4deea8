"""Post-hoc calibration measured: the held-out coverage of the intervals before and after, per question.

    python -m benchmarks calibration --run RUN --shards SHARDS --catalogue CATALOGUE

Takes a finished training run (its best model as it was before calibration), fits the
scales on the shards' validation split (``galaxymorph.training.finish``), predicts the
test split with the raw and the calibrated model, and evaluates both against the
catalogue's votes (and true probabilities when simulated). With ``--tiny`` and no run, a
one-epoch model on 60 simulated galaxies stands in for the demo's.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from benchmarks._harness import Result
from benchmarks._shared import TINY_TRAINING, add_demo_options, demo_inputs, train_timed
from galaxymorph.data.datamodule import GalaxyDataModule
from galaxymorph.evaluation import evaluate
from galaxymorph.models import load_model, save_model
from galaxymorph.prediction import predict
from galaxymorph.training import TrainConfig
from galaxymorph.training.finish import finish_run

TINY = {"samples": 2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, help="a finished training run, e.g. demo_output/run")
    add_demo_options(parser)
    parser.add_argument("--samples", type=int, default=5)


def tiny_run(args: argparse.Namespace, shards: Path) -> Path:
    """A one-epoch model, what ``--tiny`` calibrates when no run is given."""
    settings = {k: TINY_TRAINING[k] for k in ("arch", "epochs", "batch_size", "threads")}
    best, _, _ = train_timed(TrainConfig(shards=str(shards), out=str(args.work / "tiny_run"), workers=0,
                                         progress=False, **settings))
    return best


def measure(args: argparse.Namespace, result: Result) -> None:
    if not (args.run or args.tiny):
        raise SystemExit("give --run (a finished training run, e.g. demo_output/run), or run with --tiny")
    shards, catalogue = demo_inputs(args)
    run = args.run or tiny_run(args, shards)
    models = args.work / "models"
    shutil.rmtree(models, ignore_errors=True)  # this benchmark's own folder
    raw = load_model(run)
    raw.set_calibration(None)
    save_model(raw, models / "raw")
    shutil.copytree(models / "raw", models / "calibrated")
    model = load_model(models / "raw")
    data = GalaxyDataModule(shards, image_size=model.config["preprocessing"]["image_size"], batch_size=128)
    scales = finish_run(models / "calibrated", data, ood_galaxies=0, samples=args.samples)["calibration"]
    result.figures["scales"] = scales
    for name in ("raw", "calibrated"):
        out = models / f"{name}.parquet"
        predict(models / name, out, shards=shards, split="test", samples=args.samples, progress=False)
        evaluation = evaluate(out, catalogue)
        result.arm(name, overall=evaluation["overall"], questions=evaluation["questions"])
    result.note("Held-out votes inside the central predictive intervals:")
    rows = []
    for name in ("raw", "calibrated"):
        o = result.arms[name]["overall"]
        rows.append([name, f"{o['coverage']['0.5']:.1%}", f"{o['coverage']['0.9']:.1%}", f"{o['nll_per_galaxy']:.2f}",
                     f"{o['model']['mae']:.4f}"])
    result.table(["", "50% intervals", "90% intervals", "NLL per galaxy", "MAE vs votes"], rows, arms=["raw", "calibrated"])
    rows = []
    for q, before in result.arms["raw"]["questions"].items():
        after = result.arms["calibrated"]["questions"][q]
        truth = (f"{before['truth']['coverage']['0.9']:.1%}, {after['truth']['coverage']['0.9']:.1%}"
                 if "truth" in before else "-")
        rows.append([q, f"{scales.get(q, 1.0):.3f}", f"{before['coverage']['0.9']:.1%}, {after['coverage']['0.9']:.1%}",
                     truth])
    result.table(["question", "scale", "votes in 90% (raw, calibrated)", "truth in 90% credible (raw, calibrated)"],
                 rows, arms=["raw", "calibrated"])
