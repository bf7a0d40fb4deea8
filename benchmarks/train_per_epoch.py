"""Accuracy per training image on real GZ2: test Kaggle RMSE after a fixed number of epochs, recipe by recipe.

Issue #16's goal: a single-view test RMSE <= 0.092 after at most 110k training images
seen (14 epochs of the 7,731 training galaxies), efficientnet_b0 at 64 px as in
``train_gz2``. Each arm is today's recipe with a few settings changed (``ARMS``); every
arm trains the same epochs on the same split and seed, one after another in one run, so
the figures compare side by side. The RMSE does not depend on the machine's speed or
load; the minutes do. The test split is predicted by ``galaxymorph.prediction`` (single
view) and scored by ``galaxymorph.evaluation``.

    python -m benchmarks train_per_epoch --epochs 14 --arms today ema lr3e-3 [--threads 2]

Re-running resumes unfinished arms and reuses finished ones (one run folder per arm).
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

from benchmarks._harness import Result
from benchmarks._shared import (
    TINY_TRAINING,
    add_gz2_option,
    add_training_options,
    gz2_catalogue,
    gz2_shards,
    test_split_metrics,
    train_timed,
    training_config,
)
from galaxymorph.models import load_model

# Today's recipe is TrainConfig's defaults; each arm names what it changes.
ARMS: dict[str, dict] = {
    "today": {},
    "ema": {"ema_decay": 0.998},
    "lr3e-3": {"lr": 3e-3},
    "batch32": {"batch_size": 32},
    "ema+lr3e-3": {"ema_decay": 0.998, "lr": 3e-3},
}
TINY = {**TINY_TRAINING, "arms": ["today", "ema"]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gz2_option(parser)
    add_training_options(parser, epochs=14, minutes=None)
    parser.add_argument("--arms", nargs="+", default=["today", "ema"], choices=list(ARMS))


def measure(args: argparse.Namespace, result: Result) -> None:
    shards, catalogue = gz2_shards(args), gz2_catalogue(args)
    galaxies = json.loads((shards / "manifest.json").read_text())["splits"]["train"]["count"]
    for name in args.arms:
        run = args.work / f"per_epoch_{name}_{args.arch}_{args.size}px_{args.epochs}ep"
        best, minutes, _ = train_timed(training_config(args, shards, run, **ARMS[name]))
        overall = test_split_metrics(load_model(best), shards, catalogue, args.work / f"{run.name}_test.parquet",
                                     args.samples)["overall"]
        metrics = pd.read_csv(run / "metrics.csv")
        val = metrics.dropna(subset=["val/loss"]).groupby("epoch")["val/loss"].last()
        result.arm(name, kaggle_rmse=overall["kaggle_rmse"]["model"], val_loss=val.round(3).tolist(),
                   images_seen=len(val) * galaxies, minutes_this_call=minutes, settings=ARMS[name])
        print(f"{name}: RMSE {overall['kaggle_rmse']['model']:.4f} ({minutes:.1f} min this call)", flush=True)
    result.note(f"GZ2 test split, {args.arch} at {args.size} px, {args.epochs} epochs (cosine over {args.epochs}), "
                f"single view, {args.samples} MC-dropout samples")
    rows = []
    for name in args.arms:
        r = result.arms[name]
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "(today's defaults)"
        rows.append([name, settings, f"{r['images_seen']:,}", f"{r['kaggle_rmse']:.4f}", f"{r['val_loss'][-1]:.3f}"])
    result.table(["recipe", "settings changed", "training images seen", "test Kaggle RMSE", "val loss, last epoch"],
                 rows, arms=list(args.arms))
    result.note(f"val loss per epoch: {json.dumps({n: result.arms[n]['val_loss'] for n in args.arms})}")
