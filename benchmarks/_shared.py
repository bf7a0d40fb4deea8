"""What several benchmarks need: GZ2 data (real, or a stand-in at ``--tiny``), shards, the test split's
predictions through ``galaxymorph.prediction``, a throughput probe, simulated inputs, and the zoobot environment.

Caches that benchmarks share (the GZ2 catalogue and shards, the zoobot environment) live in
the work root's ``shared/`` folder (``args.shared``); a benchmark's own files in ``args.work``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import venv
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from benchmarks._harness import ROOT, Result
from galaxymorph.data.kaggle_gz2 import kaggle_to_catalogue
from galaxymorph.data.shards import assign_splits, write_shards
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.evaluation import evaluate
from galaxymorph.files import atomic_path
from galaxymorph.kaggle import kaggle_columns, kaggle_rmse, to_kaggle
from galaxymorph.models import load_model
from galaxymorph.prediction import predict
from galaxymorph.prediction.layout import arrow_schema, posterior_table
from galaxymorph.schema import Question, Schema, get_schema
from galaxymorph.simulate import simulate_catalogue
from galaxymorph.training import TrainConfig, train

GZ2 = Path(os.environ.get("GALAXYMORPH_GZ2", ROOT.parent / "shared" / "data" / "gz2_kaggle"))  # another checkout: set it
# The galaxy sits in the central ~207 of 424 px; keep 0.65 of the frame (276 px) so the
# 0.7-0.8 training zoom-crop still covers it, store at 96 px, train at 64 px.
GZ2_PREPROCESSING = Preprocessing(stored_size=96, source_crop=0.65, image_size=64, channels=3)
TINY_GZ2_PREPROCESSING = Preprocessing(stored_size=24, source_crop=0.65, image_size=16, channels=3)
SPLIT_SEED = 0  # fixed train/val/test split (80/10/10 by hash of id_str): the same for every benchmark
TINY_ARCH = "test_resnet"  # timm's smallest: --tiny checks the code path, not the model


# ----------------------------------------------------------------- GZ2


def add_gz2_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gz2", type=Path, default=GZ2,
                        help="the Kaggle GZ2 folder (labels.csv, images/); --tiny makes a small stand-in instead")


def gz2_folder(args: argparse.Namespace) -> Path:
    """The Kaggle GZ2 folder: ``--gz2``, or with ``--tiny`` a stand-in of random galaxies (no real data needed)."""
    if args.tiny:
        return fake_gz2(args.shared / "fake_gz2")
    if not (args.gz2 / "labels.csv").is_file():
        raise SystemExit(f"--gz2 {args.gz2}: no labels.csv there (the Kaggle GZ2 folder; --tiny runs without it)")
    return args.gz2


def fake_gz2(folder: Path, galaxies: int = 60, px: int = 48, seed: int = 0) -> Path:
    """A Kaggle-format stand-in for GZ2: ``labels.csv`` with consistent cumulative fractions and blob JPEGs."""
    if (folder / "labels.csv").is_file():
        return folder
    schema, rng = get_schema("gz2"), np.random.default_rng(seed)
    fractions = np.concatenate([rng.dirichlet(np.ones(len(q.answers)), galaxies) for q in schema.questions], axis=1)
    labels = pd.DataFrame(to_kaggle(fractions, schema), columns=list(kaggle_columns(schema)))
    labels.insert(0, "GalaxyID", np.arange(100000, 100000 + galaxies))
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".fake_gz2-"))
    (staging / "images").mkdir()
    yy, xx = np.mgrid[:px, :px] - px / 2
    for galaxy in labels["GalaxyID"]:
        width = rng.uniform(2, px / 4)
        blob = np.exp(-(xx**2 + yy**2) / (2 * width**2))[..., None] * rng.uniform(80, 255, 3)
        pixels = np.clip(blob + rng.normal(10, 5, (px, px, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(staging / "images" / f"{galaxy}.jpg", quality=90)
    labels.to_csv(staging / "labels.csv", index=False)
    staging.rename(folder)
    return folder


def gz2_jpeg_catalogue(args: argparse.Namespace, galaxies: int | None) -> Path:
    """A catalogue (``id_str``, absolute ``file_loc``) of the first ``galaxies`` GZ2 JPEGs by file name, in ``args.work``."""
    folder = gz2_folder(args).resolve() / "images"
    files = sorted(folder.glob("*.jpg"))[:galaxies]
    if not files:
        raise SystemExit(f"no GZ2 JPEGs in {folder}")
    path = args.work / f"catalogue_{len(files)}.csv"
    pd.DataFrame({"id_str": [f.stem for f in files], "file_loc": [str(f) for f in files]}).to_csv(path, index=False)
    return path


def gz2_preprocessing(args: argparse.Namespace) -> Preprocessing:
    return TINY_GZ2_PREPROCESSING if args.tiny else GZ2_PREPROCESSING


def gz2_catalogue(args: argparse.Namespace) -> Path:
    """The ``gz2`` catalogue of the Kaggle folder (vote counts and the ``kaggle:`` fractions), written once."""
    out = args.shared / "gz2_catalogue.parquet"
    if not out.is_file():
        source = gz2_folder(args)
        kaggle_to_catalogue(source / "labels.csv", source / "images", out=out)
    return out


def gz2_shards(args: argparse.Namespace, prep: Preprocessing | None = None, workers: int = 2,
               catalogue: Path | None = None) -> Path:
    """GZ2 catalogue (or a part of it, ``catalogue``) -> shards (80/10/10 split, :data:`SPLIT_SEED`), once
    (resumable); returns the shard folder, named by the pixels' settings and the catalogue part."""
    prep = prep or gz2_preprocessing(args)
    normalised = "".join(f"_{name}" for name in ("size_crop", "photometry") if getattr(prep, name) is not None)
    part = f"_{catalogue.stem}" if catalogue is not None else ""
    out = args.shared / f"gz2_shards_{prep.stored_size}px_crop{prep.source_crop}{normalised}{part}"
    if not (out / "manifest.json").is_file():
        write_shards(catalogue or gz2_catalogue(args), "gz2", out, prep, val_fraction=0.1, test_fraction=0.1,
                     seed=SPLIT_SEED, workers=workers, shard_size=20 if args.tiny else 500, progress=False)
    return out


