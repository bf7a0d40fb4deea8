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

    python -m benchmarks gz2_shift [--minutes 20] [--arch efficientnet_b0] [--size 64]
        [--epochs 10] [--threads 2] [--workers 1] [--arms standard,wide-zoom] [--galaxies N]

Each transformed test set is predicted by ``galaxymorph.predict`` and scored by
``galaxymorph.evaluate`` (which reports the coverage with and without the calibration the
predictions record). Re-running resumes the runs and reuses the transformed images and
predictions.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from benchmarks._harness import Result
from benchmarks._shared import (
    SPLIT_SEED,
    TINY_TRAINING,
    add_gz2_option,
    add_training_options,
    gz2_catalogue,
    gz2_preprocessing,
    gz2_shards,
    train_timed,
    training_config,
)
from galaxymorph.data.shards import assign_splits
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.evaluate import evaluate
from galaxymorph.predict import OODWarning, predict, read_predictions

TINY = {**TINY_TRAINING, "arms": "standard,wide-zoom", "galaxies": 4}
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


def recipes(args: argparse.Namespace) -> dict[str, Preprocessing]:
    """The two recipes' shards: today's, and the whole frame for a training zoom of 0.5x-2x (the same view at 1x)."""
    standard = gz2_preprocessing(args)
    return {"standard": standard,
            "wide-zoom": Preprocessing(stored_size=round(1.5 * standard.stored_size), source_crop=1.0,
                                       image_size=standard.image_size, channels=3, train_zoom=(0.25, 0.98),
                                       eval_zoom=0.49)}


def transformed_catalogue(test: pd.DataFrame, how: str | float, work: Path) -> Path:
    """The test galaxies' JPEGs transformed once, with a catalogue (id_str, file_loc) of them."""
    name = f"scale{how:g}" if isinstance(how, float) else how.replace(" ", "_")
    folder = work / f"gz2_shifted_{len(test)}" / name
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


def score(best: Path, how: str | float, test: pd.DataFrame, args: argparse.Namespace) -> dict:
    """Predict one transformed test set with one model and score it against the Kaggle fractions and the votes."""
    out = best.parent / f"shifted_{str(how).replace(' ', '_')}.parquet"
    if not out.is_file():
        with warnings.catch_warnings():  # shifted images are the point here, and the share flagged is measured below
            warnings.simplefilter("ignore", OODWarning)
            predict(best, out, catalogue=transformed_catalogue(test, how, args.work), samples=args.samples,
                    batch_size=128, workers=args.workers, progress=False)
    evaluation = evaluate(out, test)
    figures = {"kaggle_rmse": evaluation["overall"]["kaggle_rmse"]["model"]}
    frame, _, _ = read_predictions(out)
    if "ood_score" in frame.columns:
        figures["flagged"] = float((frame["ood_score"] > 1).mean())
    if how == 1.0:
        raw = evaluation.get("uncalibrated", evaluation)["overall"]["coverage"]  # no calibration: raw is all there is
        for label, coverage in (("raw", raw), ("calibrated", evaluation["overall"]["coverage"])):
            figures[f"coverage_50_{label}"], figures[f"coverage_90_{label}"] = coverage["0.5"], coverage["0.9"]
    return figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gz2_option(parser)
    add_training_options(parser, epochs=10, minutes=20)
    parser.add_argument("--arms", default="standard,wide-zoom", help="the recipes, comma-separated")
    parser.add_argument("--galaxies", type=int, default=None, help="score only the first N test galaxies (a quick check)")


def measure(args: argparse.Namespace, result: Result) -> None:
    catalogue_path = gz2_catalogue(args)
    catalogue = pd.read_parquet(catalogue_path)
    catalogue["file_loc"] = [str((catalogue_path.parent / f).resolve()) for f in catalogue["file_loc"]]
    test = catalogue[assign_splits(catalogue["id_str"].to_numpy(), SPLIT_SEED, 0.1, 0.1) == "test"]
    test = test.head(args.galaxies).reset_index(drop=True)
    arms = args.arms.split(",")
    for name in arms:
        run = args.work / f"shift_{name}_{args.arch}_{args.size}px_{args.minutes:g}min_{args.epochs}ep"
        best, minutes, epochs = train_timed(training_config(args, gz2_shards(args, recipes(args)[name]), run))
        print(f"{name}: trained for {minutes:.1f} min this call ({epochs} epochs)", flush=True)
        arm = result.arm(name, train_minutes=minutes, epochs=epochs, images={})
        for how in (*FACTORS, *RECOLOURS):
            arm["images"][str(how)] = score(best, how, test, args)
            print(name, how, arm["images"][str(how)], flush=True)
    result.note(f"GZ2 test split, {len(test)} galaxies, {args.arch} at {args.size} px, {args.minutes:g} min per arm")
    rows = [[str(how)] + [f"{result.arms[name]['images'][str(how)]['kaggle_rmse']:.4f}" for name in arms]
            for how in (*FACTORS, *RECOLOURS)]
    result.table(["images", *arms], rows, arms=arms, title="Kaggle RMSE by images and recipe",
                 align=["---", *["---:"] * len(arms)])
    if all("flagged" in result.arms[name]["images"]["1.0"] for name in arms):
        rows = [[str(how)] + [f"{result.arms[name]['images'][str(how)]['flagged']:.1%}" for name in arms]
                for how in (*FACTORS, *RECOLOURS)]
        result.table(["images", *arms], rows, arms=arms, title="share flagged out of distribution (ood_score > 1)",
                     align=["---", *["---:"] * len(arms)])
    result.table(["model", "90% raw", "90% calibrated", "50% raw", "50% calibrated"],
                 [[name] + [f"{result.arms[name]['images']['1.0'][f'coverage_{level}_{label}']:.1%}"
                            for level in (90, 50) for label in ("raw", "calibrated")] for name in arms],
                 arms=arms, title="calibration on the untouched test images (share of vote counts inside the interval)",
                 align=["---", "---:", "---:", "---:", "---:"])
