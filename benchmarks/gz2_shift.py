"""Real GZ2 images unlike the training set: error per cut-out scale and stretch, calibration, the shift score.

Recipes trained side by side on the same GZ2 split, architecture, input size, budget and seeds:

- ``standard``: today's shards (the fixed central 0.65 of the 424 px frame at 96 px) and
  training zoom-crop (0.7-0.8 of the stored frame), so the model sees galaxies within ~15%
  of one scale;
- ``size-crop``: the same, but each frame is cut to a multiple of the galaxy's measured
  radius (``Preprocessing.size_crop``, fitted so the median training galaxy keeps the fixed
  crop), so a galaxy cut out at another scale is stored as the training ones were;
- ``size-crop+photometry``: the size crop, and each image's sky and levels matched to the
  training set's (``Preprocessing.photometry``);
- ``wide-zoom``: the whole frame stored (144 px) and a training zoom-crop of 0.25-0.98 of it,
  so galaxies appear from 0.5x to 2x the evaluation scale (the same 207 px view as ``standard``).

Each trained model (every recipe, every ``--seeds``) predicts the test split's galaxies as
they are and transformed, without retraining: the 424 px JPEGs rescaled about the centre by
0.2-5x (zooming in crops the centre and enlarges it; zooming out shrinks the frame and pads
it with Gaussian sky of the image's own border mean and spread per band, so the noise of
the padding is uncorrelated, unlike the JPEG's), re-stretched (``asinh``: 255 asinh(10 x / 255)
/ asinh(10), which lifts faint light and the sky; ``blue-grey sky``: 0.85 x plus 30, 34, 42
in R, G, B, a brighter tinted sky), greyscaled, or with the colour bands reversed. Reported
per recipe and images: the Kaggle RMSE against the original Kaggle fractions (mean over the
seeds, and half their range), beside a constant (the training split's per-column mean, the
same for every transform); the share flagged by ``ood_score > 1``; for the size-cropped
recipes the median crop scale applied and the share whose galaxy overfilled its frame or
was not found; and for the untouched images the share of test vote counts inside the 50%
and 90% posterior-predictive intervals with and without the post-hoc calibration.

    python -m benchmarks gz2_shift [--minutes 20] [--arch efficientnet_b0] [--size 64] [--epochs 10]
        [--threads 2] [--workers 1] [--arms standard,size-crop,...] [--seeds 0,1] [--images 1.0,2.0,...]
        [--catalogue-galaxies N] [--galaxies N]

Each transformed test set is predicted by ``galaxymorph.prediction`` and scored by
``galaxymorph.evaluation``. Re-running resumes the runs and reuses the transformed images and
predictions.
"""

from __future__ import annotations

import argparse
import math
import warnings
from dataclasses import replace
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
    train_split_mean_rmse,
    train_timed,
    training_config,
)
from galaxymorph.data.normalise import Photometry, SizeCrop
from galaxymorph.data.shards import assign_splits
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.evaluation import evaluate
from galaxymorph.prediction import OODWarning, predict, read_predictions

RECIPES = ("standard", "size-crop", "size-crop+photometry", "wide-zoom")
FACTORS = (0.2, 0.33, 0.5, 0.71, 1.0, 1.41, 2.0, 3.0, 5.0)
RESTRETCHES = ("asinh", "blue-grey sky")
RECOLOURS = ("greyscale", "bands reversed")
IMAGES = (*FACTORS, *RESTRETCHES, *RECOLOURS)
TINY = {**TINY_TRAINING, "arms": ",".join(RECIPES), "galaxies": 4, "seeds": "0",
        "images": "0.2,1.0,5.0,asinh,greyscale"}
_SKY_TINT = np.array([30.0, 34.0, 42.0])  # R, G, B added by the "blue-grey sky" stretch


def transform(pixels: np.ndarray, how: str | float, rng: np.random.Generator) -> np.ndarray:
    """One 424 px RGB cut-out as another survey or another cut-out script might have made it."""
    if how == "greyscale":
        grey = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.repeat(grey[..., None], 3, axis=2).round().astype(np.uint8)
    if how == "bands reversed":
        return np.ascontiguousarray(pixels[..., ::-1])
    if how == "asinh":
        return (255 * np.arcsinh(10 * pixels.astype(np.float32) / 255) / math.asinh(10)).round().astype(np.uint8)
    if how == "blue-grey sky":
        return np.clip(_SKY_TINT + 0.85 * pixels, 0, 255).round().astype(np.uint8)
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
    """Each recipe's shards: today's, size-cropped (with and without photometry), the whole frame for a wide zoom."""
    standard = gz2_preprocessing(args)
    sized = replace(standard, size_crop=SizeCrop())
    return {"standard": standard, "size-crop": sized, "size-crop+photometry": replace(sized, photometry=Photometry()),
            "wide-zoom": Preprocessing(stored_size=round(1.5 * standard.stored_size), source_crop=1.0,
                                       image_size=standard.image_size, channels=3, train_zoom=(0.25, 0.98),
                                       eval_zoom=0.49)}