def central_crops(sources: pd.Series, folder: Path, fraction: float) -> pd.Series:
    """PNG path by id (``sources``' index): each image's central square of ``fraction`` of its shorter side.

    Whole pixels, written losslessly and once (a file already there is kept), so the images
    another tool reads hold exactly the pixels of that square.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = pd.Series([str(folder / f"{i}.png") for i in sources.index], index=sources.index)
    for source, target in zip(sources, paths):
        if not Path(target).is_file():
            with Image.open(source) as image, atomic_path(target) as tmp:
                side = round(fraction * min(image.size))
                left, top = (image.width - side) // 2, (image.height - side) // 2
                image.crop((left, top, left + side, top + side)).save(tmp, format="PNG")
    return paths


def kaggle_truth(catalogue: Path) -> pd.DataFrame:
    """Kaggle cumulative fractions by id_str (the catalogue keeps them as ``kaggle:ClassX.Y``)."""
    return pd.read_parquet(catalogue).set_index("id_str")[[f"kaggle:{k}" for k in kaggle_columns()]]


# ----------------------------------------------------------------- simulated galaxies


def simulated_shards(args: argparse.Namespace, n: int, sim_size: int, size: int, workers: int) -> tuple[Path, Path]:
    """``n`` simulated gz_decals_dr5 galaxies at ``sim_size`` px, sharded (80/10/10), once; (catalogue, shards)."""
    sim = args.shared / f"sim_{n}_{sim_size}px"
    if not (sim / "catalogue.parquet").is_file():
        simulate_catalogue(n, sim_size, sim, seed=0, workers=workers, progress=False)
    shards = args.shared / f"sim_{n}_{sim_size}px_shards"  # ``size`` is only the shards' default model input
    if not (shards / "manifest.json").is_file():
        prep = Preprocessing(stored_size=sim_size, source_crop=1.0, image_size=size, channels=3)
        write_shards(sim / "catalogue.parquet", "gz_decals_dr5", shards, prep, seed=0, workers=workers,
                     shard_size=20 if args.tiny else 500, progress=False)
    return sim / "catalogue.parquet", shards


def add_demo_options(parser: argparse.ArgumentParser) -> None:
    """``--shards`` and ``--catalogue`` of a demo run (``make demo`` writes both)."""
    parser.add_argument("--shards", type=Path, help="e.g. demo_output/shards (--tiny: a small simulated set)")
    parser.add_argument("--catalogue", type=Path, help="e.g. demo_output/simulation/catalogue.parquet")


def demo_inputs(args: argparse.Namespace) -> tuple[Path, Path]:
    """(shards, catalogue): as given, or with ``--tiny`` 60 simulated galaxies sharded here."""
    if args.shards and args.catalogue:
        return args.shards, args.catalogue
    if not args.tiny:
        raise SystemExit("give --shards and --catalogue (make demo writes demo_output/shards and "
                         "demo_output/simulation/catalogue.parquet), or run with --tiny")
    catalogue, shards = simulated_shards(args, 60, 24, 16, workers=1)
    return shards, catalogue


def simulated_loss_inputs(schema: Schema, batch: int, volunteers: int = 40, seed: int = 0) -> dict[str, Any]:
    """Votes flowing down the tree (a question gets the votes of the answers leading to it) and head-like concentrations."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((batch, schema.n_answers))
    for q in schema.topological_order:
        parents = list(schema.parent_answers[q])
        reached = np.minimum(counts[:, parents].sum(axis=1), volunteers) if parents else np.full(batch, volunteers)
        answers = schema.slices[q]
        fractions = rng.dirichlet(np.ones(answers.stop - answers.start), size=batch)
        counts[:, answers] = rng.multinomial(reached.astype(np.int64), fractions)
    concentrations = 1 + 99 / (1 + np.exp(-rng.normal(0, 2, size=counts.shape)))
    return {
        "concentrations": torch.tensor(concentrations, dtype=torch.float32),
        "counts": torch.tensor(counts, dtype=torch.float32),
        "questions": [[q.name, list(q.columns)] for q in schema.questions],
    }


