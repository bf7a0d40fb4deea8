"""Simulated gz_decals_dr5 galaxies (ground truth known): mean absolute error of the predicted
vote fractions against the TRUE answer probabilities on the held-out test split, beside the
noise floor (the observed vote fractions' own error against the truth). Goal: model / floor <= 1.5.

The test split is predicted by ``galaxymorph.prediction`` and scored by ``galaxymorph.evaluation``.

    python -m benchmarks train_simulated --n 20000 --minutes 35 [--sim-size 96] [--size 64]
        [--arch efficientnet_b0] [--epochs 20] [--threads 2] [--workers 1] [--shift 0.03]

Simulation, shards and the training run are cached in the work root and resume.
"""

from __future__ import annotations

import argparse

from benchmarks._harness import Result
from benchmarks._shared import (
    TINY_TRAINING,
    add_training_options,
    shift_suffix,
    simulated_shards,
    test_split_metrics,
    train_timed,
    training_config,
)
from galaxymorph.models import load_model

TINY = {**TINY_TRAINING, "n": 60, "sim_size": 24}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_options(parser, epochs=20, minutes=35)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--sim-size", type=int, default=96, help="px of the simulated images (stored as is)")


def measure(args: argparse.Namespace, result: Result) -> None:
    catalogue, shards = simulated_shards(args, args.n, args.sim_size, args.size, max(1, args.workers))
    run = args.work / f"sim_{args.n}_{args.arch}_{args.size}px_{args.minutes:g}min_{args.epochs}ep{shift_suffix(args.shift)}"
    best, minutes, epochs = train_timed(training_config(args, shards, run))
    model = load_model(best)
    questions = {}
    for view, tta in (("single view", False), ("8-view TTA", True)):
        evaluation = test_split_metrics(model, shards, catalogue, args.work / f"{run.name}_test_{view[0]}.parquet",
                                        args.samples, tta)
        truth = evaluation["overall"]["truth"]
        result.arm(view, mae_truth=truth["model"]["mae"], noise_floor=truth["noise_floor"]["mae"],
                   constant=truth["constant"]["mae"], coverage_50=evaluation["overall"]["coverage"]["0.5"],
                   coverage_90=evaluation["overall"]["coverage"]["0.9"], test_galaxies=evaluation["galaxies"],
                   train_minutes=minutes, epochs=epochs)
        questions[view] = {q: m["truth"] for q, m in evaluation["questions"].items() if m.get("truth")}
    single = result.arms["single view"]
    result.figures["questions_single_view"] = questions["single view"]
    result.note(f"simulated gz_decals_dr5, {args.n} galaxies ({single['test_galaxies']} in test), {args.arch} at "
                f"{args.size} px, {minutes:.1f} min of training ({epochs} epochs)")
    result.table(["vote fractions vs true probabilities", "MAE"],
                 [[f"galaxymorph (expected fractions, {view})", f"{result.arms[view]['mae_truth']:.4f}"]
                  for view in ("single view", "8-view TTA")]
                 + [["observed fractions (noise floor)", f"{single['noise_floor']:.4f}"],
                    ["constant (mean of truth)", f"{single['constant']:.4f}"]], arms=["single view", "8-view TTA"])
    result.note(f"model / noise floor: {single['mae_truth'] / single['noise_floor']:.2f} (goal <= 1.5); single view, "
                f"50% / 90% interval coverage: {single['coverage_50']:.3f} / {single['coverage_90']:.3f}")
    result.table(["question (single view, MAE vs truth)", "model", "noise floor", "constant"],
                 [[q, f"{t['model']['mae']:.3f}", f"{t['noise_floor']['mae']:.3f}", f"{t['constant']['mae']:.3f}"]
                  for q, t in questions["single view"].items()], arms=["single view"])
