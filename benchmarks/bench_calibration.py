"""Post-hoc calibration measured: the held-out coverage of the intervals before and after, per question.

    .venv/bin/python benchmarks/bench_calibration.py --run RUN --shards SHARDS --catalogue CATALOGUE

Takes a finished training run (its best model as it was before calibration), fits the
scales on the shards' validation split (``galaxymorph.training.finish``), predicts the
test split with the raw and the calibrated model, and evaluates both against the
catalogue's votes (and true probabilities when simulated). Writes into benchmarks/_work/.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from galaxymorph.data.datamodule import GalaxyDataModule
from galaxymorph.evaluate import evaluate
from galaxymorph.models import load_model, save_model
from galaxymorph.predict import predict
from galaxymorph.training.finish import finish_run

WORK = Path(__file__).resolve().parent / "_work" / "calibration"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--shards", type=Path, required=True)
    parser.add_argument("--catalogue", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)  # this script's own folder
    raw = load_model(args.run)
    raw.set_calibration(None)
    save_model(raw, WORK / "raw")
    shutil.copytree(WORK / "raw", WORK / "calibrated")
    model = load_model(WORK / "raw")
    data = GalaxyDataModule(args.shards, image_size=model.config["preprocessing"]["image_size"], batch_size=128)
    scales = finish_run(WORK / "calibrated", data, ood_galaxies=0, samples=args.samples)["calibration"]
    print("scales:", {q: round(s, 3) for q, s in scales.items()})
    rows = {}
    for name in ("raw", "calibrated"):
        out = WORK / f"{name}.parquet"
        predict(WORK / name, out, shards=args.shards, split="test", samples=args.samples, progress=False)
        rows[name] = evaluate(out, args.catalogue)
    print("\nHeld-out votes inside the central predictive intervals:\n")
    print("| | 50% intervals | 90% intervals | NLL per galaxy | MAE vs votes |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        o = r["overall"]
        print(f"| {name} | {o['coverage']['0.5']:.1%} | {o['coverage']['0.9']:.1%} | {o['nll_per_galaxy']:.2f} | "
              f"{o['model']['mae']:.4f} |")
    print("\n| question | scale | votes in 90% (raw, calibrated) | truth in 90% credible (raw, calibrated) |")
    print("|---|---|---|---|")
    for q, before in rows["raw"]["questions"].items():
        after = rows["calibrated"]["questions"][q]
        truth = (f"{before['truth']['coverage']['0.9']:.1%}, {after['truth']['coverage']['0.9']:.1%}"
                 if "truth" in before else "-")
        print(f"| {q} | {scales.get(q, 1.0):.3f} | {before['coverage']['0.9']:.1%}, {after['coverage']['0.9']:.1%} | "
              f"{truth} |")


if __name__ == "__main__":
    main()
