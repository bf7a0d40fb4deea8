"""Parity with zoobot 2.9: the same timm encoder and GZ2 images, features through each tool's own loading path (issue #25).

    python -m benchmarks zoobot_parity [--galaxies 100] [--size 224] [--arch convnext_nano]
        [--write-reference] [--skip-zoobot]

Two timm / Hugging Face folders, each put into a Hugging Face cache of this script's own
(huggingface_hub's layout) and loaded by name on both sides with ``HF_HUB_OFFLINE=1``:

- ``hf_hub:local/published``: a seeded, untrained ``--arch`` written by timm's ``save_for_hf``
  as ``pytorch_model.bin``, the way Zoobot publishes its encoders. galaxymorph feeds it with
  ``--preprocessing zoobot``; zoobot as it feeds every encoder (no mean/std).
- ``hf_hub:local/exported``: a seeded, untrained galaxymorph ``--arch`` model made with the
  zoobot preprocessing and inputs normalised by mean 0.5, std 0.5, written by ``galaxymorph
  export``. galaxymorph feeds it as the folder says; zoobot with galaxy-datasets' ``normalize``
  set to the ``mean`` and ``std`` of the folder's ``pretrained_cfg`` (what docs/finetune.md tells
  zoobot users to do).

Each side, as a user runs it:

- galaxymorph: ``galaxymorph.representations.embed("hf_hub:local/...", ...)``, what ``galaxymorph
  embed --checkpoint hf_hub:local/...`` runs; features from the embeddings Parquet file.
- zoobot 2.9, in its own environment: the encoder as ``FinetuneableZoobotClassifier(name=...)``
  loads it, images through ``predict_on_catalog.predict`` with galaxy-datasets'
  ``minimal_view_config`` at ``--size`` (zoobot's inference view). zoobot's ``ZoobotEncoder``
  cannot predict from a catalogue in 2.9 (its ``predict_step`` passes the whole batch dict to
  the encoder), so a subclass takes ``batch["image"]``.

Both read the same catalogue of the first ``--galaxies`` GZ2 JPEGs. Recorded per encoder: the
largest absolute feature difference, and the largest relative one (per galaxy, the largest
difference over the largest absolute feature of zoobot's). The goal is under 1e-4 relative.
``--write-reference`` also writes zoobot's view of two small simulated galaxies into
tests/data/zoobot_view/, which tests/test_zoobot_preset.py compares galaxymorph's preset with.
``--tiny`` (what the tests run) uses timm's tiny test_convnext and 4 galaxies of the GZ2
stand-in at 32 px, and skips zoobot's side.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import timm
import torch
from PIL import Image

from benchmarks._harness import ROOT, Result
from benchmarks._shared import (
    add_gz2_option,
    gz2_jpeg_catalogue,
    offline_hub,
    put_in_hub_cache,
    run_zoobot_child,
    zoobot_python,
    zoobot_skip_reason,
)

TINY = {"arch": "test_convnext", "size": 32, "galaxies": 4}
REFERENCE = ROOT / "tests" / "data" / "zoobot_view"
REFERENCE_SIZE = 24  # px of the reference views: a few KB in the repository

ZOOBOT_CHILD = r'''
"""Runs in the zoobot environment: encoder features as zoobot 2.9 computes them, plus optional reference views."""
import json, sys
import numpy as np
import pandas as pd
import torch
from galaxy_datasets.pytorch.galaxy_dataset import load_img_file
from galaxy_datasets.transforms import get_galaxy_transform, minimal_view_config
from zoobot.pytorch.predictions import predict_on_catalog
from zoobot.pytorch.training.finetune import FinetuneableZoobotClassifier
from zoobot.pytorch.training.representations import ZoobotEncoder

job = json.load(open(sys.argv[1]))


def view(size, greyscale=False, normalize=False):
    config = minimal_view_config()
    config.output_size, config.greyscale, config.normalize = size, greyscale, normalize
    return get_galaxy_transform(config)


class Encoder(ZoobotEncoder):
    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return self(batch["image"])


catalog = pd.read_csv(job["catalogue"], dtype={"id_str": str})
for encoder_job in job["encoders"]:
    encoder = FinetuneableZoobotClassifier(name=encoder_job["name"], num_classes=2).encoder.eval()
    cfg = encoder.pretrained_cfg
    normalize = {"mean": list(cfg["mean"]), "std": list(cfg["std"])} if encoder_job["normalize"] else False
    columns = [f"f{i}" for i in range(encoder.num_features)]
    frame = predict_on_catalog.predict(
        catalog, Encoder(encoder), encoder_job["out_csv"], columns, view(job["size"], normalize=normalize),
        datamodule_kwargs={"batch_size": 25, "num_workers": 0},
        trainer_kwargs={"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                        "enable_checkpointing": False, "enable_model_summary": False})
    np.save(encoder_job["out_features"], frame[columns].to_numpy(np.float32))
if job.get("reference_images"):
    views = {}
    for path in job["reference_images"]:
        stem = path.rsplit("/", 1)[-1].replace(".", "_")
        for greyscale in (False, True):
            pixels = view(job["reference_size"], greyscale)(load_img_file(path)) * 255  # k / 255 exactly: back to uint8
            views[f"{stem}_{'grey' if greyscale else 'rgb'}"] = pixels.round().to(torch.uint8).permute(1, 2, 0).numpy()
    np.savez_compressed(job["out_reference"], **views)
'''


def encoder_folders(work: Path, arch: str, size: int) -> dict[str, Path]:
    """The two timm folders of the module docstring, by hub repository id."""
    from galaxymorph.data.transforms import preset_preprocessing
    from galaxymorph.models import GalaxyModel, export_encoder, save_model

    for name in ("published", "run", "exported"):
        shutil.rmtree(work / name, ignore_errors=True)  # this script's own
    torch.manual_seed(0)
    timm.models.save_for_hf(timm.create_model(arch, num_classes=0), work / "published", safe_serialization=False)
    model = GalaxyModel("gz2", arch=arch, preprocessing=preset_preprocessing("zoobot", size).to_dict(),
                        input_mean=0.5, input_std=0.5)
    save_model(model, work / "run" / "best")
    return {"local/published": work / "published", "local/exported": export_encoder(work / "run", work / "exported")}


def simulated_galaxies(folder: Path, n: int, size: int) -> list[Path]:
    """``n`` simulated galaxies (``size`` px), alternately JPEG and PNG."""
    from galaxymorph.simulate import simulate

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, pixels in enumerate(simulate(n, size, seed=0).images):
        path = folder / f"galaxy{i}.{'jpg' if i % 2 == 0 else 'png'}"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def galaxymorph_features(name: str, options: dict[str, Any], catalogue: Path, out: Path) -> np.ndarray:
    """``galaxymorph.representations.embed`` (what ``galaxymorph embed`` runs) of the catalogue, by hub name."""
    from galaxymorph.representations import embed, read_embeddings

    out.unlink(missing_ok=True)
    embed(name, out, catalogue=catalogue, batch_size=25, progress=False, accelerator="cpu", **options)
    frame, vectors, _ = read_embeddings(out)
    order = pd.read_csv(catalogue, dtype={"id_str": str})["id_str"]
    return vectors[pd.Index(frame["id_str"]).get_indexer(order)]


def compare(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    """Largest absolute difference, and per galaxy the largest difference over zoobot's largest absolute feature."""
    diff = np.abs(ours.astype(np.float64) - theirs)
    scale = np.abs(theirs).max(axis=1)
    return {"max_abs_difference": float(diff.max()), "max_relative_difference": float((diff.max(axis=1) / scale).max()),
            "feature_scale_median": float(np.median(scale))}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gz2_option(parser)
    parser.add_argument("--galaxies", type=int, default=100)
    parser.add_argument("--size", type=int, default=224, help="px, both sides (zoobot's default output_size)")
    parser.add_argument("--arch", default="convnext_nano", help="the untrained encoders' architecture")
    parser.add_argument("--write-reference", action="store_true", help="also write tests/data/zoobot_view/")
    parser.add_argument("--skip-zoobot", action="store_true", help="galaxymorph's side only")


