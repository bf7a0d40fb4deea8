"""Benchmark: fine-tuning a GZ2-pretrained encoder with 50, 200, 1000 labels, beside scratch, a probe and zoobot 2.9.

Task "ringed" on real Galaxy Zoo 2 images (``--gz2``): a galaxy is
ringed when ``Class8.1`` (the share of all volunteers who marked a ring) is above
``--threshold`` (0.1: 647 of 9,728 galaxies).

Protocol (one split, seeded):
  1. Test set: ``--test-per-class`` ringed and as many non-ringed galaxies, fixed for
     every run (balanced, so accuracy's chance level is 0.5).
  2. Labelled pool: the other ringed galaxies and ``max(--sizes)`` non-ringed ones. A
     run with n labels takes the first n of a seeded shuffle, half ringed where the
     pool allows (nested: the 50 are among the 200, ...). 20% of them are the
     validation set for early stopping.
  3. Pretraining: ``--pretrain-galaxies`` other (non-ringed) galaxies, trained on the
     whole ``gz2`` tree with ``galaxymorph.training.train_run`` EXCEPT the "odd feature"
     question (its votes are NaN, so ring votes never reach the encoder).
  4. Arms, same architecture, same labels. galaxymorph's, with the same epoch budget and
     early stopping: ``scratch`` (random init, everything trained at ``--lr``), ``head``
     (pretrained, frozen encoder, head only) and ``finetune`` (pretrained, head for
     ``--head-epochs`` then the whole encoder with layer-wise lr decay). ``probe``: zoobot's
     linear sanity check, an unpenalised logistic regression (200 iterations) on the frozen
     encoder's features of the training galaxies. ``zoobot``: zoobot 2.9's
     ``FinetuneableZoobotClassifier`` and ``get_trainer`` with their documented defaults
     (head only, AdamW lr 1e-4, weight decay 0.05, dropout 0.5, up to 100 epochs, patience
     10), its default train and minimal test views (galaxy-datasets 0.0.25) at the same
     ``--image-size``, normalised with the exported encoder's mean and std, on the same
     training and validation galaxies, cut to the same central ``--source-crop`` of the frame
     (lossless PNGs). Both start from the pretrained encoder: zoobot loads it by ``hf_hub:``
     name from ``galaxymorph export``'s folder in an offline Hugging Face cache.
  5. Accuracy (P > 1/2), ROC AUC and the expected calibration error (10 equal-width bins of
     P(ringed)) on the test set; galaxymorph's P(ringed) as ``predict`` gives it (the mean of 5
     MC-dropout samples). galaxymorph's trained arms are calibrated as ``finetune``
     calibrates (a temperature fitted on their validation labels; ``--no-calibrate``: not),
     and their ECE before it is reported beside (a temperature changes neither accuracy nor
     ROC AUC of two classes).

Runs are resumable: the pretrained model and every finished (arm, n, seed) in the work
folder (``results.jsonl``) are reused when their settings are this run's (a pretrained model
with others is refused); the result file marks reused ones as from an earlier run, so a
table with any of them is not side by side. ``--pretrain-image-size`` pretrains at another
size than the arms fine-tune at.

zoobot runs in its own environment (``benchmarks/_work/shared/zoobot-venv``, built on first use;
``--tiny`` skips it).

Usage (full, ~1-2 h on 2 free cores):
    python -m benchmarks finetune
Quick version (what ran on the shared machine, minutes):
    python -m benchmarks finetune --quick
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from benchmarks._harness import Result
from benchmarks._shared import (
    TINY_ARCH,
    add_gz2_option,
    central_crops,
    gz2_folder,
    offline_hub,
    put_in_hub_cache,
    run_zoobot_child,
    zoobot_python,
    zoobot_skip_reason,
)
from galaxymorph.data.datamodule import GalaxyDataModule
from galaxymorph.data.kaggle_gz2 import kaggle_to_catalogue
from galaxymorph.data.labelled import LabelledImages, load_labelled, split_train_val
from galaxymorph.data.transforms import Preprocessing, eval_transform
from galaxymorph.engine.settings import ConfigError
from galaxymorph.models import create_encoder, export_encoder, load_encoder
from galaxymorph.models.finetune_model import FinetunedModel, PretrainedEncoder
from galaxymorph.models.head import galaxy_keys
from galaxymorph.prediction.mc_dropout import DEFAULT_SAMPLES
from galaxymorph.schema import get_schema
from galaxymorph.training import FinetuneConfig, TrainConfig, train
from galaxymorph.training.config import TRAIN_CONFIG_FILE, claim_run
from galaxymorph.training.finetune_run import build_model, fit

ARMS = ("scratch", "head", "finetune", "probe", "zoobot")
HUB_NAME = "local/galaxymorph-gz2-pretrained"  # the exported encoder's repository id in the benchmark's own hub cache
HIDDEN_QUESTION = "odd-feature"  # its votes (ring, lens, ...) are hidden from pretraining
RESULT_SETTINGS = ("arch", "image_size", "source_crop", "threshold", "test_per_class", "pool_others",
                   "pretrain_galaxies", "pretrain_epochs", "epochs", "head_epochs", "lr", "finetune_lr",
                   "layer_decay", "batch_size", "patience", "calibrate")
PRESETS = {"quick": dict(arch="resnet10t", image_size=48, sizes=[50, 200], pretrain_galaxies=1000, pretrain_epochs=3,
                         epochs=8, head_epochs=2, test_per_class=75, patience=3)}
TINY = dict(arch=TINY_ARCH, image_size=16, sizes=[8], pool_others=10, pretrain_galaxies=20, pretrain_epochs=1,
            epochs=2, head_epochs=1, test_per_class=3, patience=1, workers=1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gz2_option(parser)
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--pretrain-image-size", type=int, help="pretraining's input size (default --image-size)")
    parser.add_argument("--source-crop", type=float, default=0.5, help="central fraction of the 424 px frame kept")
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--test-per-class", type=int, default=150)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--pool-others", type=int, default=1000, help="non-ringed galaxies kept for labelling")
    parser.add_argument("--pretrain-galaxies", type=int, default=6000)
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=30, help="epoch budget of every arm (head stage included)")
    parser.add_argument("--head-epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--finetune-lr", type=float, default=3e-4, help="encoder-stage head lr of the finetune arm")
    parser.add_argument("--layer-decay", type=float, default=0.75)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--patience", type=int, default=6)
    parser.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=True,
                        help="galaxymorph's arms: a temperature fitted on the validation labels, as finetune fits it")
    parser.add_argument("--workers", type=int, default=2)


def preprocessing(args: argparse.Namespace, image_size: int) -> dict:
    # stored a third larger than the model input: the zoom-crop augmentation keeps ~75% of it
    stored = round(image_size / 0.75)
    return Preprocessing(stored_size=stored, source_crop=args.source_crop, image_size=image_size).to_dict()


def pretrain_image_size(args: argparse.Namespace) -> int:
    return args.pretrain_image_size or args.image_size


def result_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings an (arm, n, seed) result depends on: a result is reused only where they are the same."""
    return {name: getattr(args, name) for name in RESULT_SETTINGS} | {"pretrain_image_size": pretrain_image_size(args)}