# Large synthetic predictions files in the real ``predict`` layout, written fast: one block of rows
# is built with ``posterior_table`` (the posterior summaries are the slow part) and written again
# under new ids, one row group per block, as ``predict`` writes them.
TWO = Schema("two", [Question("shape", ("round", "disk")), Question("bar", ("yes", "no"), after=("shape_disk",))])


def write_predictions(path: Path, n: int, samples: int = 5, block: int = 50_000, seed: int = 0,
                      schema: Schema = TWO) -> Path:
    """``n`` rows of predictions (ids ``g0`` ... ``g{n-1}``), ``block`` rows per row group."""
    rng = np.random.default_rng(seed)
    layout = arrow_schema(schema, samples, {})
    conc = rng.uniform(1, 20, (min(block, n), schema.n_answers, samples))
    template = posterior_table([""] * len(conc), conc, [""] * len(conc), schema, layout)  # no image to decode
    with pq.ParquetWriter(path, layout) as writer:
        for start in range(0, n, block):
            rows = template.slice(0, min(block, n - start))
            ids = pa.array([f"g{i}" for i in range(start, start + len(rows))], pa.string())
            writer.write_table(rows.set_column(0, "id_str", ids))
    return path


def write_catalogue(path: Path, n: int, volunteers: int = 5, seed: int = 1, schema: Schema = TWO) -> Path:
    """A Parquet catalogue of the same ``n`` ids with up to ``volunteers`` votes per question, independent per galaxy."""
    rng = np.random.default_rng(seed)
    votes = rng.integers(0, volunteers + 1, (n, schema.n_answers)).astype(np.float64)
    frame = pd.DataFrame(votes, columns=list(schema.answers))
    frame.insert(0, "id_str", [f"g{i}" for i in range(n)])
    frame.to_parquet(path, index=False)
    return path


# ----------------------------------------------------------------- training and prediction


def add_shift_option(parser: argparse.ArgumentParser) -> None:
    """``--shift``: the training crop's largest offset (``TrainConfig.train_shift``)."""
    parser.add_argument("--shift", type=float, default=None,
                        help="largest training-crop offset, fraction of the frame (default: the shards', 0.03; 0.5: anywhere)")


def shift_suffix(shift: float | None) -> str:
    """Run-folder suffix for a ``--shift`` given on the command line, so runs of other settings never resume each other."""
    return "" if shift is None else f"_shift{shift:g}"


def hhmmss(minutes: float) -> str:
    """A budget in minutes as Lightning's ``HH:MM:SS`` ``max_time``."""
    seconds = int(minutes * 60)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def add_training_options(parser: argparse.ArgumentParser, epochs: int, minutes: float | None) -> None:
    """The settings every GZ2 or simulated training benchmark takes (``--minutes`` caps a run; none: no cap)."""
    parser.add_argument("--minutes", type=float, default=minutes, help="wall-clock cap of each training run")
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--size", type=int, default=64, help="model input px")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=epochs, help="cosine schedule length; --minutes caps the run")
    parser.add_argument("--lr", type=float, default=1e-3)
    add_shift_option(parser)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--workers", type=int, default=1, help="loader workers")
    parser.add_argument("--samples", type=int, default=5, help="MC-dropout samples per view at test time")


