"""An ensemble of models trained with other seeds against one model: error and calibration, side by side.

    .venv/bin/python benchmarks/bench_ensemble.py --shards DEMO/shards --catalogue DEMO/simulation/catalogue.parquet [--models 3]

Trains ``--models`` runs with the demo's settings (``DemoSettings``) and seeds 0, 1, 2, ...
on the same shards (uncalibrated, so the comparison is of the raw posteriors), predicts the
test split with the first alone and with all of them stacked (``predict --checkpoint A
--checkpoint B ...``), and evaluates both against the votes and the simulator's truth.
Runs are kept in benchmarks/_work/ensemble/ and resume.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from galaxymorph.demo import DemoSettings
from galaxymorph.evaluate import evaluate
from galaxymorph.predict import predict
from galaxymorph.training import TrainConfig, train

WORK = Path(__file__).resolve().parent / "_work" / "ensemble"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=Path, required=True)
    parser.add_argument("--catalogue", type=Path, required=True)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    s = DemoSettings()
    runs = []
    for seed in range(args.models):
        runs.append(train(TrainConfig(shards=str(args.shards), out=str(WORK / f"seed{seed}"), arch=s.arch,
                                      epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, seed=seed,
                                      num_workers=s.loader_workers, threads=args.threads, calibrate=False,
                                      progress=False)))
    rows = {}
    for name, members in (("one model", runs[:1]), (f"ensemble of {args.models}", runs)):
        out = WORK / f"{name.replace(' ', '_')}.parquet"
        predict(members, out, shards=args.shards, split="test", samples=s.samples, progress=False)
        rows[name] = evaluate(out, args.catalogue)["overall"]
    print("\n| | MAE vs truth | MAE vs votes | NLL per galaxy | 50% intervals | 90% intervals |")
    print("|---|---|---|---|---|---|")
    for name, o in rows.items():
        print(f"| {name} | {o['truth']['model']['mae']:.4f} | {o['model']['mae']:.4f} | {o['nll_per_galaxy']:.2f} | "
              f"{o['coverage']['0.5']:.1%} | {o['coverage']['0.9']:.1%} |")


if __name__ == "__main__":
    main()