def split(catalogue: pd.DataFrame, args: argparse.Namespace) -> dict[str, pd.DataFrame]:
    """Test (balanced), labelled pool (nested per seed later), pretraining set: disjoint."""
    rng = np.random.default_rng(12345)
    ringed = catalogue["kaggle:Class8.1"].to_numpy() > args.threshold
    rings = catalogue.index[ringed].to_numpy()[rng.permutation(ringed.sum())]
    others = catalogue.index[~ringed].to_numpy()[rng.permutation((~ringed).sum())]
    n_test = args.test_per_class
    pool_others = max(args.pool_others, *args.sizes)  # fixed, so the pretraining set does not depend on --sizes
    return {
        "test": catalogue.loc[np.concatenate([rings[:n_test], others[:n_test]])],
        "pool": catalogue.loc[np.concatenate([rings[n_test:], others[n_test:n_test + pool_others]])],
        "pretrain": catalogue.loc[others[n_test + pool_others:n_test + pool_others + args.pretrain_galaxies]],
    }


def pretrain(frame: pd.DataFrame, args: argparse.Namespace) -> Path:
    """The gz2 tree without the odd-feature question, with the training owner's resumable ``train``."""
    run = args.work / "pretrain"
    prep = Preprocessing.from_dict(preprocessing(args, pretrain_image_size(args))).to_dict()
    job = {"galaxies": list(frame["id_str"]), "preprocessing": prep}
    marker = args.work / "pretrain_job.json"  # beside the run: train refuses a folder holding files it did not write
    if marker.is_file() and json.loads(marker.read_text()) != job:
        raise SystemExit(f"{run} was pretrained on other galaxies or with other preprocessing (split settings, "
                         "--pretrain-image-size, --source-crop); use a new --work-root")
    config = TrainConfig(shards="(in-memory catalogue)", out=str(run), arch=args.arch, epochs=args.pretrain_epochs,
                         batch_size=args.batch_size, lr=args.lr, patience=args.patience, workers=0, progress=False)
    try:  # a started or finished pretraining is resumed or reused only with these settings
        claim_run(config, TRAIN_CONFIG_FILE)
    except ConfigError as error:
        raise SystemExit(f"{error} (here: a new --work-root)") from None
    best = run / "best"
    if (best / "config.json").is_file() and not (run / "checkpoints" / "last.ckpt").is_file():
        trained = json.loads((best / "config.json").read_text())["preprocessing"]
        if Preprocessing.from_dict(trained).to_dict() != prep:  # also for folders from before the marker
            raise SystemExit(f"{run} was pretrained with other preprocessing (--pretrain-image-size, --source-crop); "
                             "use a new --work-root")
        return best
    marker.write_text(json.dumps(job))
    schema = get_schema("gz2")
    frame = frame.copy()
    hidden = list(schema.questions[schema.question_names.index(HIDDEN_QUESTION)].columns)
    frame[hidden] = np.nan
    datamodule = GalaxyDataModule(
        frame, schema=schema, preprocessing=Preprocessing.from_dict(prep), batch_size=args.batch_size,
        num_workers=0, val_fraction=0.1, test_fraction=0.0, in_memory=True,
    )
    best = train(config, datamodule=datamodule)
    (run / "checkpoints" / "last.ckpt").unlink(missing_ok=True)  # finished: later runs reuse best/
    return best


