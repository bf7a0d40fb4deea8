"""Real GZ2 (Kaggle) quality under a wall-clock budget: Kaggle RMSE of the 37 cumulative
fractions on a fixed test split, beside the per-column-mean baseline, plus calibration.

Split: 80/10/10 by a hash of (seed 0, GalaxyID), the same as every training benchmark.
Targets: the original Kaggle cumulative fractions of the test galaxies; the model is
trained on vote counts derived from them (``galaxymorph.data.kaggle_gz2``, 40 volunteers).
The test split is predicted by ``galaxymorph.prediction`` and scored by ``galaxymorph.evaluation``,
the commands users run, from a single view and averaged over the 8 rotation/flip views.
Baseline: every test galaxy predicted as the train split's per-column mean.
Calibration: share of observed test vote counts inside the 50% / 90% central
posterior-predictive intervals, ideally 0.5 / 0.9.

    python -m benchmarks train_gz2 --minutes 35 [--arch efficientnet_b0] [--size 64] [--batch-size 64]
        [--epochs 30] [--lr 1e-3] [--threads 2] [--workers 1] [--shift 0.03]

Re-running the same command resumes an interrupted run (same run folder).
"""

from __future__ import annotations

import argparse

from benchmarks._harness import Result
from benchmarks._shared import TINY_TRAINING, add_gz2_option, add_training_options, gz2_run_folder, train_gz2_arms

TINY = TINY_TRAINING


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gz2_option(parser)
    add_training_options(parser, epochs=30, minutes=35)


def measure(args: argparse.Namespace, result: Result) -> None:
    arms = train_gz2_arms(args, result, args.work / gz2_run_folder(args))
    first = result.arms[arms[0]]
    result.note(f"GZ2 Kaggle test split ({first['test_galaxies']} galaxies), {args.arch} at {args.size} px, "
                f"{first['train_minutes']:.1f} min of training ({first['epochs']} epochs), threads={args.threads}")
    result.table(["predictor", "Kaggle RMSE", "50% coverage", "90% coverage"],
                 [[arm, f"{a['kaggle_rmse']:.4f}", f"{a['coverage_50']:.3f}", f"{a['coverage_90']:.3f}"]
                  for arm, a in ((arm, result.arms[arm]) for arm in arms)]
                 + [["per-column mean of the train split", f"{result.figures['per_column_mean_rmse']:.4f}", "", ""]],
                 arms=arms)
    result.note(f"training images/s (steps after the 5th, validation excluded): {first['train_images_per_s']:.1f}")