def measure(args: argparse.Namespace, result: Result) -> None:
    work = args.work
    catalogue = gz2_jpeg_catalogue(args, args.galaxies)
    cache = work / "hf_cache"
    shutil.rmtree(cache, ignore_errors=True)
    options = {"local/published": {"preprocessing": "zoobot", "image_size": args.size}, "local/exported": {}}
    ours = {}
    for repo_id, folder in encoder_folders(work, args.arch, args.size).items():
        put_in_hub_cache(folder, repo_id, cache)
    with offline_hub(cache):
        for repo_id, settings in options.items():
            ours[repo_id] = galaxymorph_features(f"hf_hub:{repo_id}", settings, catalogue,
                                                 work / f"{repo_id.split('/')[1]}_embeddings.parquet")
            result.arm(repo_id, n_features=int(ours[repo_id].shape[1]))
    result.figures["galaxies"] = len(catalogue.read_text().splitlines()) - 1
    reason = "--skip-zoobot" if args.skip_zoobot else zoobot_skip_reason(args)
    if reason:
        result.skip("zoobot 2.9", reason)
    else:
        job: dict[str, Any] = {"catalogue": str(catalogue), "size": args.size, "encoders": [
            {"name": f"hf_hub:{repo_id}", "normalize": repo_id == "local/exported",
             "out_csv": str(work / f"zoobot_{i}.csv"), "out_features": str(work / f"zoobot_{i}.npy")}
            for i, repo_id in enumerate(ours)]}
        if args.write_reference:
            REFERENCE.mkdir(parents=True, exist_ok=True)
            images = simulated_galaxies(work / "reference", 2, 64)
            for image in images:
                shutil.copyfile(image, REFERENCE / image.name)
            job.update(reference_images=[str(REFERENCE / i.name) for i in images], reference_size=REFERENCE_SIZE,
                       out_reference=str(REFERENCE / "zoobot_views.npz"))
        python = zoobot_python(args)
        with offline_hub(cache) as env:
            run_zoobot_child(python, ZOOBOT_CHILD, job, work, env)
        for (repo_id, features), encoder_job in zip(ours.items(), job["encoders"]):
            result.arm(repo_id, **compare(features, np.load(encoder_job["out_features"])))
    result.note(f"{args.arch}, {result.figures['galaxies']} GZ2 images at {args.size} px; zoobot 2.9: "
                + (f"not run ({reason})" if reason else "FinetuneableZoobotClassifier(name=...), predict_on_catalog, "
                   "minimal_view_config"))
    measured = "max_relative_difference" in result.arms["local/published"]
    result.table(["encoder", "features", "largest difference", "largest relative difference", "median feature scale"],
                 [[repo_id, str(a["n_features"]),
                   *((f"{a['max_abs_difference']:.1e}", f"{a['max_relative_difference']:.1e}",
                      f"{a['feature_scale_median']:.2f}") if measured else ("", "", ""))]
                  for repo_id, a in result.arms.items()], arms=list(result.arms),
                 align=["---", "---:", "---:", "---:", "---:"])
