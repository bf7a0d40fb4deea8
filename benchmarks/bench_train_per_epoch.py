"""Accuracy per training image on real GZ2: test Kaggle RMSE after a fixed number of epochs, recipe by recipe.

Issue #16's goal: a single-view test RMSE <= 0.092 after at most 110k training images
seen (14 epochs of the 7,731 training galaxies), efficientnet_b0 at 64 px as in
``bench_train_gz2.py``. Each arm is today's recipe with a few settings changed
(``ARMS``); every arm trains the same epochs on the same split and seed, one after
another in one run, so the figures compare side by side. The RMSE does not depend on
the machine's speed or load; the minutes do.

    .venv/bin/python benchmarks/bench_train_per_epoch.py --epochs 14 --arms today ema lr3e-3 [--threads 2]

Re-running resumes unfinished arms and reuses finished ones (one run folder per arm).
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd
import torch
from bench_train_common import WORK, gz2_shards, predict_split
from bench_train_gz2 import kaggle_truth

from galaxymorph.kaggle import kaggle_rmse, to_kaggle
from galaxymorph.models import load_model
from galaxymorph.stats import expected_fractions
from galaxymorph.training import TrainConfig, train

# Today's recipe is TrainConfig's defaults; each arm names what it changes.
ARMS: dict[str, dict] = {
    "today": {},
    "ema": {"ema_decay": 0.998},
    "lr3e-3": {"lr": 3e-3},
    "batch32": {"batch_size": 32},
    "ema+lr3e-3": {"ema_decay": 0.998, "lr": 3e-3},
}


def train_arm(name: str, args: argparse.Namespace) -> tuple[dict, float]:
    """Train one arm (or reuse it) and score its test split; returns (result, training minutes)."""
    run = WORK / f"per_epoch_{name}_{args.arch}_{args.size}px_{args.epochs}ep"
    config = TrainConfig(shards=str(gz2_shards()), out=str(run), arch=args.arch, size=args.size, epochs=args.epochs,
                         patience=args.epochs, threads=args.threads, num_workers=1, progress=False, **ARMS[name])
    start = time.perf_counter()
    train(config)
    minutes = (time.perf_counter() - start) / 60
    model = load_model(run)
    ids, conc, _ = predict_split(model, gz2_shards(), "test", samples=5)
    target = kaggle_truth().loc[ids].to_numpy()
    metrics = pd.read_csv(run / "metrics.csv")
    val = metrics.dropna(subset=["val/loss"]).groupby("epoch")["val/loss"].last()
    galaxies = json.loads((gz2_shards() / "manifest.json").read_text())["splits"]["train"]["count"]
    return {"kaggle_rmse": kaggle_rmse(to_kaggle(expected_fractions(conc, model.schema), model.schema), target),
            "val_loss": val.round(3).tolist(), "images_seen": len(val) * galaxies, "settings": ARMS[name]}, minutes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--arms", nargs="+", default=["today", "ema"], choices=list(ARMS))
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    results = {}
    for name in args.arms:
        results[name], minutes = train_arm(name, args)
        print(f"{name}: RMSE {results[name]['kaggle_rmse']:.4f} ({minutes:.1f} min this call)", flush=True)
    print(f"\nGZ2 test split, {args.arch} at {args.size} px, {args.epochs} epochs (cosine over {args.epochs}), "
          "single view, 5 MC-dropout samples")
    print("| recipe | settings changed | training images seen | test Kaggle RMSE | val loss, last epoch |\n|---|---|---|---|---|")
    for name, r in results.items():
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "(today's defaults)"
        print(f"| {name} | {settings} | {r['images_seen']:,} | {r['kaggle_rmse']:.4f} | {r['val_loss'][-1]:.3f} |")
    out = WORK / f"per_epoch_{args.arch}_{args.size}px_{args.epochs}ep.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    out.write_text(json.dumps({**previous, **results}, indent=1))
    print(f"val loss per epoch: {json.dumps({n: r['val_loss'] for n, r in results.items()})}")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
