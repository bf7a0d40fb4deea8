"""Benchmark: fine-tuning a GZ2-pretrained encoder vs training from scratch, with 50, 200, 1000 labels.

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
  4. Arms, same architecture, same labels, same epoch budget and early stopping:
     ``scratch`` (random init, everything trained at ``--lr``), ``head`` (pretrained,
     frozen encoder, head only) and ``finetune`` (pretrained, head for
     ``--head-epochs`` then the whole encoder with layer-wise lr decay).
  5. Accuracy (argmax) and ROC AUC of P(ringed) on the test set.

Runs are resumable: the pretrained model and every finished (arm, n, seed) in the work
folder (``results.jsonl``) are reused; the result file marks reused ones as from an earlier
run, so a table with any of them is not side by side.

Usage (full, ~1-2 h on 2 free cores):
    python -m benchmarks finetune
Quick version (what ran on the shared machine, minutes):
    python -m benchmarks finetune --quick
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from benchmarks._harness import Result
from benchmarks._shared import TINY_ARCH, add_gz2_option, gz2_folder
from galaxymorph.data.datamodule import GalaxyDataModule
from galaxymorph.data.kaggle_gz2 import kaggle_to_catalogue
from galaxymorph.data.labelled import LabelledImages, load_labelled, split_train_val
from galaxymorph.data.transforms import Preprocessing, eval_transform
from galaxymorph.models import create_encoder, load_encoder
from galaxymorph.models.finetune_model import FinetunedModel, PretrainedEncoder
from galaxymorph.schema import get_schema
from galaxymorph.training import FinetuneConfig, TrainConfig, train
from galaxymorph.training.finetune_run import build_model, fit

HIDDEN_QUESTION = "odd-feature"  # its votes (ring, lens, ...) are hidden from pretraining
PRESETS = {"quick": dict(arch="resnet10t", image_size=48, sizes=[50, 200], pretrain_galaxies=1000, pretrain_epochs=3,
                         epochs=8, head_epochs=2, test_per_class=75, patience=3)}
TINY = dict(arch=TINY_ARCH, image_size=16, sizes=[8], pool_others=10, pretrain_galaxies=20, pretrain_epochs=1,
            epochs=2, head_epochs=1, test_per_class=3, patience=1, workers=1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gz2_option(parser)
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--source-crop", type=float, default=0.5, help="central fraction of the 424 px frame kept")
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--test-per-class", type=int, default=150)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--arms", nargs="+", default=["scratch", "head", "finetune"])
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
    parser.add_argument("--workers", type=int, default=2)


def preprocessing(args: argparse.Namespace) -> dict:
    # stored a third larger than the model input: the zoom-crop augmentation keeps ~75% of it
    stored = round(args.image_size / 0.75)
    return Preprocessing(stored_size=stored, source_crop=args.source_crop, image_size=args.image_size).to_dict()


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
    galaxies = args.work / "pretrain_galaxies.txt"  # beside the run: train refuses a folder holding files it did not write
    ids = "\n".join(frame["id_str"])
    if galaxies.is_file() and galaxies.read_text() != ids:
        raise SystemExit(f"{run} was pretrained on other galaxies (other split settings); use a new --work-root")
    if (run / "best" / "config.json").is_file() and not (run / "checkpoints" / "last.ckpt").is_file():
        return run / "best"
    galaxies.write_text(ids)
    schema = get_schema("gz2")
    frame = frame.copy()
    hidden = list(schema.questions[schema.question_names.index(HIDDEN_QUESTION)].columns)
    frame[hidden] = np.nan
    datamodule = GalaxyDataModule(
        frame, schema=schema, preprocessing=Preprocessing.from_dict(preprocessing(args)), batch_size=args.batch_size,
        num_workers=0, val_fraction=0.1, test_fraction=0.0, in_memory=True,
    )
    config = TrainConfig(shards="(in-memory catalogue)", out=str(run), arch=args.arch, epochs=args.pretrain_epochs,
                         batch_size=args.batch_size, lr=args.lr, patience=args.patience, workers=0, progress=False)
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


def scratch_encoder(pretrained: PretrainedEncoder) -> PretrainedEncoder:
    """The same architecture and input handling, randomly initialised."""
    config = {**pretrained.config, "source": "scratch (random init)"}
    return PretrainedEncoder(create_encoder(config["arch"], channels=config["channels"]), config)


@torch.no_grad()
def ring_probability(model: FinetunedModel, images: torch.Tensor, batch: int = 128) -> np.ndarray:
    model.eval()
    transform = eval_transform(Preprocessing.from_dict(model.config["preprocessing"]))
    probs = [model.sample(model.features(transform(images[i:i + batch])), 1)[:, 1, 0] for i in range(0, len(images), batch)]
    return torch.cat(probs).numpy()


def run_arm(arm: str, n: int, seed: int, pool: LabelledImages, test: LabelledImages, best: Path,
            args: argparse.Namespace) -> dict:
    labelled = labelled_subset(pool, n, seed)
    train_set, val_set = split_train_val(labelled, 0.2, seed)
    pretrained = load_encoder(best)
    common = dict(checkpoint=str(best), catalogue="(in memory)", out=str(args.work / "runs" / f"{arm}-n{n}-s{seed}"),
                  label_col="ringed", batch_size=args.batch_size, patience=args.patience, seed=seed, progress=False)
    if arm == "scratch":
        pretrained = scratch_encoder(pretrained)
        config = FinetuneConfig(**common, unfreeze="all", epochs=args.epochs, lr=args.lr, layer_decay=1.0)
    elif arm == "head":
        config = FinetuneConfig(**common, unfreeze=0, epochs=args.epochs, lr=args.lr)
    else:
        config = FinetuneConfig(**common, unfreeze="all", head_epochs=args.head_epochs, head_lr=args.lr,
                                epochs=args.epochs - args.head_epochs, lr=args.finetune_lr, layer_decay=args.layer_decay)
    model = build_model(pretrained, config, pool.classes)
    start = time.time()
    fit(model, train_set, val_set, config)
    seconds = time.time() - start
    p = ring_probability(model, test.images)
    y = test.targets.numpy()
    return {"arm": arm, "n": n, "seed": seed, "rings": int(labelled.targets.sum()), "accuracy": float(((p > 0.5) == y).mean()),
            "auc": float(roc_auc_score(y, p)), "seconds": round(seconds, 1)}


def table(results: list[dict]) -> list[list[str]]:
    frame = pd.DataFrame(results)
    rows = []
    for n, group in frame.groupby("n"):
        scratch = group[group["arm"] == "scratch"]["auc"].mean()
        for arm, runs in group.groupby("arm", sort=False):
            delta = f"{runs['auc'].mean() - scratch:+.3f}" if arm != "scratch" and np.isfinite(scratch) else "-"
            spread = f" ± {runs['auc'].std():.3f}" if len(runs) > 1 else ""
            rows.append([str(n), arm, f"{runs['rings'].mean():.0f}", f"{runs['accuracy'].mean():.3f}",
                         f"{runs['auc'].mean():.3f}{spread}", delta, f"{runs['seconds'].mean():.0f}"])
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
    prep = preprocessing(args)
    pool, test = (load_labelled(parts[name], "classification", prep, "ringed", classes=["no", "yes"],
                                workers=args.workers, progress=False) for name in ("pool", "test"))
    done = {(r["arm"], r["n"], r["seed"]): r for r in earlier}
    wanted = []
    for n in args.sizes:
        for seed in args.seeds:
            for arm in args.arms:
                r = done.get((arm, n, seed))
                if r is not None:  # finished in an earlier run: reused, and never called side by side
                    result.borrow(arm_name(r), r, {"from": "results.jsonl of the work folder, an earlier run",
                                                   "commit": r.get("commit"), "date": r.get("date")})
                else:
                    r = run_arm(arm, n, seed, pool, test, best, args)
                    result.arm(arm_name(r), **r)
                    print(json.dumps(r), flush=True)
                    with results_file.open("a") as f:
                        f.write(json.dumps({**r, "commit": result.data["commit"], "date": result.data["date"]}) + "\n")
                wanted.append(r)
    result.note(f"test {len(parts['test'])}, labelled pool {len(parts['pool'])}, pretraining {len(parts['pretrain'])} "
                f"galaxies; pretrained encoder in {result.figures['pretrain_s']:.0f} s")
    result.table(["labels", "arm", "rings in labels", "accuracy", "ROC AUC", "AUC - scratch", "train s"], table(wanted),
                 arms=[arm_name(r) for r in wanted])