def labelled_subset(pool: LabelledImages, n: int, seed: int) -> LabelledImages:
    """The first n of a seeded shuffle, half ringed where the pool has enough (nested over n)."""
    rng = np.random.default_rng(seed)
    targets = pool.targets.numpy()
    rings = np.flatnonzero(targets == 1)[rng.permutation((targets == 1).sum())]
    others = np.flatnonzero(targets == 0)[rng.permutation((targets == 0).sum())]
    k = min(n // 2, len(rings))
    return pool.subset(np.sort(np.concatenate([rings[:k], others[: n - k]])))


def fine_tuning_encoder(best: Path, args: argparse.Namespace) -> PretrainedEncoder:
    """The pretrained encoder, fed images as the arms fine-tune on them (``--image-size``, maybe not pretraining's)."""
    pretrained = load_encoder(best)
    prep = preprocessing(args, args.image_size)
    return PretrainedEncoder(pretrained.encoder, {**pretrained.config, "preprocessing": prep,
                                                  "image_size": args.image_size})


def scratch_encoder(pretrained: PretrainedEncoder) -> PretrainedEncoder:
    """The same architecture and input handling, randomly initialised."""
    config = {**pretrained.config, "source": "scratch (random init)"}
    return PretrainedEncoder(create_encoder(config["arch"], channels=config["channels"]), config)


@torch.no_grad()
def encoder_features(model: FinetunedModel, images: torch.Tensor, batch: int = 128) -> torch.Tensor:
    model.eval()
    transform = eval_transform(Preprocessing.from_dict(model.config["preprocessing"]))
    return torch.cat([model.features(transform(images[i:i + batch])) for i in range(0, len(images), batch)])


@torch.no_grad()
def ring_probability(model: FinetunedModel, test: LabelledImages) -> np.ndarray:
    """P(ringed) as ``predict`` gives it: the mean of its MC-dropout samples, each galaxy's from its id."""
    samples = model.sample(encoder_features(model, test.images), DEFAULT_SAMPLES, galaxy_keys(test.ids))
    return samples[:, 1].mean(dim=-1).numpy()


def probe_probability(model: FinetunedModel, train_set: LabelledImages, test: LabelledImages) -> np.ndarray:
    """zoobot's linear sanity check: unpenalised logistic regression on the frozen encoder's features."""
    probe = LogisticRegression(C=np.inf, max_iter=200)  # zoobot: penalty=None, spelled so since scikit-learn 1.8
    probe.fit(encoder_features(model, train_set.images).numpy(), train_set.targets.numpy())
    return probe.predict_proba(encoder_features(model, test.images).numpy())[:, 1]


def calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of P(ringed): per equal-width bin, |mean P - share ringed|, weighted by its galaxies."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(p[which == b].mean() - y[which == b].mean()) * (which == b).mean()
                     for b in np.unique(which)))


