"""An ensemble of models trained with other seeds against one model: error and calibration, side by side.

    python -m benchmarks ensemble --shards DEMO/shards --catalogue DEMO/simulation/catalogue.parquet [--models 3]

Trains ``--models`` runs with the demo's settings (``DemoSettings``) and seeds 0, 1, 2, ...
on the same shards (uncalibrated, so the comparison is of the raw posteriors), predicts the
test split with the first alone and with all of them stacked (``predict --checkpoint A
--checkpoint B ...``), and evaluates both against the votes and the simulator's truth.
Runs are kept in the work folder and resume. ``--tiny``: one-epoch models of timm's smallest
network on 60 simulated galaxies.
"""

from __future__ import annotations

import argparse
import dataclasses

from benchmarks._harness import Result
from benchmarks._shared import TINY_TRAINING, add_demo_options, demo_inputs
from galaxymorph.demo import DemoSettings
from galaxymorph.evaluation import evaluate
from galaxymorph.prediction import predict
from galaxymorph.training import TrainConfig, train

TINY = {"models": 2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_demo_options(parser)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)


def measure(args: argparse.Namespace, result: Result) -> None:
    shards, catalogue = demo_inputs(args)
    s = DemoSettings()
    if args.tiny:
        s = dataclasses.replace(s, arch=TINY_TRAINING["arch"], epochs=1, samples=2, loader_workers=0)
    runs = []
    for seed in range(args.models):
        runs.append(train(TrainConfig(shards=str(shards), out=str(args.work / f"seed{seed}"), arch=s.arch,
                                      epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, seed=seed,
                                      workers=s.loader_workers, threads=args.threads, calibrate=False,
                                      progress=False)))
    for name, members in (("one model", runs[:1]), (f"ensemble of {args.models}", runs)):
        out = args.work / f"{name.replace(' ', '_')}.parquet"
        out.unlink(missing_ok=True)  # this benchmark's own file: the runs may have trained further since
        predict(members, out, shards=shards, split="test", samples=s.samples, progress=False)
        result.arm(name, **evaluate(out, catalogue)["overall"])
    result.table(["", "MAE vs truth", "MAE vs votes", "NLL per galaxy", "50% intervals", "90% intervals"],
                 [[name, f"{o['truth']['model']['mae']:.4f}", f"{o['model']['mae']:.4f}", f"{o['nll_per_galaxy']:.2f}",
                   f"{o['coverage']['0.5']:.1%}", f"{o['coverage']['0.9']:.1%}"] for name, o in result.arms.items()],
                 arms=list(result.arms))
