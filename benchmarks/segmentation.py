"""Benchmark: segmentation of spiral arms and bars from simulated GZ3D-style drawings, against the crowd it learns from.

On galaxies simulated with masks (``simulate --masks``: true masks and ~15 volunteers
who each miss, shift, grow, shrink or partly draw them):

1. Split (fixed): ``--test`` galaxies to score, a pool of ``max(--sizes)`` with masks
   to train on (a run with n masks takes the first n; 20% of them validate), and the rest
   to pretrain on.
2. Pretraining: a classification model (``train``) on the pretraining galaxies' votes,
   never their masks. From scratch: the same architecture, random weights.
3. Each arm (``pretrained``, ``scratch``) and each n: ``finetune --task segmentation``
   with the same settings and the same number of training images seen (``--images``:
   more epochs for fewer masks; the first fifth of the epochs train the decoder and head
   alone, then every layer; the model with the lowest validation loss is kept),
   ``predict`` the test set,
   ``evaluate``: Dice of the model's mask (expected share > 1/2) against the truth, beside
   the volunteers' own majority mask (the noise floor the model should beat), and the
   share of pixels whose volunteers' count is in its 90% predictive interval (where a
   volunteer drew or the model expects more than 5%).
4. Speed: training and prediction images/s of the segmentation model beside the
   classification model of the same encoder (random images, the same batches, one run).
5. Real galaxies (the Kaggle GZ2 folder, ``--gz2``, when it is there; no true masks exist
   for them): GZ2's face-on disks (at least half their volunteers saw one) with bar and
   spiral votes, cut to the simulated galaxies' scale (the crop whose
   median measured radius, :func:`galaxymorph.data.extent.measure_extent`, matches theirs),
   predicted by the pretrained arm's model of the largest n. Reported per class (bar, arms):
   the rank correlation of the mask's expected area (no threshold) and of its length with
   the volunteers' vote fraction, the share of galaxies with a mask drawn among those most
   volunteers gave the class and those fewer than a fifth did, and a grid of the 25 most
   barred and 25 most spiral galaxies with their masks (in ``--plots``).
6. ``--decoders``: this package's U-Net decoder against segmentation_models_pytorch's
   ``UnetDecoder`` with the same widths and with smp's default widths: parameters and
   training and prediction images/s at ``--speed-sizes``; with ``--train-decoders`` also
   Dice and coverage of smp's with the same widths, trained as the pretrained arm on the
   largest n (whose figures are this package's decoder's). smp must be installed.

Runs resume: the simulation, pretraining and every fine-tuning run are kept in the work folder.

    python -m benchmarks segmentation            # full: 1,000 masks (hours on 2 cores)
    python -m benchmarks segmentation --small    # minutes
    python -m benchmarks segmentation --tiny     # seconds; the tests run it
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from PIL import Image
from scipy.stats import spearmanr

from benchmarks._harness import Result, output_folder, positive_count
from benchmarks._shared import add_gz2_option, central_crops, gz2_folder
from galaxymorph.data.extent import measure_extent
from galaxymorph.data.labelled import split_train_val
from galaxymorph.data.masks import load_masks
from galaxymorph.data.shards import write_shards
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.evaluation.masks import evaluate_masks
from galaxymorph.kaggle import from_kaggle, kaggle_columns
from galaxymorph.losses import mask_nll
from galaxymorph.mask_stats import THRESHOLD
from galaxymorph.models import GalaxyModel, load_encoder, save_model
from galaxymorph.models.finetune_model import FinetunedModel
from galaxymorph.models.head import galaxy_keys
from galaxymorph.models.segmentation import DECODER_CHANNELS, SegmentationModel
from galaxymorph.prediction import predict
from galaxymorph.prediction.masks import measurements_path, read_mask_metadata, read_masks
from galaxymorph.report.masks import colour_legend, images_as_seen, overlay
from galaxymorph.simulate import simulate_catalogue
from galaxymorph.simulate.catalogue import MASK_COLUMNS, VOLUNTEERS_COLUMN
from galaxymorph.training import FinetuneConfig, TrainConfig, train
from galaxymorph.training.finetune_run import build_model, finetune, fit

PRETRAIN_BATCH = 32
PRESETS = {"small": dict(galaxies=1200, size=48, sizes=[50, 200], test=150, pretrain_epochs=3, images=1600,
                         batch_size=16, speed_sizes=[64, 128], speed_steps=3)}
FACE_ON = 0.5  # a real galaxy is scored when at least this share of its volunteers saw a face-on disk (Class2.2)
SCALE_GALAXIES = 200  # galaxies measured on each side to cut the real images at the simulated ones' scale
SHOWN_PER_CLASS = 25  # the grid: the most barred and the most spiral real galaxies
TINY = dict(galaxies=48, size=32, arch="test_resnet", sizes=[8], test=12, pretrain_epochs=1, images=8, samples=2,
            speed_sizes=[32], speed_steps=2, batch_size=8)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--galaxies", type=positive_count, default=4000, help="simulated galaxies in all")
    p.add_argument("--size", type=positive_count, default=64, help="simulated px; the model sees the central 3/4")
    p.add_argument("--arch", default="resnet10t")
    p.add_argument("--sizes", type=positive_count, nargs="+", default=[50, 200, 1000], help="training masks per run")
    p.add_argument("--test", type=positive_count, default=300)
    p.add_argument("--pretrain-epochs", type=positive_count, default=10)
    p.add_argument("--images", type=positive_count, default=24000, help="training images each run sees (epochs x its masks)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--head-lr", type=float, default=1e-2, help="of the decoder and head while the encoder is frozen")
    p.add_argument("--batch-size", type=positive_count, default=32)
    p.add_argument("--samples", type=positive_count, default=5, help="MC-dropout samples per galaxy")
    p.add_argument("--speed-sizes", type=positive_count, nargs="+", default=[64, 128], help="px of the speed comparison")
    p.add_argument("--speed-steps", type=positive_count, default=5)
    add_gz2_option(p)
    p.add_argument("--plots", type=output_folder, help="folder for segmentation_gz2.png (default: the work folder; the user "
                   "guide's is in docs)")
    p.add_argument("--decoders", action="store_true", help="also: this package's decoder against smp's UnetDecoder")
    p.add_argument("--train-decoders", action="store_true", help="with --decoders: train smp's too (one more run)")


def split(catalogue: pd.DataFrame, args: argparse.Namespace) -> dict[str, pd.DataFrame]:
    """Test, mask pool and pretraining galaxies: disjoint, fixed by position."""
    pool_end = args.test + max(args.sizes)
    if pool_end >= len(catalogue):
        raise SystemExit(f"--galaxies {args.galaxies} leaves none to pretrain on after --test and the largest --sizes")
    return {"test": catalogue.iloc[: args.test], "pool": catalogue.iloc[args.test : pool_end],
            "pretrain": catalogue.iloc[pool_end:]}


def _preprocessing(args: argparse.Namespace) -> Preprocessing:
    """Stored as simulated; the evaluation crop (3/4) is the model's input, so masks are scored unresampled."""
    return Preprocessing(stored_size=args.size, image_size=round(args.size * 0.75), channels=3)


