"""Side by side with the public Zoobot (2.9, PyPI): same GZ2 split, image size, architecture
and wall-clock budget, trained one after the other in one run; both scored the same way
(Kaggle RMSE of the test split, our code).

Ours: ``train_gz2``'s training and scoring (``galaxymorph.prediction`` and ``evaluate`` on the
test split), or with ``--ours-from RESULT`` the figures of an earlier ``train_gz2`` result
file, which the tables then mark as not side by side. Zoobot runs in its own environment
(``benchmarks._shared.zoobot_python``: zoobot and its own dependencies, torch, timm and
Lightning from this project's). Zoobot's rough edges worked around here:
``train_default_zoobot_from_scratch`` has no time cap (a Lightning ``Timer`` callback is
passed), it always runs a test step (given the validation catalogue so it is cheap and does
not touch our test split), and it returns the last model: the best checkpoint is loaded for
scoring instead. Missing questions (NaN) are given 0 votes for zoobot, which its loss treats
as not asked. With ``--tiny`` zoobot's environment is not built: ours runs alone, and the
result says zoobot was skipped.

    python -m benchmarks train_zoobot --minutes 35 [--size 64] [--arch efficientnet_b0]
        [--batch-size 64] [--workers 2] [--threads 1] [--epochs 36] [--ours-from RESULT]

Zoobot images: the full 424 px JPEGs through galaxy-datasets' ``default_view_config`` for
training (random affine: rotation up to 90 degrees, zoom 1.2-1.4, shift, shear; flips;
random erasing) and ``minimal_view_config`` (fixed 1.2 zoom) for the test split, resized to
--size; ours: shards (central 0.65 of the frame at 96 px) and our transforms resized to --size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._harness import Result
from benchmarks._shared import (
    SPLIT_SEED,
    TINY_TRAINING,
    add_gz2_option,
    add_training_options,
    gz2_catalogue,
    gz2_folder,
    gz2_run_folder,
    hhmmss,
    kaggle_truth,
    train_gz2_arms,
    zoobot_python,
    zoobot_skip_reason,
)
from galaxymorph.data.shards import assign_splits
from galaxymorph.kaggle import kaggle_rmse, to_kaggle
from galaxymorph.schema import get_schema
from galaxymorph.stats import expected_fractions

TINY = TINY_TRAINING
OURS = ("galaxymorph, single view", "galaxymorph, 8-view TTA")

CHILD = r'''
"""Runs inside the zoobot venv: train from scratch under a time cap, predict the test split."""
import json, sys, time
import lightning as L
import numpy as np
import pandas as pd
import torch
from PIL import Image
from galaxy_datasets.transforms import default_view_config, minimal_view_config, get_galaxy_transform
from zoobot.pytorch.estimators import define_model
from zoobot.pytorch.training import train_with_pytorch_lightning
from zoobot.shared.schemas import Schema

args = json.load(open(sys.argv[1]))
torch.set_num_threads(args["threads"])
tree = args["tree"]
pairs = {q["name"]: ["_" + a for a in q["answers"]] for q in tree["questions"]}
owner = {f'{q["name"]}_{a}': q["name"] for q in tree["questions"] for a in q["answers"]}
# zoobot allows one parent per question; GZ2's questions 5 and 6 have several: keep the first
dependencies = {q["name"]: (q["after"][0] if q["after"] else None) for q in tree["questions"]}
schema = Schema(pairs, dependencies)
train_cat, val_cat, test_cat = (pd.read_parquet(args[k]) for k in ("train", "val", "test"))

class Throughput(L.Callback):
    def __init__(self): self.images, self.start, self.end = 0, None, None
    def on_train_batch_start(self, trainer, module, batch, i):
        if self.start is None and trainer.global_step >= 5: self.start = time.perf_counter()
    def on_train_batch_end(self, trainer, module, out, batch, i):
        if self.start is not None: self.images += batch["image"].shape[0]; self.end = time.perf_counter()

probe = Throughput()
train_cfg = default_view_config(); train_cfg.output_size = args["size"]; train_cfg.greyscale = False
test_cfg = minimal_view_config(); test_cfg.output_size = args["size"]; test_cfg.greyscale = False
start = time.perf_counter()
model, trainer = train_with_pytorch_lightning.train_default_zoobot_from_scratch(
    save_dir=args["save_dir"], schema=schema, train_transform_cfg=train_cfg, test_transform_cfg=test_cfg,
    train_catalog=train_cat, val_catalog=val_cat, test_catalog=val_cat, epochs=1000, patience=1000,
    architecture_name=args["arch"], batch_size=args["batch_size"], gpus=0, num_workers=args["workers"],
    prefetch_factor=2, extra_callbacks=[L.pytorch.callbacks.Timer(duration=args["duration"]), probe],
)
train_seconds = time.perf_counter() - start
best = trainer.checkpoint_callback.best_model_path
model = define_model.ZoobotTree.load_from_checkpoint(best, map_location="cpu").eval()
transform = get_galaxy_transform(test_cfg)
conc = []
with torch.no_grad():
    for i in range(0, len(test_cat), 128):
        rows = test_cat.iloc[i : i + 128]
        x = torch.stack([transform(Image.open(p).convert("RGB")) for p in rows["file_loc"]])
        conc.append(model(x).numpy())
np.save(args["out_conc"], np.concatenate(conc))
json.dump({"best_checkpoint": best, "train_seconds": train_seconds, "epochs": trainer.current_epoch,
           "images_per_second": probe.images / (probe.end - probe.start) if probe.end else float("nan")},
          open(args["out_info"], "w"))
'''


def catalogues(args: argparse.Namespace, work: Path) -> dict[str, str]:
    """Zoobot catalogues of our split: absolute JPEG paths, the same vote counts (NaN -> 0)."""
    table = pd.read_parquet(gz2_catalogue(args))
    schema = get_schema("gz2")
    zoobot = table[["id_str", *schema.answers]].copy()
    zoobot[list(schema.answers)] = zoobot[list(schema.answers)].fillna(0)
    zoobot["file_loc"] = [str(gz2_folder(args).resolve() / "images" / f"{i}.jpg") for i in zoobot["id_str"]]
    split = assign_splits(zoobot["id_str"], SPLIT_SEED, 0.1, 0.1)
    paths = {}
    for name in ("train", "val", "test"):
        paths[name] = str(work / f"zoobot_{name}.parquet")
        zoobot[split == name].reset_index(drop=True).to_parquet(paths[name])
    return paths


def zoobot_arm(args: argparse.Namespace, result: Result) -> None:
    """Train zoobot 2.9 from scratch under the same budget in its environment; score its best checkpoint."""
    python = zoobot_python(args)
    work = args.work / f"zoobot_{args.arch}_{args.size}px_{args.minutes:g}min_{args.threads}threads"
    work.mkdir(parents=True, exist_ok=True)
    paths = catalogues(args, work)
    child_args = {
        **paths, "tree": get_schema("gz2").to_dict(), "size": args.size, "arch": args.arch,
        "batch_size": args.batch_size, "workers": args.workers, "threads": args.threads, "save_dir": str(work / "run"),
        "duration": f"00:{hhmmss(args.minutes)}",  # Lightning Timer: DD:HH:MM:SS
        "out_conc": str(work / "test_concentrations.npy"), "out_info": str(work / "info.json"),
    }
    (work / "child.py").write_text(CHILD)
    (work / "child_args.json").write_text(json.dumps(child_args))
    subprocess.run([str(python), str(work / "child.py"), str(work / "child_args.json")], check=True)
    info = json.loads((work / "info.json").read_text())
    ids = pd.read_parquet(paths["test"])["id_str"].tolist()
    truth = kaggle_truth(gz2_catalogue(args)).loc[ids].to_numpy()
    schema = get_schema("gz2")
    conc = np.load(work / "test_concentrations.npy")
    result.arm("zoobot 2.9", kaggle_rmse=kaggle_rmse(to_kaggle(expected_fractions(conc, schema), schema), truth),
               train_images_per_s=info["images_per_second"], epochs=info["epochs"],
               train_minutes=info["train_seconds"] / 60, best_checkpoint=Path(info["best_checkpoint"]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gz2_option(parser)
    add_training_options(parser, epochs=36, minutes=35)
    parser.set_defaults(workers=2, threads=1)  # both sides (1 thread: least contention on 2 shared cores)
    parser.add_argument("--ours-from", type=Path, help="a train_gz2 result file to take ours from (not side by side)")


def measure(args: argparse.Namespace, result: Result) -> None:
    if args.ours_from:
        for arm in OURS:
            result.borrow_from_result(args.ours_from, arm)
    else:
        train_gz2_arms(args, result, args.work / gz2_run_folder(args))
    reason = zoobot_skip_reason(args)
    if reason:
        result.skip("zoobot 2.9", reason)
    else:
        zoobot_arm(args, result)
    arms = [*(["zoobot 2.9"] if "zoobot 2.9" in result.arms else []), *OURS]
    rows = [[arm, f"{result.figures_of(arm)['kaggle_rmse']:.4f}", f"{result.figures_of(arm)['train_images_per_s']:.1f}"]
            for arm in arms]
    if "per_column_mean_rmse" in result.figures:
        rows.append(["per-column mean of the train split", f"{result.figures['per_column_mean_rmse']:.4f}", ""])
    result.note(f"GZ2 test split, {args.arch} at {args.size} px, {args.minutes:g} min budget each")
    result.table(["model", "Kaggle RMSE", "training images/s"], rows, arms=arms)