def _name(how: str | float) -> str:
    return f"scale{how:g}" if isinstance(how, float) else how.replace(" ", "_")


def transformed_catalogue(test: pd.DataFrame, how: str | float, work: Path) -> Path:
    """The test galaxies' JPEGs transformed once, with a catalogue (id_str, file_loc) of them."""
    folder = work / f"gz2_shifted_{len(test)}" / _name(how)
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
    out = best.parent / f"shifted_{_name(how)}_{len(test)}.parquet"
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
    if "crop_scale" in frame.columns:
        figures["crop_scale_median"] = float(frame["crop_scale"].median())
        for status in ("lower bound", "not found"):
            figures[f"crop_{status.replace(' ', '_')}"] = float((frame["crop_status"] == status).mean())
    if how == 1.0:
        raw = evaluation.get("uncalibrated", evaluation)["overall"]["coverage"]  # no calibration: raw is all there is
        for label, coverage in (("raw", raw), ("calibrated", evaluation["overall"]["coverage"])):
            figures[f"coverage_50_{label}"], figures[f"coverage_90_{label}"] = coverage["0.5"], coverage["0.9"]
    return figures


def _images(text: str) -> list[str | float]:
    chosen = [float(x) if x.replace(".", "", 1).isdigit() else x for x in text.split(",")]
    unknown = [x for x in chosen if x not in IMAGES]
    if unknown:
        raise SystemExit(f"--images: unknown {unknown}; choose from {', '.join(map(str, IMAGES))}")
    return chosen


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gz2_option(parser)
    add_training_options(parser, epochs=10, minutes=20)
    parser.add_argument("--arms", default=",".join(RECIPES),
                        help=f"the recipes, comma-separated ({', '.join(RECIPES)})")
    parser.add_argument("--seeds", default="0,1",
                        help="training seeds, comma-separated: each recipe is trained once per seed")
    parser.add_argument("--images", default=",".join(map(str, IMAGES)), help="the test images, comma-separated: scale "
                        "factors, asinh, blue-grey sky, greyscale, bands reversed")
    parser.add_argument("--catalogue-galaxies", type=int, default=None,
                        help="shard and train on the first N catalogue galaxies only (a small real run)")
    parser.add_argument("--galaxies", type=int, default=None, help="score only the first N test galaxies (a quick check)")


def _subset(catalogue: pd.DataFrame, args: argparse.Namespace) -> Path | None:
    """With ``--catalogue-galaxies N``, the first N galaxies as their own catalogue (absolute paths), once."""
    if args.catalogue_galaxies is None:
        return None
    path = args.shared / f"gz2_catalogue_first{args.catalogue_galaxies}.parquet"
    if not path.is_file():
        catalogue.head(args.catalogue_galaxies).to_parquet(path, index=False)
    return path