def before_calibration(model: FinetunedModel, test: LabelledImages) -> dict[str, float]:
    """The fitted temperature and the ECE the arm had without it (nothing when it is uncalibrated)."""
    temperature = model.config["temperature"]
    if temperature is None:
        return {}
    model.set_temperature(None)
    ece = calibration_error(ring_probability(model, test), test.targets.numpy())
    model.set_temperature(temperature)
    return {"temperature": temperature, "ece_uncalibrated": ece}


def scores(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {"accuracy": float(((p > 0.5) == y).mean()), "auc": float(roc_auc_score(y, p)),
            "ece": calibration_error(p, y)}


ZOOBOT_CHILD = r'''
"""Runs in the zoobot environment: zoobot 2.9's documented fine-tuning on one labelled set, P(class) of the test set."""
import json, sys
import lightning as L
import pandas as pd
from lightning.pytorch.loggers import CSVLogger
from galaxy_datasets.pytorch.galaxy_datamodule import CatalogDataModule
from galaxy_datasets.transforms import default_view_config, get_galaxy_transform, minimal_view_config
from zoobot.pytorch.predictions import predict_on_catalog
from zoobot.pytorch.training import finetune

job = json.load(open(sys.argv[1]))
L.seed_everything(job["seed"])
model = finetune.FinetuneableZoobotClassifier(name=job["name"], num_classes=2, seed=job["seed"], prog_bar=False)
normalize = {"mean": list(model.encoder.pretrained_cfg["mean"]), "std": list(model.encoder.pretrained_cfg["std"])}


def view(config):
    config.output_size, config.normalize = job["size"], normalize
    return get_galaxy_transform(config)


def read(part):
    return pd.read_csv(job[part], dtype={"id_str": str})


datamodule = CatalogDataModule(label_cols=["label"], train_catalog=read("train"), val_catalog=read("val"),
                               batch_size=job["batch_size"], num_workers=job["workers"], seed=job["seed"],
                               train_transform=view(default_view_config()), test_transform=view(minimal_view_config()))
trainer = finetune.get_trainer(job["out"], accelerator="cpu", devices=1, enable_progress_bar=False,
                               logger=CSVLogger(job["out"]))  # not lightning_logs/ in the caller's folder
trainer.fit(model, datamodule)
best = finetune.FinetuneableZoobotClassifier.load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
predict_on_catalog.predict(read("test"), best, job["predictions"], ["no", "yes"], view(minimal_view_config()),
                           datamodule_kwargs={"batch_size": job["batch_size"], "num_workers": 0},
                           trainer_kwargs={"accelerator": "cpu", "devices": 1, "logger": False,
                                           "enable_progress_bar": False})
'''


@dataclass
class ZoobotSide:
    """What the zoobot arm needs: its environment, the offline hub cache with the exported encoder, the images."""

    python: Path
    cache: Path
    images: pd.Series  # PNG path by id_str: the central --source-crop of each GZ2 image, as galaxymorph sees it


def zoobot_side(parts: dict[str, pd.DataFrame], run: Path, args: argparse.Namespace) -> ZoobotSide:
    """Export the pretrained encoder into a hub cache of the benchmark's own, and cut the galaxies' images."""
    for folder in ("exported", "hf_cache"):
        shutil.rmtree(args.work / folder, ignore_errors=True)  # this benchmark's own
    put_in_hub_cache(export_encoder(run, args.work / "exported"), HUB_NAME, args.work / "hf_cache")
    frame = pd.concat([parts["pool"], parts["test"]]).set_index("id_str")
    paths = central_crops(frame["file_loc"], args.work / f"zoobot_images_crop{args.source_crop}", args.source_crop)
    return ZoobotSide(zoobot_python(args), args.work / "hf_cache", paths)


def zoobot_probability(zoobot: ZoobotSide, sets: dict[str, LabelledImages], n: int, seed: int,
                       args: argparse.Namespace) -> np.ndarray:
    work = args.work / "zoobot" / f"n{n}-s{seed}"
    shutil.rmtree(work, ignore_errors=True)  # this benchmark's own
    work.mkdir(parents=True)
    job = {"name": f"hf_hub:{HUB_NAME}", "size": args.image_size, "seed": seed,
           "batch_size": args.batch_size, "workers": args.workers, "out": str(work),
           "predictions": str(work / "test_predictions.csv")}
    for part, data in sets.items():
        frame = pd.DataFrame({"id_str": data.ids, "file_loc": zoobot.images.loc[data.ids].to_numpy(),
                              "label": data.targets.numpy()})
        frame.to_csv(work / f"{part}.csv", index=False)
        job[part] = str(work / f"{part}.csv")
    with offline_hub(zoobot.cache) as env:
        run_zoobot_child(zoobot.python, ZOOBOT_CHILD, job, work, {**env, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    predictions = pd.read_csv(job["predictions"], dtype={"id_str": str}).set_index("id_str")
    return predictions.loc[sets["test"].ids, "yes"].to_numpy()


def arm_folder(args: argparse.Namespace) -> Path:
    """The arms' run folders, one per training settings: a run started with others is never resumed.

    ``calibrate`` is not one: a finished run calibrated otherwise is only calibrated again.
    """
    training = {k: v for k, v in result_settings(args).items() if k != "calibrate"}
    digest = hashlib.sha256(json.dumps(training, sort_keys=True).encode()).hexdigest()[:10]
    return args.work / "runs" / digest


def run_arm(arm: str, n: int, seed: int, pool: LabelledImages, test: LabelledImages, best: Path,
            zoobot: ZoobotSide | None, args: argparse.Namespace) -> dict:
    labelled = labelled_subset(pool, n, seed)
    train_set, val_set = split_train_val(labelled, 0.2, seed)
    before: dict[str, float] = {}
    start = time.time()
    if arm == "zoobot":
        p = zoobot_probability(zoobot, {"train": train_set, "val": val_set, "test": test}, n, seed, args)
    else:
        pretrained = fine_tuning_encoder(best, args)
        common = dict(checkpoint=str(best), catalogue="(in memory)", out=str(arm_folder(args) / f"{arm}-n{n}-s{seed}"),
                      label_col="ringed", batch_size=args.batch_size, patience=args.patience, seed=seed,
                      calibrate=args.calibrate, progress=False)
        if arm == "scratch":
            pretrained = scratch_encoder(pretrained)
            config = FinetuneConfig(**common, unfreeze="all", epochs=args.epochs, lr=args.lr, layer_decay=1.0)
        elif arm in ("head", "probe"):
            config = FinetuneConfig(**common, unfreeze=0, epochs=args.epochs, lr=args.lr)
        else:
            config = FinetuneConfig(**common, unfreeze="all", head_epochs=args.head_epochs, head_lr=args.lr,
                                    epochs=args.epochs - args.head_epochs, lr=args.finetune_lr,
                                    layer_decay=args.layer_decay)
        model = build_model(pretrained, config, pool.classes)
        if arm == "probe":
            p = probe_probability(model, train_set, test)
        else:
            fit(model, train_set, val_set, config)
            p = ring_probability(model, test)
            before = before_calibration(model, test)
    seconds = time.time() - start
    return {"arm": arm, "n": n, "seed": seed, "rings": int(labelled.targets.sum()), **scores(p, test.targets.numpy()),
            "seconds": round(seconds, 1), **before}


def mean_std(values: pd.Series) -> str:
    return f"{values.mean():.3f}" + (f" ± {values.std():.3f}" if len(values) > 1 else "")


def table(results: list[dict]) -> list[list[str]]:
    frame = pd.DataFrame(results)
    rows = []
    for n, group in frame.groupby("n"):
        scratch = group[group["arm"] == "scratch"]["auc"].mean()
        for arm, runs in group.groupby("arm", sort=False):
            delta = f"{runs['auc'].mean() - scratch:+.3f}" if arm != "scratch" and np.isfinite(scratch) else "-"
            before = runs["ece_uncalibrated"] if "ece_uncalibrated" in runs else pd.Series([np.nan])
            uncalibrated = mean_std(before) if before.notna().all() else "-"  # zoobot, probe: nothing to calibrate
            rows.append([str(n), arm, f"{runs['rings'].mean():.0f}", mean_std(runs["accuracy"]), mean_std(runs["auc"]),
                         mean_std(runs["ece"]), uncalibrated, delta, f"{runs['seconds'].mean():.0f}"])
    return rows


def arm_name(r: dict) -> str:
    return f"{r['arm']}, n={r['n']}, seed={r['seed']}"


def measure(args: argparse.Namespace, result: Result) -> None:
    results_file = args.work / "results.jsonl"
    earlier = [json.loads(line) for line in results_file.read_text().splitlines()] if results_file.exists() else []
    torch.manual_seed(0)
    gz2 = gz2_folder(args)
    catalogue = kaggle_to_catalogue(gz2 / "labels.csv", gz2 / "images")
    catalogue["ringed"] = np.where(catalogue["kaggle:Class8.1"] > args.threshold, "yes", "no")
    parts = split(catalogue, args)
    result.figures.update({f"{name}_galaxies": len(parts[name]) for name in parts})
    start = time.time()
    best = pretrain(parts["pretrain"], args)
    result.figures["pretrain_s"] = time.time() - start
    zoobot = None
    if "zoobot" in args.arms:
        reason = zoobot_skip_reason(args)
        if reason:
            result.skip("zoobot", reason)
            args.arms = [arm for arm in args.arms if arm != "zoobot"]
            if not args.arms:
                raise SystemExit(f"no arm left to run: zoobot is skipped ({reason}); add another --arms")
        else:
            zoobot = zoobot_side(parts, best.parent, args)
    prep = preprocessing(args, args.image_size)
    pool, test = (load_labelled(parts[name], "classification", prep, "ringed", classes=["no", "yes"],
                                workers=args.workers, progress=False) for name in ("pool", "test"))
    settings = result_settings(args)
    done = {(r["arm"], r["n"], r["seed"]): r for r in earlier if r.get("settings") == settings}
    wanted = []
    for n in args.sizes:
        for seed in args.seeds:
            for arm in args.arms:
                r = done.get((arm, n, seed))
                if r is not None:  # finished in an earlier run: reused, and never called side by side
                    result.borrow(arm_name(r), r, {"from": "results.jsonl of the work folder, an earlier run",
                                                   "commit": r.get("commit"), "date": r.get("date")})
                else:
                    r = run_arm(arm, n, seed, pool, test, best, zoobot, args)
                    result.arm(arm_name(r), **r)
                    print(json.dumps(r), flush=True)
                    with results_file.open("a") as f:
                        f.write(json.dumps({**r, "commit": result.data["commit"], "date": result.data["date"],
                                            "settings": settings}) + "\n")
                wanted.append(r)
    result.note(f"test {len(parts['test'])}, labelled pool {len(parts['pool'])}, pretraining {len(parts['pretrain'])} "
                f"galaxies; pretrained encoder in {result.figures['pretrain_s']:.0f} s")
    result.table(["labels", "arm", "rings in labels", "accuracy", "ROC AUC", "ECE", "ECE uncalibrated",
                  "AUC - scratch", "train s"],
                 table(wanted),
                 arms=[arm_name(r) for r in wanted])
