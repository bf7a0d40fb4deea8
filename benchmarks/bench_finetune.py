"""Benchmark: fine-tuning a GZ2-pretrained encoder vs training from scratch, with 50, 200, 1000 labels.

Task "ringed" on real Galaxy Zoo 2 images (../shared/data/gz2_kaggle): a galaxy is
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

Runs are resumable: the pretrained model and every finished (arm, n, seed) result in
``--out`` are reused. Results: ``--out/results.jsonl`` and a Markdown table on stdout.

Usage (full, ~1-2 h on 2 free cores):
    .venv/bin/python benchmarks/bench_finetune.py
Quick version (what ran on the shared machine, minutes):
    .venv/bin/python benchmarks/bench_finetune.py --quick
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

from galaxymorph.data.datamodule import GalaxyDataModule
from galaxymorph.data.kaggle_gz2 import kaggle_to_catalogue
from galaxymorph.data.labelled import LabelledImages, load_labelled, split_train_val
from galaxymorph.data.transforms import Preprocessing, eval_transform
from galaxymorph.models import create_encoder, load_encoder
from galaxymorph.models.finetune_model import FinetunedModel, PretrainedEncoder
from galaxymorph.schema import get_schema
from galaxymorph.training import FinetuneConfig, TrainConfig, train
from galaxymorph.training.finetune_run import build_model, fit

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "gz2_kaggle"
POOL_OTHERS = 1000  # non-ringed galaxies kept for labelling
HIDDEN_QUESTION = "odd-feature"  # its votes (ring, lens, ...) are hidden from pretraining


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "_work" / "finetune")
    p.add_argument("--quick", action="store_true", help="small, fast settings for a loaded machine")
    p.add_argument("--arch", default="efficientnet_b0")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--source-crop", type=float, default=0.5, help="central fraction of the 424 px frame kept")
    p.add_argument("--threshold", type=float, default=0.1)
    p.add_argument("--test-per-class", type=int, default=150)
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--arms", nargs="+", default=["scratch", "head", "finetune"])
    p.add_argument("--pretrain-galaxies", type=int, default=6000)
    p.add_argument("--pretrain-epochs", type=int, default=15)
    p.add_argument("--epochs", type=int, default=30, help="epoch budget of every arm (head stage included)")
    p.add_argument("--head-epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--finetune-lr", type=float, default=3e-4, help="encoder-stage head lr of the finetune arm")
    p.add_argument("--layer-decay", type=float, default=0.75)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--table-only", action="store_true", help="print the table of every result in --out, run nothing")
    if p.parse_known_args()[0].quick:  # smaller defaults; options given explicitly still win
        p.set_defaults(arch="resnet10t", image_size=48, sizes=[50, 200], pretrain_galaxies=1000, pretrain_epochs=3,
                       epochs=8, head_epochs=2, test_per_class=75, patience=3)
    return p.parse_args()


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
    pool_others = max(POOL_OTHERS, *args.sizes)  # fixed, so the pretraining set does not depend on --sizes
    return {
        "test": catalogue.loc[np.concatenate([rings[:n_test], others[:n_test]])],
        "pool": catalogue.loc[np.concatenate([rings[n_test:], others[n_test:n_test + pool_others]])],
        "pretrain": catalogue.loc[others[n_test + pool_others:n_test + pool_others + args.pretrain_galaxies]],
    }


def pretrain(frame: pd.DataFrame, args: argparse.Namespace) -> Path:
    """The gz2 tree without the odd-feature question, with the training owner's resumable ``train``."""
    run = args.out / "pretrain"
    galaxies = run / "galaxies.txt"
    ids = "\n".join(frame["id_str"])
    if galaxies.is_file() and galaxies.read_text() != ids:
        raise SystemExit(f"{run} was pretrained on other galaxies (other split settings); use a new --out")
    if (run / "best" / "config.json").is_file() and not (run / "checkpoints" / "last.ckpt").is_file():
        return run / "best"
    run.mkdir(parents=True, exist_ok=True)
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
                         batch_size=args.batch_size, lr=args.lr, patience=args.patience, num_workers=0, progress=False)
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
    common = dict(checkpoint=str(best), catalogue="(in memory)", out=str(args.out / "runs" / f"{arm}-n{n}-s{seed}"),
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


def table(results: list[dict]) -> str:
    frame = pd.DataFrame(results)
    lines = ["| labels | arm | rings in labels | accuracy | ROC AUC | AUC - scratch | train s |", "|---|---|---|---|---|---|---|"]
    for n, group in frame.groupby("n"):
        scratch = group[group["arm"] == "scratch"]["auc"].mean()
        for arm, runs in group.groupby("arm", sort=False):
            delta = f"{runs['auc'].mean() - scratch:+.3f}" if arm != "scratch" and np.isfinite(scratch) else "-"
            spread = f" ± {runs['auc'].std():.3f}" if len(runs) > 1 else ""
            lines.append(f"| {n} | {arm} | {runs['rings'].mean():.0f} | {runs['accuracy'].mean():.3f} | "
                         f"{runs['auc'].mean():.3f}{spread} | {delta} | {runs['seconds'].mean():.0f} |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    if not (args.data / "labels.csv").is_file():
        raise SystemExit(f"no GZ2 data at {args.data} (expected labels.csv and images/)")
    results_file = args.out / "results.jsonl"
    results = [json.loads(line) for line in results_file.read_text().splitlines()] if results_file.exists() else []
    if args.table_only:
        print(table(results))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    catalogue = kaggle_to_catalogue(args.data / "labels.csv", args.data / "images")
    catalogue["ringed"] = np.where(catalogue["kaggle:Class8.1"] > args.threshold, "yes", "no")
    parts = split(catalogue, args)
    print(f"test {len(parts['test'])}, labelled pool {len(parts['pool'])}, pretraining {len(parts['pretrain'])} galaxies")
    start = time.time()
    best = pretrain(parts["pretrain"], args)
    print(f"pretrained encoder: {best} ({time.time() - start:.0f} s)")
    prep = preprocessing(args)
    pool, test = (load_labelled(parts[name], "classification", prep, "ringed", classes=["no", "yes"],
                                workers=args.workers, progress=False) for name in ("pool", "test"))
    done = {(r["arm"], r["n"], r["seed"]) for r in results}
    for n in args.sizes:
        for seed in args.seeds:
            for arm in args.arms:
                if (arm, n, seed) in done:
                    continue
                result = run_arm(arm, n, seed, pool, test, best, args)
                print(json.dumps(result), flush=True)
                results.append(result)
                with results_file.open("a") as f:
                    f.write(json.dumps(result) + "\n")
    wanted = [r for r in results if r["n"] in args.sizes and r["seed"] in args.seeds and r["arm"] in args.arms]
    print(f"\nsettings: {json.dumps({k: str(v) for k, v in vars(args).items()})}\n")
    print(table(wanted))


if __name__ == "__main__":
    main()