# One batch per epoch at --tiny: a last batch of one galaxy would stop batch norm at these tiny inputs.
TINY_TRAINING = {"minutes": 2, "arch": TINY_ARCH, "size": 16, "batch_size": 64, "epochs": 1, "threads": 1,
                 "workers": 0, "samples": 2}


def training_config(args: argparse.Namespace, shards: Path, run: Path, **changes: Any) -> TrainConfig:
    """The run's settings from the command line (early stopping off: the schedule runs out), with ``changes``."""
    settings = dict(shards=str(shards), out=str(run), arch=args.arch, size=args.size, batch_size=args.batch_size,
                    epochs=args.epochs, lr=args.lr, train_shift=args.shift, threads=args.threads,
                    workers=args.workers, patience=args.epochs, progress=False,
                    max_time=hhmmss(args.minutes) if args.minutes else None)
    return TrainConfig(**{**settings, **changes})


def train_timed(config: TrainConfig, callbacks: list[L.Callback] = ()) -> tuple[Path, float, int]:
    """Train (or resume) a run: its best model folder, this call's minutes, and the epochs the run has done."""
    start = time.perf_counter()
    best = train(config, callbacks=list(callbacks))
    minutes = (time.perf_counter() - start) / 60
    return best, minutes, int(pd.read_csv(Path(config.out) / "metrics.csv")["epoch"].max()) + 1


def test_split_metrics(model: Any, shards: Path, catalogue: Path, out: Path, samples: int = 5,
                       tta: bool = False) -> dict[str, Any]:
    """``galaxymorph evaluate``'s metrics of the shards' test split predicted by ``galaxymorph.prediction``.

    The two steps users run, so the figures are the library's. ``out`` is this benchmark's
    own predictions file: one left by an earlier call is replaced (the model may have
    trained further since).
    """
    out.unlink(missing_ok=True)
    predict(model, out, shards=shards, split="test", samples=samples, tta=tta, batch_size=128, progress=False)
    return evaluate(out, catalogue)


def train_split_mean_rmse(catalogue: Path, test_ids: list[str]) -> float:
    """Kaggle RMSE of the test galaxies predicted as the train split's per-column mean (the baseline)."""
    truth = kaggle_truth(catalogue)
    in_train = assign_splits(truth.index.to_numpy(), SPLIT_SEED, 0.1, 0.1) == "train"
    target = truth.loc[test_ids].to_numpy()
    return kaggle_rmse(np.broadcast_to(truth[in_train].mean().to_numpy(), target.shape), target)


def gz2_run_folder(args: argparse.Namespace) -> str:
    """The GZ2 run's folder name: its settings, so that runs of other settings never resume each other."""
    return f"gz2_{args.arch}_{args.size}px_{args.minutes:g}min_{args.epochs}ep{shift_suffix(args.shift)}"


def train_gz2_arms(args: argparse.Namespace, result: Result, run: Path, library: str = "galaxymorph") -> list[str]:
    """Train on the GZ2 shards under the budget (or resume), score the test split from a single view and
    averaged over 8 rotation/flip views; records and returns the two arms."""
    shards, catalogue = gz2_shards(args), gz2_catalogue(args)
    probe = Throughput(warmup=5, steps=10**9, stop=False)
    best, minutes, epochs = train_timed(training_config(args, shards, run), [probe])
    model = load_model(best)
    arms = []
    for view, tta in (("single view", False), ("8-view TTA", True)):
        out = args.work / f"{run.name}_test_{'tta' if tta else 'single'}.parquet"
        evaluation = test_split_metrics(model, shards, catalogue, out, args.samples, tta)
        overall = evaluation["overall"]
        arms.append(f"{library}, {view}")
        result.arm(arms[-1], kaggle_rmse=overall["kaggle_rmse"]["model"], coverage_50=overall["coverage"]["0.5"],
                   coverage_90=overall["coverage"]["0.9"], test_galaxies=evaluation["galaxies"],
                   train_minutes=minutes, epochs=epochs, train_images_per_s=probe.images_per_second)
    test_ids = pd.read_parquet(out, columns=["id_str"])["id_str"].tolist()
    result.figures["per_column_mean_rmse"] = train_split_mean_rmse(catalogue, test_ids)
    return arms


