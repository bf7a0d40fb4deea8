"""Side by side with the public Zoobot (2.9, PyPI): same GZ2 split, image size, architecture
and wall-clock budget; both scored the same way (Kaggle RMSE of the test split, our code).

Zoobot runs in its own virtual environment (runs/bench_train/zoobot-train-venv) holding
zoobot and its own dependencies (galaxy-datasets, wandb, ...). torch, timm and Lightning
come from the project venv through a .pth file: this machine cannot fetch another torch,
and zoobot's ``[pytorch]`` extra is installed without torchaudio, which training never
imports. Zoobot's rough edges worked around here: ``train_default_zoobot_from_scratch`` has
no time cap (a Lightning ``Timer`` callback is passed), it always runs a test step (given the
validation catalogue so it is cheap and does not touch our test split), and it returns the
last model: the best checkpoint is loaded for scoring instead. Missing questions (NaN) are
given 0 votes for zoobot, which its loss treats as not asked.

    .venv/bin/python benchmarks/bench_train_zoobot.py --minutes 35 [--size 64] [--arch efficientnet_b0]
        [--batch-size 64] [--workers 2] [--threads 1] [--epochs 36] [--skip-ours]

Ours is trained by benchmarks/bench_train_gz2.py with the same budget (its run is reused when
it exists). Zoobot images: the full 424 px JPEGs through galaxy-datasets' ``default_view_config``
for training (random affine: rotation up to 90 degrees, zoom 1.2-1.4, shift, shear; flips;
random erasing) and ``minimal_view_config`` (fixed 1.2 zoom) for the test split, resized to
--size; ours: shards (central 0.65 of the frame at 96 px) and our transforms resized to --size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pandas as pd
from bench_train_common import GZ2, SPLIT_SEED, WORK, hhmmss

from galaxymorph.data.shards import assign_splits
from galaxymorph.kaggle import kaggle_rmse, to_kaggle
from galaxymorph.schema import get_schema
from galaxymorph.stats import expected_fractions

VENV = WORK / "zoobot-train-venv"
ZOOBOT_PACKAGES = ["zoobot==2.9.*", "galaxy-datasets>=0.0.25", "litmodels", "wandb", "h5py", "huggingface_hub"]

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


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        venv.create(VENV, with_pip=True)
        site = next(VENV.glob("lib/python*/site-packages"))
        (site / "project-venv.pth").write_text("\n".join(sys.path[1:]) + "\n")  # torch, timm, lightning
        subprocess.run([str(python), "-m", "pip", "install", "-q", *ZOOBOT_PACKAGES], check=True)
    return python


def catalogues(work: Path) -> dict[str, str]:
    """Zoobot catalogues of our split: absolute JPEG paths, the same vote counts (NaN -> 0)."""
    table = pd.read_parquet(WORK / "gz2_catalogue.parquet")
    schema = get_schema("gz2")
    zoobot = table[["id_str", *schema.answers]].copy()
    zoobot[list(schema.answers)] = zoobot[list(schema.answers)].fillna(0)
    zoobot["file_loc"] = [str(GZ2 / "images" / f"{i}.jpg") for i in zoobot["id_str"]]
    split = assign_splits(zoobot["id_str"], SPLIT_SEED, 0.1, 0.1)
    paths = {}
    for name in ("train", "val", "test"):
        paths[name] = str(work / f"zoobot_{name}.parquet")
        zoobot[split == name].reset_index(drop=True).to_parquet(paths[name])
    return paths


def score(conc: np.ndarray, ids: list[str]) -> float:
    table = pd.read_parquet(WORK / "gz2_catalogue.parquet").set_index("id_str")
    truth = table.loc[ids, [c for c in table.columns if c.startswith("kaggle:")]].to_numpy()
    schema = get_schema("gz2")
    return kaggle_rmse(to_kaggle(expected_fractions(conc, schema), schema), truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=35)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="loader workers, both sides")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides (1: least contention on 2 shared cores)")
    parser.add_argument("--epochs", type=int, default=36, help="our cosine schedule (36 fill ~26 min on 2 quiet cores)")
    parser.add_argument("--skip-ours", action="store_true", help="only zoobot (ours from bench_train_gz2.py)")
    args = parser.parse_args()
    if not args.skip_ours:
        subprocess.run([sys.executable, str(Path(__file__).with_name("bench_train_gz2.py")), "--minutes", str(args.minutes),
                        "--size", str(args.size), "--arch", args.arch, "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
                        "--threads", str(args.threads), "--workers", str(args.workers)], check=True)
    python = ensure_venv()
    work = WORK / f"zoobot_{args.arch}_{args.size}px_{args.minutes:g}min_{args.threads}threads"
    work.mkdir(parents=True, exist_ok=True)
    paths = catalogues(work)
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
    zoobot_rmse = score(np.load(work / "test_concentrations.npy"), ids)
    # the latest finished run of bench_train_gz2.py with this budget (any epoch count)
    ours = sorted(WORK.glob(f"gz2_{args.arch}_{args.size}px_{args.minutes:g}min_*ep/bench_result.json"),
                  key=lambda p: p.stat().st_mtime)
    print(f"\nGZ2 test split, {args.arch} at {args.size} px, {args.minutes:g} min budget each")
    print("| model | Kaggle RMSE | training images/s |\n|---|---|---|")
    print(f"| zoobot 2.9 (best checkpoint) | {zoobot_rmse:.4f} | {info['images_per_second']:.1f} |")
    if ours:
        result = json.loads(ours[-1].read_text())
        rate = result.get("images_per_second", float("nan"))
        print(f"| galaxymorph (single view) | {result['results']['single view']['kaggle_rmse']:.4f} | {rate:.1f} |")


if __name__ == "__main__":
    main()