def starting_points(parts: dict[str, pd.DataFrame], args: argparse.Namespace) -> dict[str, Path]:
    """The pretrained run (votes of the pretraining galaxies) and a random one with the same preprocessing."""
    prep = _preprocessing(args)
    catalogue = args.work / "pretrain.parquet"
    parts["pretrain"].to_parquet(catalogue)
    shards = args.work / "pretrain_shards"
    if not (shards / "manifest.json").is_file():
        write_shards(catalogue, "gz_decals_dr5", shards, prep, val_fraction=0.1, test_fraction=0.0, workers=1,
                     progress=False)
    pretrained = train(TrainConfig(shards=str(shards), out=str(args.work / "pretrained"), arch=args.arch,
                                   epochs=args.pretrain_epochs, batch_size=PRETRAIN_BATCH, workers=0, calibrate=False,
                                   ood_reference=0, progress=False))
    scratch = args.work / "scratch" / "best"
    if not (scratch / "config.json").is_file():
        torch.manual_seed(0)
        save_model(GalaxyModel("gz_decals_dr5", arch=args.arch, preprocessing=prep.to_dict()), scratch)
    return {"pretrained": Path(pretrained), "scratch": scratch}


def _settings(args: argparse.Namespace, checkpoint: Path, catalogue: Path, out: Path, masks: int) -> FinetuneConfig:
    """Every run alike but for its masks: ``--images`` seen, a fifth of the epochs for the head, no early stop."""
    epochs = max(1, -(-args.images // round(0.8 * masks)))
    head = max(1, epochs // 5)
    return FinetuneConfig(checkpoint=str(checkpoint), catalogue=str(catalogue), out=str(out), task="segmentation",
                          mask_cols=list(MASK_COLUMNS), volunteers_col=VOLUNTEERS_COLUMN, unfreeze="all",
                          epochs=max(1, epochs - head), head_epochs=head, lr=args.lr, head_lr=args.head_lr,
                          batch_size=args.batch_size, patience=epochs, progress=False)


def _scores(predictions: Path, test: Path) -> dict[str, float]:
    """Dice against the truth (model, volunteers' majority) and 90% coverage, per class."""
    classes = evaluate_masks(predictions, test)["classes"]
    row: dict[str, float] = {}
    for name, entry in classes.items():
        row[f"{name}_dice"] = entry["model_vs_truth"]["dice"]
        row[f"{name}_majority_dice"] = entry["volunteer_majority_vs_truth"]["dice"]
        row[f"{name}_coverage_90"] = entry["coverage_90"]["drawn_or_predicted"]
    return row


def learning_curves(parts: dict[str, pd.DataFrame], starts: dict[str, Path], args: argparse.Namespace) -> list[dict]:
    test = args.work / "test.parquet"
    parts["test"].to_parquet(test)
    rows = []
    for n in args.sizes:
        labelled = args.work / f"masks_{n}.parquet"
        parts["pool"].iloc[:n].to_parquet(labelled)
        for arm, start in starts.items():
            name = f"{arm}_{n}"
            began = time.perf_counter()
            best = finetune(_settings(args, start, labelled, args.work / name, n))
            seconds = time.perf_counter() - began
            predictions = args.work / f"{name}.parquet"
            predict(best, predictions, catalogue=test, samples=args.samples, progress=False)
            rows.append({"arm": arm, "masks": n, "finetune_s": round(seconds, 1), **_scores(predictions, test)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _timed(step, steps: int) -> float:
    """Seconds per call of ``step`` over ``steps`` calls after one untimed."""
    step()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - began) / steps


def throughput(model: torch.nn.Module, loss, size: int, args: argparse.Namespace) -> dict[str, float]:
    """Training (forward, backward, AdamW step) and prediction (encoder once, head x samples) images/s."""
    images = torch.rand(args.batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
    keys = galaxy_keys([str(i) for i in range(args.batch_size)])
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def train_step() -> None:
        optimiser.zero_grad()
        loss(model(images)).backward()
        optimiser.step()

    def predict_step() -> None:
        with torch.no_grad():
            model.sample(model.features(images), args.samples, keys)

    model.train()
    train_s = _timed(train_step, args.speed_steps)
    model.eval()
    predict_s = _timed(predict_step, args.speed_steps)
    return {"train_images_per_s": args.batch_size / train_s, "predict_images_per_s": args.batch_size / predict_s,
            "parameters": sum(p.numel() for p in model.parameters())}


def speeds(args: argparse.Namespace) -> list[dict]:
    """Segmentation beside classification, same encoder and batches, at each of ``--speed-sizes``."""
    rows = []
    for size in args.speed_sizes:
        shares = torch.rand(args.batch_size, len(MASK_COLUMNS), size, size, generator=torch.Generator().manual_seed(1))
        target = (shares, torch.full((args.batch_size,), 15.0))
        torch.manual_seed(0)
        models = {
            "segmentation": (SegmentationModel.create(load_encoder(args.work / "scratch"), list(MASK_COLUMNS)),
                             lambda out, target=target: mask_nll(out, target)),
            "classification": (FinetunedModel.create(load_encoder(args.work / "scratch"), "classification",
                                                     classes=["a", "b"]), lambda out: out.logsumexp(dim=1).mean()),
        }
        measured = {name: throughput(model, loss, size, args) for name, (model, loss) in models.items()}
        rows.append({"size": size, **{f"{name}_{key}": value for name, figures in measured.items()
                                      for key, value in figures.items()}})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _median_radius(paths: pd.Series) -> float:
    """The median measured radius of the galaxies in ``paths``, a share of their frame's side (NaN: none measured)."""
    shares = []
    for path in paths:
        with Image.open(path) as image:
            extent = measure_extent(image.convert("RGB"))
            if extent.status == "measured":
                shares.append(extent.radius / image.width)
    return float(np.median(shares)) if shares else float("nan")


def real_cutouts(simulated: pd.Series, args: argparse.Namespace) -> tuple[pd.DataFrame, dict[str, float]]:
    """GZ2's face-on disks with bar and spiral votes, cut about their centre to the simulated galaxies' scale.

    One crop for all (a share of the GZ2 frame): the one that puts the real galaxies' median
    measured radius where the simulated ones' is in their frames, as a user would cut their
    images to a model's scale. (The size crop, ``SizeCrop``, would do it per galaxy, but the
    model was not trained with it.) The cut-outs are written once, as PNGs.
    """
    folder = gz2_folder(args)
    labels = pd.read_csv(folder / "labels.csv")
    # 4,000 of the Kaggle galaxies were given without questions 3 and 4 (NaN, not zero votes)
    disks = labels[(labels["Class2.2"] >= FACE_ON) & labels[["Class3.1", "Class4.1"]].notna().all(axis=1)]
    columns = kaggle_columns()
    fractions = pd.DataFrame(from_kaggle(disks[list(columns)].to_numpy()), columns=list(columns.values()))
    disks = pd.DataFrame({"id_str": disks["GalaxyID"].astype(str).to_numpy(), "bar": fractions["bar_yes"],
                          "spiral": fractions["has-spiral-arms_yes"],
                          "source": [str(folder / "images" / f"{g}.jpg") for g in disks["GalaxyID"]]})
    ratio = _median_radius(disks["source"][:SCALE_GALAXIES]) / _median_radius(simulated[:SCALE_GALAXIES])
    crop = float(np.clip(np.nan_to_num(ratio, nan=1.0), 0.05, 1.0))
    if crop != ratio:
        print(f"real galaxies: the measured scale ratio {ratio:.3f} is cut to {crop:.3f}", flush=True)
    cutouts = central_crops(disks.set_index("id_str")["source"], args.work / f"gz2_face_on_crop{crop:.3f}", crop)
    disks["file_loc"] = cutouts.to_numpy()
    return disks.drop(columns="source"), {"crop": crop, "measured_ratio": ratio}


def _agreement(frame: pd.DataFrame, name: str) -> dict[str, float]:
    """How one class's predicted masks follow its vote fraction, over galaxies with no true mask."""
    votes, many, few = frame[name], frame[name] > 0.5, frame[name] < 0.2
    drawn = frame[f"{name}_drawn"]
    return {"galaxies": len(frame),
            "rank_correlation_expected_area": float(spearmanr(frame[f"{name}_expected_area"], votes).statistic),
            "rank_correlation_length": float(spearmanr(frame[f"{name}_length"], votes).statistic),
            "drawn_votes_over_half": float(drawn[many].mean()), "drawn_votes_under_fifth": float(drawn[few].mean()),
            "galaxies_votes_over_half": int(many.sum()), "galaxies_votes_under_fifth": int(few.sum())}


def real_masks(model: Path, disks: pd.DataFrame, stem: str, args: argparse.Namespace) -> tuple[pd.DataFrame, dict]:
    """Predict the real galaxies; per galaxy its measurements, votes, expected area and whether a mask is drawn.

    Drawn: the posterior mean mask (expected share above :data:`THRESHOLD`) has a pixel,
    as the grid shows it. Also returns the mask store's metadata and the mean masks by id.
    """
    catalogue = args.work / f"{stem}.csv"
    disks[["id_str", "file_loc"]].to_csv(catalogue, index=False)
    predictions = args.work / f"{stem}_predictions.parquet"
    predict(model, predictions, catalogue=catalogue, samples=args.samples, progress=False)
    ids, masks = read_masks(predictions)
    meta = read_mask_metadata(predictions)
    means = dict(zip(ids, masks["mean"]))
    per_galaxy = pd.DataFrame({"id_str": ids})
    for k, name in enumerate(meta["classes"]):
        per_galaxy[f"{name}_expected_area"] = masks["mean"][:, k].mean(axis=(1, 2))
        per_galaxy[f"{name}_drawn"] = (masks["mean"][:, k] > THRESHOLD).any(axis=(1, 2))
    frame = pd.read_parquet(measurements_path(predictions)).merge(per_galaxy, on="id_str").merge(
        disks.drop(columns="file_loc"), on="id_str")
    return frame, {**meta, "means": means}


def real_galaxies(model: Path, simulated: pd.Series, args: argparse.Namespace, result: Result) -> None:
    """Masks of real GZ2 galaxies from the model trained on simulated ones, against their volunteers' votes."""
    disks, scale = real_cutouts(simulated, args)
    frame, store = real_masks(model, disks, f"gz2_face_on_{len(disks)}_crop{scale['crop']:.3f}", args)
    rows = {name: _agreement(frame, name) for name in store["classes"]}
    result.figures["real_gz2"] = {**scale, "face_on": FACE_ON, **rows}
    result.table(["class", "galaxies", "rank corr., expected area", "rank corr., length",
                  "mask drawn: votes > 0.5", "votes < 0.2"],
                 [[name, r["galaxies"], _cell(r["rank_correlation_expected_area"]), _cell(r["rank_correlation_length"]),
                   f"{r['drawn_votes_over_half']:.1%} of {r['galaxies_votes_over_half']}",
                   f"{r['drawn_votes_under_fifth']:.1%} of {r['galaxies_votes_under_fifth']}"]
                  for name, r in rows.items()],
                 title=f"Real GZ2 face-on disks (no true masks): predicted masks against the volunteers' votes for "
                       f"the class (central {scale['crop']:.2f} of each frame)")
    plots = args.plots or args.work
    plots.mkdir(parents=True, exist_ok=True)
    grid = plots / "segmentation_gz2.png"
    plot_grid(frame, store, grid)
    result.figures["plots"] = [grid]


def plot_grid(frame: pd.DataFrame, store: dict, path: Path) -> None:
    """The most barred, then the most spiral galaxies (by votes), each with its posterior mean masks over it."""
    barred = frame.nlargest(SHOWN_PER_CLASS, "bar").index
    chosen = [*barred, *frame.drop(barred).nlargest(SHOWN_PER_CLASS, "spiral").index]
    seen = images_as_seen([frame.loc[i, "file_loc"] for i in chosen], Preprocessing.from_dict(store["preprocessing"]))
    columns = 10
    rows = -(-len(chosen) // columns)
    figure = Figure(figsize=(columns * 1.3, rows * 1.45))
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, i, image in zip(axes, chosen, seen):
        ax.imshow(overlay(image, store["means"][frame.loc[i, "id_str"]]))
        ax.set_title(f"bar {frame.loc[i, 'bar']:.2f} spiral {frame.loc[i, 'spiral']:.2f}", fontsize=6)
    figure.suptitle(f"Real GZ2 galaxies, the most barred by votes first, then the most spiral: "
                    f"{colour_legend(store['classes'])}, opacity = "
                    "the expected share of volunteers marking the pixel", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=80)


def _smp_decoder(model: SegmentationModel, widths: tuple[int, ...]) -> torch.nn.Module:
    """smp's UnetDecoder in place of this package's, fed as smp feeds it (a stride-1 stand-in first)."""
    from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder

    channels = model.encoder.feature_info.channels()

    class Adapter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = UnetDecoder([model.config["channels"], *channels], list(widths), n_blocks=len(channels))
            self.channels = widths[-1]

        def forward(self, features, size):
            stand_in = features[0].new_empty(features[0].shape[0], 0, *size)  # smp reads only its shape
            return self.decoder([stand_in, *features])

    return Adapter()


def decoders(parts: dict[str, pd.DataFrame], starts: dict[str, Path], curves: list[dict],
             args: argparse.Namespace) -> list[dict]:
    """This package's decoder, smp's with the same widths and smp's with its default widths (module docstring)."""
    import segmentation_models_pytorch as smp

    n = max(args.sizes)
    ours = next(row for row in curves if row["arm"] == "pretrained" and row["masks"] == n)
    variants = {"galaxymorph": None, "smp, same widths": DECODER_CHANNELS,
                "smp, default widths": (256, 128, 64, 32, 16)}
    rows = []
    for name, widths in variants.items():
        row: dict[str, Any] = {"decoder": name, "smp": smp.__version__}
        for size in args.speed_sizes:
            torch.manual_seed(0)
            model = SegmentationModel.create(load_encoder(args.work / "scratch"), list(MASK_COLUMNS))
            if widths is not None:
                model.head.decoder = _smp_decoder(model, widths)
            shares = torch.rand(args.batch_size, len(MASK_COLUMNS), size, size)
            target = (shares, torch.full((args.batch_size,), 15.0))
            figures = throughput(model, lambda out, target=target: mask_nll(out, target), size, args)
            row.update({f"{key}_{size}px": value for key, value in figures.items()})
        if widths is None:
            row.update({k: v for k, v in ours.items() if k.endswith(("dice", "coverage_90")) and "majority" not in k})
        elif widths == DECODER_CHANNELS and args.train_decoders:
            row.update(_train_smp(widths, starts, n, args))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def _train_smp(widths: tuple[int, ...], starts: dict[str, Path], n: int, args: argparse.Namespace) -> dict[str, float]:
    """The pretrained arm's run on n masks, with smp's decoder in place of this package's."""
    labelled, test = args.work / f"masks_{n}.parquet", args.work / "test.parquet"
    settings = _settings(args, starts["pretrained"], labelled, args.work / f"smp_decoder_{n}", n)
    pretrained = load_encoder(settings.checkpoint)
    data = load_masks(labelled, list(MASK_COLUMNS), pretrained.config["preprocessing"], VOLUNTEERS_COLUMN,
                      progress=False)
    train_set, val_set = split_train_val(data, settings.val_fraction, settings.seed)
    torch.manual_seed(settings.seed)  # as finetune seeds the new head
    model = build_model(pretrained, settings, None)
    model.head.decoder = _smp_decoder(model, widths)
    predictions = Path(settings.out) / "test.parquet"
    predict(fit(model, train_set, val_set, settings), predictions, catalogue=test, samples=args.samples,
            progress=False)
    return {k: v for k, v in _scores(predictions, test).items() if "majority" not in k}


def measure(args: argparse.Namespace, result: Result) -> None:
    catalogue = simulate_catalogue(args.galaxies, args.size, args.work / "simulation", workers=1, progress=False,
                                   masks=True)
    catalogue["file_loc"] = [str(args.work / "simulation" / f) for f in catalogue["file_loc"]]
    for column in [*MASK_COLUMNS, *(f"true_{c}" for c in MASK_COLUMNS)]:
        catalogue[column] = [str(args.work / "simulation" / f) for f in catalogue[column]]
    parts = split(catalogue, args)
    starts = starting_points(parts, args)
    curves = learning_curves(parts, starts, args)
    for row in curves:
        result.arm(f"{row['arm']}, n={row['masks']}", **{k: v for k, v in row.items() if k not in ("arm", "masks")})
    dice = ["spiral_dice", "spiral_majority_dice", "bar_dice", "bar_majority_dice", "spiral_coverage_90",
            "bar_coverage_90", "finetune_s"]
    result.table(["arm", "masks", *dice],
                 [[row["arm"], row["masks"], *(_cell(row[c]) for c in dice)] for row in curves],
                 arms=[f"{row['arm']}, n={row['masks']}" for row in curves],
                 title="Dice against the truth (the volunteers' majority beside it) and 90% coverage")
    if args.tiny or (args.gz2 / "labels.csv").is_file():
        model = args.work / f"pretrained_{max(args.sizes)}" / "best"
        real_galaxies(model, parts["pool"]["file_loc"], args, result)
    else:
        result.skip("real GZ2 galaxies", f"no labels.csv in --gz2 {args.gz2}")
    speed = speeds(args)
    for row in speed:
        for model in ("segmentation", "classification"):
            result.arm(f"{model}, {row['size']} px", **{k.removeprefix(f"{model}_"): v for k, v in row.items()
                                                         if k.startswith(f"{model}_")})
    columns = ["train_images_per_s", "predict_images_per_s", "parameters"]
    result.table(["model", "px", *columns],
                 [[model, row["size"], *(_cell(row[f"{model}_{c}"]) for c in columns)]
                  for row in speed for model in ("segmentation", "classification")],
                 arms=[f"{model}, {row['size']} px" for row in speed for model in ("segmentation", "classification")],
                 title="Speed: the segmentation model beside the classification model of the same encoder")
    if args.decoders:
        rows = decoders(parts, starts, curves, args)
        result.figures["decoders"] = rows
        columns = [c for c in rows[0] if c not in ("decoder", "smp")]
        result.table(["decoder", *columns],
                     [[row["decoder"], *(_cell(row.get(c, "")) for c in columns)] for row in rows],
                     title=f"This package's U-Net decoder against smp {rows[0]['smp']}'s UnetDecoder")


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
