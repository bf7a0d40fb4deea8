"""Real GZ2 images unlike the training set: error per cut-out scale, calibration, and the shift score.

Two recipes trained side by side on the same GZ2 split, architecture, input size and budget:

- ``standard``: today's shards (central 0.65 of the 424 px frame at 96 px) and training
  zoom-crop (0.7-0.8 of the stored frame), so the model sees galaxies within ~15% of one scale;
- ``wide-zoom``: the whole frame stored (144 px) and a training zoom-crop of 0.25-0.98 of it,
  so galaxies appear from 0.5x to 2x the evaluation scale (the same 207 px view as ``standard``).

Both are then asked about the test split's galaxies as they are and transformed: the
424 px JPEGs rescaled about the centre by 0.5-2x (zooming in crops and enlarges; zooming
out shrinks and pads with sky drawn from the image's own border), greyscaled, or with the
colour bands reversed. Reported per arm and transform: the Kaggle RMSE against the original
Kaggle fractions; for the untouched images, the share of test vote counts inside the 50% and
90% posterior-predictive intervals with and without the post-hoc calibration; and, for models
that carry a training reference (see docs/predictions.md), the share flagged by ``ood_score > 1``.

    .venv/bin/python benchmarks/bench_gz2_shift.py [--minutes 20] [--arch efficientnet_b0] [--size 64]
        [--epochs 10] [--threads 2] [--workers 1] [--arms standard,wide-zoom] [--galaxies N]

Work files go to ``runs/bench_train/`` (see bench_train_common); re-running resumes the runs
and reuses the transformed images and predictions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_train_common import GZ2_PREPROCESSING, SPLIT_SEED, WORK, gz2_shards, hhmmss
from PIL import Image

from galaxymorph.calibration import scale_concentrations
from galaxymorph.data.catalogue import vote_columns
from galaxymorph.data.shards import assign_splits
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.evaluate import evaluate_arrays
from galaxymorph.kaggle import kaggle_columns, kaggle_rmse, to_kaggle
from galaxymorph.models.checkpoint import read_config
from galaxymorph.predict import predict, read_concentrations, read_predictions
from galaxymorph.schema import get_schema
from galaxymorph.stats import expected_fractions
from galaxymorph.training import TrainConfig, train

SCHEMA = get_schema("gz2")
ARMS = {
    "standard": GZ2_PREPROCESSING,
    "wide-zoom": Preprocessing(stored_size=144, source_crop=1.0, image_size=64, channels=3,
                               train_zoom=(0.25, 0.98), eval_zoom=0.49),
}
FACTORS = (0.5, 0.71, 1.0, 1.41, 2.0)
RECOLOURS = ("greyscale", "bands reversed")


def transform(pixels: np.ndarray, how: str | float, rng: np.random.Generator) -> np.ndarray:
    """One 424 px RGB cut-out as another survey or another cut-out script might have made it."""
    if how == "greyscale":
        grey = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.repeat(grey[..., None], 3, axis=2).round().astype(np.uint8)
    if how == "bands reversed":
        return np.ascontiguousarray(pixels[..., ::-1])
    side, factor = pixels.shape[0], float(how)
    image = Image.fromarray(pixels)
    if factor >= 1:
        crop = round(side / factor)
        lo = (side - crop) // 2
        return np.asarray(image.crop((lo, lo, lo + crop, lo + crop)).resize((side, side), Image.LANCZOS))
    small = np.asarray(image.resize((round(side * factor),) * 2, Image.LANCZOS))
    border = np.concatenate([pixels[:8].reshape(-1, 3), pixels[-8:].reshape(-1, 3),
                             pixels[:, :8].reshape(-1, 3), pixels[:, -8:].reshape(-1, 3)]).astype(np.float32)
    sky = rng.normal(border.mean(0), border.std(0) + 1e-3, (side, side, 3))
    lo = (side - small.shape[0]) // 2
    sky[lo:lo + small.shape[0], lo:lo + small.shape[0]] = small
    return sky.clip(0, 255).round().astype(np.uint8)


def transformed_catalogue(test: pd.DataFrame, how: str | float) -> Path:
    """The test galaxies' JPEGs transformed once, with a catalogue (id_str, file_loc) of them."""
    name = f"scale{how:g}" if isinstance(how, float) else how.replace(" ", "_")
    folder = WORK / f"gz2_shifted_{len(test)}" / name
    catalogue = folder / "catalogue.csv"
    if not catalogue.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        for id_str, source in zip(test["id_str"], test["file_loc"]):
            pixels = np.asarray(Image.open(source).convert("RGB"))
            Image.fromarray(transform(pixels, how, rng)).save(folder / f"{id_str}.jpg", quality=95)
        pd.DataFrame({"id_str": test["id_str"], "file_loc": [f"{i}.jpg" for i in test["id_str"]]}).to_csv(catalogue,
                                                                                                        index=False)
    return catalogue


