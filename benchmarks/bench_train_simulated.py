"""Simulated gz_decals_dr5 galaxies (ground truth known): mean absolute error of the predicted
vote fractions against the TRUE answer probabilities on the held-out test split, beside the
noise floor (the observed vote fractions' own error against the truth). Goal: model / floor <= 1.5.

    .venv/bin/python benchmarks/bench_train_simulated.py --n 20000 --minutes 35 [--sim-size 96]
        [--size 64] [--arch efficientnet_b0] [--epochs 20] [--threads 2] [--workers 1] [--shift 0.03]

Simulation, shards and the training run are cached under runs/bench_train/ and resume.
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd
import torch
from bench_train_common import (
    WORK,
    add_shift_option,
    hhmmss,
    predict_split,
    shift_suffix,
)

from galaxymorph.data.shards import write_shards
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.evaluate import TRUTH_PREFIX, evaluate_arrays
from galaxymorph.models import load_model
from galaxymorph.simulate import simulate_catalogue
from galaxymorph.training import TrainConfig, train


def simulated_shards(n: int, sim_size: int, size: int, workers: int):
    sim = WORK / f"sim_{n}_{sim_size}px"
    if not (sim / "catalogue.parquet").is_file():
        simulate_catalogue(n, sim_size, sim, seed=0, workers=workers)
    shards = WORK / f"sim_{n}_{sim_size}px_shards"
    if not (shards / "manifest.json").is_file():
        prep = Preprocessing(stored_size=sim_size, source_crop=1.0, image_size=size, channels=3)
        write_shards(sim / "catalogue.parquet", "gz_decals_dr5", shards, prep, seed=0, workers=workers, shard_size=500)
    return sim / "catalogue.parquet", shards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--sim-size", type=int, default=96, help="px of the simulated images (stored as is)")
    parser.add_argument("--size", type=int, default=64, help="model input px")
    parser.add_argument("--minutes", type=float, default=35)
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20, help="cosine schedule length; --minutes caps the run")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--workers", type=int, default=1)
    add_shift_option(parser)
    args = parser.parse_args()

    catalogue, shards = simulated_shards(args.n, args.sim_size, args.size, max(1, args.workers))
    run = WORK / f"sim_{args.n}_{args.arch}_{args.size}px_{args.minutes:g}min_{args.epochs}ep{shift_suffix(args.shift)}"
    config = TrainConfig(
        shards=str(shards), out=str(run), arch=args.arch, size=args.size, batch_size=args.batch_size,
        epochs=args.epochs, train_shift=args.shift, threads=args.threads, num_workers=args.workers, patience=args.epochs, progress=False,
        max_time=hhmmss(args.minutes),
    )
    start = time.perf_counter()
    train(config)
    train_minutes = (time.perf_counter() - start) / 60
    model = load_model(run)
    table = pd.read_parquet(catalogue).set_index("id_str")
    results = {}
    for tta in (False, True):
        ids, conc, votes = predict_split(model, shards, "test", tta=tta)
        truth = table.loc[ids, [f"{TRUTH_PREFIX}{a}" for a in model.schema.answers]].to_numpy()
        results["8-view TTA" if tta else "single view"] = evaluate_arrays(conc, votes, model.schema, truth=truth, levels=(0.5, 0.9))
    single = results["single view"]
    overall = single["overall"]["truth"]
    ratio = overall["model"]["mae"] / overall["noise_floor"]["mae"]
    epochs_done = int(pd.read_csv(run / "metrics.csv")["epoch"].max()) + 1
    print(f"\nsimulated gz_decals_dr5, {args.n} galaxies ({len(ids)} in test), {args.arch} at {args.size} px, "
          f"{train_minutes:.1f} min of training ({epochs_done} epochs)")
    print("| vote fractions vs true probabilities | MAE |\n|---|---|")
    for name, metrics in results.items():
        print(f"| galaxymorph (expected fractions, {name}) | {metrics['overall']['truth']['model']['mae']:.4f} |")
    print(f"| observed fractions (noise floor) | {overall['noise_floor']['mae']:.4f} |")
    print(f"| constant (mean of truth) | {overall['constant']['mae']:.4f} |")
    print(f"model / noise floor: {ratio:.2f} (goal <= 1.5); single view, 50% / 90% interval coverage: "
          f"{single['overall']['coverage']['0.5']:.3f} / {single['overall']['coverage']['0.9']:.3f}")
    print("\n| question (single view, MAE vs truth) | model | noise floor | constant |\n|---|---|---|---|")
    for question, metrics in single["questions"].items():
        if metrics.get("truth"):
            t = metrics["truth"]
            print(f"| {question} | {t['model']['mae']:.3f} | {t['noise_floor']['mae']:.3f} | {t['constant']['mae']:.3f} |")
    (run / "bench_result.json").write_text(json.dumps({"args": vars(args), "truth": overall, "ratio": ratio,
                                                       "train_minutes": train_minutes, "epochs": epochs_done}, indent=1))


if __name__ == "__main__":
    main()
