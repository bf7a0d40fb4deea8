"""Real GZ2 (Kaggle) quality under a wall-clock budget: Kaggle RMSE of the 37 cumulative
fractions on a fixed test split, beside the per-column-mean baseline, plus calibration.

Split: 80/10/10 by a hash of (seed 0, GalaxyID), the same as every training benchmark.
Targets: the original Kaggle cumulative fractions of the test galaxies; the model is
trained on vote counts derived from them (``galaxymorph.data.kaggle_gz2``, 40 volunteers).
Baseline: every test galaxy predicted as the train split's per-column mean.
Calibration: share of observed test vote counts inside the 50% / 90% central
posterior-predictive intervals (``galaxymorph.evaluate``), ideally 0.5 / 0.9.

    .venv/bin/python benchmarks/bench_train_gz2.py --minutes 35 [--arch efficientnet_b0]
        [--size 64] [--batch-size 64] [--epochs 30] [--lr 1e-3] [--threads 2] [--workers 1] [--shift 0.03]

Re-running the same command resumes an interrupted run (same run folder).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
import torch
from bench_train_common import (
    SPLIT_SEED,
    WORK,
    Throughput,
    add_shift_option,
    gz2_shards,
    hhmmss,
    predict_split,
    shift_suffix,
)

from galaxymorph.data.shards import assign_splits
from galaxymorph.evaluate import evaluate_arrays
from galaxymorph.kaggle import kaggle_columns, kaggle_rmse, to_kaggle
from galaxymorph.models import load_model
from galaxymorph.stats import expected_fractions
from galaxymorph.training import TrainConfig, train


def kaggle_truth() -> pd.DataFrame:
    """Kaggle cumulative fractions by id_str (the catalogue keeps them as ``kaggle:ClassX.Y``)."""
    catalogue = pd.read_parquet(WORK / "gz2_catalogue.parquet")
    columns = [f"kaggle:{k}" for k in kaggle_columns()]
    return catalogue.set_index("id_str")[columns]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=35)
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30, help="cosine schedule length; --minutes caps the run")
    parser.add_argument("--lr", type=float, default=1e-3)
    add_shift_option(parser)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--samples", type=int, default=5, help="MC-dropout samples per view at test time")
    args = parser.parse_args()

    shards = gz2_shards()
    run = WORK / f"gz2_{args.arch}_{args.size}px_{args.minutes:g}min_{args.epochs}ep{shift_suffix(args.shift)}"
    config = TrainConfig(
        shards=str(shards), out=str(run), arch=args.arch, size=args.size, batch_size=args.batch_size,
        epochs=args.epochs, lr=args.lr, train_shift=args.shift, threads=args.threads, num_workers=args.workers, patience=args.epochs,
        max_time=hhmmss(args.minutes), progress=False,
    )
    probe = Throughput(warmup=5, steps=10**9, stop=False)
    start = time.perf_counter()
    train(config, callbacks=[probe])
    train_minutes = (time.perf_counter() - start) / 60
    model = load_model(run)

    truth = kaggle_truth()
    catalogue_ids = truth.index.to_numpy()
    in_train = assign_splits(catalogue_ids, SPLIT_SEED, 0.1, 0.1) == "train"
    column_mean = truth[in_train].mean().to_numpy()  # NaN-aware: over galaxies with the question provided

    results = {}
    for tta in (False, True):
        ids, conc, votes = predict_split(model, shards, "test", samples=args.samples, tta=tta)
        target = truth.loc[ids].to_numpy()
        predicted = to_kaggle(expected_fractions(conc, model.schema), model.schema)
        metrics = evaluate_arrays(conc, votes, model.schema, levels=(0.5, 0.9))
        results["8-view TTA" if tta else "single view"] = {
            "kaggle_rmse": kaggle_rmse(predicted, target),
            "coverage_50": metrics["overall"]["coverage"]["0.5"],
            "coverage_90": metrics["overall"]["coverage"]["0.9"],
        }
    baseline = kaggle_rmse(np.broadcast_to(column_mean, target.shape), target)
    epochs_done = int(pd.read_csv(run / "metrics.csv")["epoch"].max()) + 1
    print(f"\nGZ2 Kaggle test split ({len(ids)} galaxies), {args.arch} at {args.size} px, "
          f"{train_minutes:.1f} min of training ({epochs_done} epochs), threads={args.threads}")
    print("| predictor | Kaggle RMSE | 50% interval coverage | 90% interval coverage |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| galaxymorph, {name} | {r['kaggle_rmse']:.4f} | {r['coverage_50']:.3f} | {r['coverage_90']:.3f} |")
    print(f"| per-column mean (train split) | {baseline:.4f} | | |")
    rate = probe.images_per_second
    print(f"training images/s (steps after the 5th, validation excluded): {rate:.1f}")
    (run / "bench_result.json").write_text(json.dumps({"args": vars(args), "results": results, "baseline": baseline,
                                                       "train_minutes": train_minutes, "epochs": epochs_done,
                                                       "images_per_second": rate}, indent=1))


if __name__ == "__main__":
    main()