def _mean_and_spread(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float((max(values) - min(values)) / 2)


def measure(args: argparse.Namespace, result: Result) -> None:
    catalogue_path = gz2_catalogue(args)
    catalogue = pd.read_parquet(catalogue_path)
    catalogue["file_loc"] = [str((catalogue_path.parent / f).resolve()) for f in catalogue["file_loc"]]
    subset = _subset(catalogue, args)
    if subset is not None:
        catalogue = catalogue.head(args.catalogue_galaxies)
    test = catalogue[assign_splits(catalogue["id_str"].to_numpy(), SPLIT_SEED, 0.1, 0.1) == "test"]
    test = test.head(args.galaxies).reset_index(drop=True)
    arms, seeds, images = args.arms.split(","), [int(s) for s in args.seeds.split(",")], _images(args.images)
    subset_name = f"_first{args.catalogue_galaxies}" if subset is not None else ""
    for name in arms:
        shards = gz2_shards(args, recipes(args)[name], catalogue=subset)
        per_seed = {}
        for seed in seeds:
            settings = f"{args.arch}_{args.size}px_{args.minutes:g}min_{args.epochs}ep{subset_name}"
            run = args.work / f"shift_{name}_s{seed}_{settings}"
            best, minutes, epochs = train_timed(training_config(args, shards, run, seed=seed))
            print(f"{name}, seed {seed}: trained for {minutes:.1f} min this call ({epochs} epochs)", flush=True)
            per_seed[seed] = {"train_minutes": minutes, "epochs": epochs,
                              "images": {str(how): score(best, how, test, args) for how in images}}
            print(name, seed, per_seed[seed]["images"], flush=True)
        summary = {}
        for how in map(str, images):
            figures = [per_seed[s]["images"][how] for s in seeds]
            summary[how] = {key: float(np.mean([f[key] for f in figures])) for key in figures[0]}
            summary[how]["kaggle_rmse_spread"] = _mean_and_spread([f["kaggle_rmse"] for f in figures])[1]
        result.arm(name, seeds=per_seed, images=summary)
    constant = train_split_mean_rmse(catalogue_path, test["id_str"].tolist())
    result.figures["constant_rmse"] = constant
    _tables(result, arms, seeds, images, constant)
    part = "" if subset is None else (f" (of the first {args.catalogue_galaxies} catalogue galaxies, which the recipes "
                                      "were sharded and trained on)")
    result.note(f"GZ2 test split, {len(test)} galaxies{part}; {args.arch} at {args.size} px, {args.epochs} epochs "
                f"(cap {args.minutes:g} min) per run, seeds {args.seeds}. "
                f"RMSE cells: mean over the seeds ± half their range. The constant is the training split's per-column "
                f"mean (a constant ignores the image, so it is the same for every transform).")


def _tables(result: Result, arms: list[str], seeds: list[int], images: list[str | float], constant: float) -> None:
    def cells(key: str, form: str) -> list[list[str]]:
        return [[str(how)] + [form.format(result.arms[a]["images"][str(how)][key]) for a in arms] for how in images]

    align = ["---", *["---:"] * len(arms)]
    rmse = [[str(how)] + [f"{result.arms[a]['images'][str(how)]['kaggle_rmse']:.4f} ± "
                          f"{result.arms[a]['images'][str(how)]['kaggle_rmse_spread']:.4f}" for a in arms]
            + [f"{constant:.4f}"] for how in images]
    result.table(["images", *arms, "constant"], rmse, arms=arms, align=[*align, "---:"],
                 title=f"Kaggle RMSE by images and recipe ({len(seeds)} seed(s))")
    if "1.0" in result.arms[arms[0]]["images"]:
        goals = []
        for a in arms:
            own = result.arms[a]["images"]
            native = own["1.0"]["kaggle_rmse"]
            ratios = [f"{own[k]['kaggle_rmse'] / native:.2f}" if k in own else "" for k in ("0.5", "2.0")]
            beaten = [k for k in ("0.2", "0.33", "3.0", "5.0") if k in own and own[k]["kaggle_rmse"] < constant]
            tested = [k for k in ("0.2", "0.33", "3.0", "5.0") if k in own]
            goals.append([a, *ratios, f"{len(beaten)} of {len(tested)}"])
        result.table(["recipe", "RMSE 0.5x / native", "RMSE 2x / native", "3-5x zooms better than the constant"], goals,
                     arms=arms, align=["---", "---:", "---:", "---:"],
                     title="goals: 0.5x and 2x within 10% of native (ratio <= 1.10); 3-5x zooms below the constant")
    if all("flagged" in result.arms[a]["images"][str(images[0])] for a in arms):
        result.table(["images", *arms], cells("flagged", "{:.1%}"), arms=arms, align=align,
                     title="share flagged out of distribution (ood_score > 1)")
    sized = [a for a in arms if "crop_scale_median" in result.arms[a]["images"][str(images[0])]]
    if sized:
        rows = [[str(how)] + [f"{result.arms[a]['images'][str(how)]['crop_scale_median']:.2f} "
                              f"({result.arms[a]['images'][str(how)]['crop_lower_bound']:.0%} lower bound, "
                              f"{result.arms[a]['images'][str(how)]['crop_not_found']:.0%} not found)" for a in sized]
                for how in images]
        result.table(["images", *sized], rows, arms=sized, align=["---", *["---:"] * len(sized)],
                     title="size crop: median scale applied (1 = the fixed crop), share overfilling the frame, "
                           "share not found")
    if "1.0" in result.arms[arms[0]]["images"]:
        result.table(["model", "90% raw", "90% calibrated", "50% raw", "50% calibrated"],
                     [[a] + [f"{result.arms[a]['images']['1.0'][f'coverage_{level}_{label}']:.1%}"
                             for level in (90, 50) for label in ("raw", "calibrated")] for a in arms],
                     arms=arms, align=["---", "---:", "---:", "---:", "---:"],
                     title="calibration on the untouched test images (share of vote counts inside the interval)")