def train_arm(name: str, args: argparse.Namespace) -> Path:
    """Train (or resume) one recipe for the budget; returns its best model folder."""
    shards = gz2_shards(ARMS[name])
    run = WORK / f"shift_{name}_{args.arch}_{args.size}px_{args.minutes:g}min_{args.epochs}ep"
    config = TrainConfig(shards=str(shards), out=str(run), arch=args.arch, size=args.size, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, patience=args.epochs, threads=args.threads,
                         num_workers=args.workers, max_time=hhmmss(args.minutes), progress=False)
    began = time.perf_counter()
    best = train(config)
    print(f"{name}: trained in {(time.perf_counter() - began) / 60:.1f} min "
          f"({int(pd.read_csv(run / 'metrics.csv')['epoch'].max()) + 1} epochs)", flush=True)
    return best


def score(best: Path, name: str, how: str | float, test: pd.DataFrame, args: argparse.Namespace) -> dict:
    """Predict one transformed test set with one model and score it against the Kaggle fractions and the votes."""
    out = best.parent / f"shifted_{str(how).replace(' ', '_')}.parquet"
    if not out.is_file():
        predict(best, out, catalogue=transformed_catalogue(test, how), samples=args.samples, batch_size=128,
                workers=args.workers, progress=False)
    frame, _, _ = read_predictions(out)
    frame = frame.set_index("id_str").loc[test["id_str"]]
    conc = read_concentrations(frame.reset_index(), SCHEMA)
    kaggle = test[[f"kaggle:{c}" for c in kaggle_columns()]].to_numpy()
    result = {"arm": name, "images": how, "kaggle_rmse": kaggle_rmse(to_kaggle(expected_fractions(conc, SCHEMA), SCHEMA),
                                                                     kaggle)}
    if "ood_score" in frame.columns:
        result["flagged"] = float((frame["ood_score"] > 1).mean())
    if how == 1.0:
        votes = test[vote_columns(SCHEMA)].to_numpy(np.float64)
        scales = read_config(best)[1].get("calibration") or {}
        raw = scale_concentrations(conc, SCHEMA, {q: 1 / s for q, s in scales.items()})
        for label, c in (("raw", raw), ("calibrated", conc)):
            coverage = evaluate_arrays(c, votes, SCHEMA, levels=(0.5, 0.9))["overall"]["coverage"]
            result[f"coverage_50_{label}"], result[f"coverage_90_{label}"] = coverage["0.5"], coverage["0.9"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20, help="training budget per arm")
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10, help="cosine schedule length; --minutes caps the run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--galaxies", type=int, default=None, help="score only the first N test galaxies (a quick check)")
    args = parser.parse_args()
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    print(f"CPU: {model_name}, avx512f: {'avx512f' in cpu}; load average at start {os.getloadavg()}", flush=True)

    gz2_shards()  # writes the catalogue too
    catalogue = pd.read_parquet(WORK / "gz2_catalogue.parquet")
    catalogue["file_loc"] = [str((WORK / f).resolve()) for f in catalogue["file_loc"]]
    test = catalogue[assign_splits(catalogue["id_str"].to_numpy(), SPLIT_SEED, 0.1, 0.1) == "test"]
    test = test.head(args.galaxies).reset_index(drop=True)
    rows = []
    for name in args.arms.split(","):
        best = train_arm(name, args)
        for how in (*FACTORS, *RECOLOURS):
            rows.append(score(best, name, how, test, args))
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(f"\nGZ2 test split, {len(test)} galaxies, {args.arch} at {args.size} px, {args.minutes:g} min per arm; "
          f"load average at end {os.getloadavg()}")
    print("\nKaggle RMSE by images (rows) and recipe (columns):")
    print(table.pivot(index="images", columns="arm", values="kaggle_rmse").round(4).to_string())
    if "flagged" in table.columns:
        print("\nshare flagged out of distribution (ood_score > 1):")
        print(table.pivot(index="images", columns="arm", values="flagged").round(3).to_string())
    print("\ncalibration on the untouched test images (share of vote counts inside the interval):")
    print(table[table["images"] == 1.0].filter(regex="arm|coverage").round(3).to_string(index=False))
    (WORK / "gz2_shift_results.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