class Throughput(L.Callback):
    """Training images per second: time between consecutive training batch ends (data loading
    included) after ``warmup`` steps, skipping the gaps that contain a validation run.

    With ``stop=True`` the run ends after ``steps`` measured steps.
    """

    def __init__(self, warmup: int = 5, steps: int = 30, stop: bool = True) -> None:
        self.warmup, self.steps, self.stop = warmup, steps, stop
        self.images, self.seconds, self.last_end = 0, 0.0, None

    def on_validation_start(self, trainer, pl_module) -> None:
        self.last_end = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self.last_end is not None and trainer.global_step > self.warmup:
            self.seconds += now - self.last_end
            self.images += batch["image"].shape[0]
        self.last_end = now
        if self.stop and trainer.global_step >= self.warmup + self.steps:
            trainer.should_stop = True

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else float("nan")


# ----------------------------------------------------------------- zoobot


ZOOBOT_PACKAGES = ("zoobot==2.9.*", "galaxy-datasets>=0.0.25", "litmodels", "wandb", "h5py", "huggingface_hub",
                   "pyro-ppl==1.9.*", "pyro-api", "opt_einsum")


def zoobot_python(args: argparse.Namespace) -> Path:
    """The python of zoobot 2.9's own environment (``shared/zoobot-venv``), built on first use.

    zoobot, galaxy-datasets and pyro (Zoobot 2.0's loss) with their own dependencies; torch,
    timm and Lightning come from this project's environment through a ``.pth`` file (no second
    torch download; this machine caps its version). galaxymorph itself stays out: its editable
    install is a ``.pth`` in our site-packages, and ``.pth`` files of a path added that way are
    not read. Rebuilt when the package list changes or a build was interrupted.
    """
    folder = args.shared / "zoobot-venv"
    python, ready = folder / "bin" / "python", folder / ".ready"
    wanted = "\n".join(ZOOBOT_PACKAGES)
    if ready.is_file() and ready.read_text() == wanted:
        return python
    print(f"building {folder} (once) ...", flush=True)
    venv.create(folder, clear=True, with_pip=True)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "project-venv.pth").write_text(f"{Path(torch.__file__).resolve().parents[1]}\n")
    subprocess.run([python, "-m", "pip", "install", "--quiet", *ZOOBOT_PACKAGES], check=True)
    ready.write_text(wanted)
    return python


def zoobot_skip_reason(args: argparse.Namespace) -> str | None:
    """Why the zoobot arm does not run here (None: it does): ``--tiny`` never builds its environment."""
    return "--tiny: zoobot's environment is not built (it needs the network and minutes)" if args.tiny else None


def put_in_hub_cache(folder: Path, repo_id: str, cache: Path) -> Path:
    """``folder``'s files as revision ``main`` of ``repo_id`` in Hugging Face cache ``cache``, laid out by huggingface_hub.

    The blobs, the snapshot's links to them and ``refs/main`` are made by the same huggingface_hub
    functions ``hf_hub_download`` uses, so the cache reads as if the files were downloaded.
    Returns the snapshot folder.
    """
    from huggingface_hub.file_download import (
        _cache_commit_hash_for_specific_revision,
        _create_symlink,
        _get_pointer_path,
        repo_folder_name,
    )

    storage = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    files = sorted(p for p in folder.iterdir() if p.is_file())
    commit = hashlib.sha1(b"".join(p.name.encode() + p.read_bytes() for p in files)).hexdigest()
    for path in files:
        blob = storage / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, blob)
        pointer = Path(_get_pointer_path(str(storage), commit, path.name))
        pointer.parent.mkdir(parents=True, exist_ok=True)
        _create_symlink(str(blob), str(pointer), new_blob=True)
    _cache_commit_hash_for_specific_revision(str(storage), "main", commit)
    return storage / "snapshots" / commit


@contextlib.contextmanager
def offline_hub(cache: Path) -> Iterator[dict[str, str]]:
    """Hub names resolve only from ``cache``, here and in child processes (given the environment yielded)."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE
    constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = str(cache), True
    try:
        yield {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    finally:
        constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = saved


def run_zoobot_child(python: Path, script: str, job: dict[str, Any], work: Path, env: dict[str, str]) -> None:
    """Run ``script`` in zoobot's environment with ``job`` as its JSON argument; its output goes to ``zoobot.log``."""
    (work / "zoobot_child.py").write_text(script)
    (work / "zoobot_job.json").write_text(json.dumps(job))
    with open(work / "zoobot.log", "w") as log:
        done = subprocess.run([str(python), str(work / "zoobot_child.py"), str(work / "zoobot_job.json")],
                              stdout=log, stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        raise SystemExit(f"zoobot's side failed (exit {done.returncode}); its output: {work / 'zoobot.log'}")
