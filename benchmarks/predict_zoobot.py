"""Prediction from a JPEG catalogue against zoobot 2.9's ``predict_on_catalog`` (issue #13), and resume identity.

Issue #13 asks for at least 3x zoobot's galaxies/s on the same model size (5 MC samples,
2 loader workers, 64 px, CPU), and for output that does not depend on whether the run was
killed and resumed. Both sides read the same catalogue CSV (``id_str, file_loc``) of the real
GZ2 JPEGs (424 px) and run the same weights: an untrained efficientnet_b0 (batch-norm
statistics from 128 real galaxies) with a 37-answer Dirichlet head, dropout 0.2.

    python -m benchmarks predict_zoobot [--galaxies N] [--repeats 1] [--samples 5]
        [--size 64] [--batch-size 64] [--workers 2] [--threads 1] [--skip-one-decode] [--signal KILL]
        [--backends eager openvino]

What each side does per galaxy:

- zoobot 2.9: ``predict_on_catalog.predict`` has no samples argument (earlier versions had
  ``n_samples``, one ``trainer.predict`` each), so 5 samples are 5 calls, each decoding the
  full 424 px JPEG (PIL, no draft), warping it with galaxy-datasets' ``minimal_view_config``
  (``RandomAffine`` with a fixed 1.2 zoom, at 424 px), resizing to --size (antialiased),
  normalising as our model does ((x - 0.5) / 0.5) and running encoder and head. The model
  is ``ZoobotTree(test_time_dropout=True)``: the default (False) gives 5 identical
  "samples", and its ``predict_step`` is overridden to take ``batch["image"]``, because
  2.9's gives CatalogDataset's dict batch to ``forward`` and fails. Unless
  --skip-one-decode, a second zoobot row decodes once and runs the whole network 5 times
  per batch in one call, which separates the decoding from the encoder-once saving.
- galaxymorph: ``predict_records`` (what ``galaxymorph predict --catalog`` runs after loading
  the model), with the GZ2 benchmarks' preprocessing: libjpeg decodes at 1/2 scale (212 px),
  the central 0.65 is resized to 96 px, the batch's central 0.75 to --size (antialiased);
  the encoder runs once, the head 5 times; posterior summaries are written to Parquet. Each of
  ``--backends`` (``predict --backend``: what runs the encoder) is a side of its own, its
  conversion inside the time.

Each run is a fresh process (ours forked from a server that imported galaxymorph and ran
nothing); only the predict call is timed (model construction and imports excluded on both
sides). Torch threads are set to --threads on both sides (zoobot's ``OMP_NUM_THREADS`` too).
The sides alternate (ours, zoobot, ours, ...) so the shared machine's
load hits both alike. Then ours is run once more, killed (SIGKILL by default) after about half
of its parts were written, resumed, and compared with the first uninterrupted output
(and with --repeats 2 or more, two uninterrupted outputs with each other): every column,
rows in id order. The predictor draws each galaxy's dropout masks from its id_str, so the
outputs should agree to float32 rounding (batches differ after a resume); a difference as
large as the spread over MC samples would mean other masks. With ``--tiny`` zoobot's
environment is not built: ours runs alone (resume check included) on a stand-in for GZ2.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from safetensors.torch import save_file
from torch import nn

from benchmarks._harness import Result
from benchmarks._shared import (
    GZ2_PREPROCESSING,
    TINY_ARCH,
    add_gz2_option,
    gz2_jpeg_catalogue,
    zoobot_python,
    zoobot_skip_reason,
)
from galaxymorph.data.transforms import Preprocessing, eval_transform
from galaxymorph.models import GalaxyModel, load_model, save_model
from galaxymorph.prediction import parts_dir, predict_records, read_concentrations
from galaxymorph.prediction.layout import read_metadata
from galaxymorph.prediction.parts import PART
from galaxymorph.schema import get_schema

TINY = {"galaxies": 16, "arch": TINY_ARCH, "size": 16, "batch_size": 4, "workers": 0}

ZOOBOT_CHILD = r'''
"""Runs inside the zoobot venv: zoobot 2.9's predict_on_catalog.predict, timed (model construction excluded)."""
import json, sys, time
import numpy as np
import pandas as pd
import torch
from galaxy_datasets.transforms import get_galaxy_transform, minimal_view_config
from zoobot.pytorch.estimators import define_model
from zoobot.pytorch.predictions import predict_on_catalog
from zoobot.shared.schemas import Schema
from safetensors.torch import load_file

job = json.load(open(sys.argv[1]))
torch.set_num_threads(job["threads"])


class Tree(define_model.ZoobotTree):
    """2.9's ZoobotTree.predict_step gives CatalogDataset's dict batch to forward (AttributeError): take the image."""
    passes = 1  # full forward passes per batch: 1 = zoobot's way, one call per sample

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return torch.cat([self(batch["image"]) for _ in range(self.passes)], dim=1)


questions = job["tree"]["questions"]
pairs = {q["name"]: ["_" + a for a in q["answers"]] for q in questions}
# zoobot allows one parent per question; GZ2's questions 5 and 6 have several: keep the first
schema = Schema(pairs, {q["name"]: (q["after"][0] if q["after"] else None) for q in questions})
model = Tree(output_dim=len(schema.label_cols), question_answer_pairs=pairs, dependencies=schema.dependencies,
             architecture_name=job["arch"], test_time_dropout=True)
missing, unexpected = model.load_state_dict(load_file(job["weights"]), strict=False)
assert not unexpected and not [k for k in missing if k.startswith(("encoder.", "head."))], (missing, unexpected)
model.eval()
config = minimal_view_config()
config.output_size = job["size"]
config.normalize = {"mean": [0.5] * 3, "std": [0.5] * 3}  # as our model normalises inside: the same inputs to the weights
transform = get_galaxy_transform(config)
catalog = pd.read_csv(job["catalogue"], dtype={"id_str": str})
kwargs = dict(datamodule_kwargs={"batch_size": job["batch_size"], "num_workers": job["workers"]},
              trainer_kwargs={"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                              "enable_checkpointing": False, "enable_model_summary": False})
out, samples, info = job["out"], job["samples"], {}

start = time.perf_counter()
frames = [predict_on_catalog.predict(catalog, model, f"{out}/zoobot_sample{s}.csv", schema.label_cols, transform, **kwargs)
          for s in range(samples)]
info["predict x N"] = time.perf_counter() - start
conc = np.stack([f[schema.label_cols].to_numpy() for f in frames], axis=-1)
assert conc.shape == (len(catalog), len(schema.label_cols), samples), conc.shape
assert all(f["id_str"].tolist() == catalog["id_str"].tolist() for f in frames)
info["sample_spread"] = float(conc.std(axis=-1).mean())  # > 0: dropout was on

if job["one_decode"]:
    model.passes = samples
    columns = [f"{c}@{s}" for s in range(samples) for c in schema.label_cols]
    start = time.perf_counter()
    frame = predict_on_catalog.predict(catalog, model, f"{out}/zoobot_one_decode.csv", columns, transform, **kwargs)
    info["one decode, N passes"] = time.perf_counter() - start
    assert len(frame) == len(catalog)
json.dump(info, open(job["info"], "w"))
'''

# sides that lower the precision: name -> (predict --backend, --precision)
REDUCED_PRECISION = {"openvino-bf16": ("openvino", "bf16-mixed")}


def backend_and_precision(side: str) -> tuple[str, str]:
    """What a ``--backends`` side runs: predict's ``--backend`` and ``--precision``."""
    return REDUCED_PRECISION.get(side, (side, "32-true"))


def untrained_model(arch: str, prep: Preprocessing, images: torch.Tensor) -> GalaxyModel:
    """A random gz2 model (seed 0) in eval mode whose batch-norm statistics come from ``images`` (model inputs).

    Random weights do not change the time, but eval-mode batch norm with its initial
    statistics lets an untrained efficientnet's activations fade to ~1e-6: every galaxy
    would get the same output and dropout would move nothing, so neither a resume check nor
    a comparison of two backends could tell anything apart.
    """
    torch.manual_seed(0)
    model = GalaxyModel("gz2", arch=arch, preprocessing=prep.to_dict())
    for layer in model.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.reset_running_stats()
            layer.momentum = None  # a plain average over the batches
    model.train()
    with torch.no_grad():
        for batch in images.split(64):
            model.features(batch)
    return model.eval()


def untrained_checkpoint(work: Path, arch: str, size: int, catalogue: Path) -> tuple[Path, Path]:
    """An untrained GZ2 model (:func:`untrained_model`, statistics from 128 real galaxies), saved as training saves
    it, and its weights in zoobot's names (the same model both sides)."""
    prep = replace(GZ2_PREPROCESSING, image_size=size, stored_size=round(size * 1.5))  # 96 px stored at 64
    files = pd.read_csv(catalogue)["file_loc"][:128]
    images = eval_transform(prep)(torch.stack([torch.from_numpy(prep.read(f)).permute(2, 0, 1) for f in files]))
    model = untrained_model(arch, prep, images)
    folder = save_model(model, work / f"model_{arch}_{size}px")
    # ZoobotTree: encoder = the same timm model, head = Sequential(Dropout, Sequential(Linear, ScaledSigmoid))
    weights = {f"encoder.{k}": v for k, v in model.encoder.state_dict().items()}
    weights.update({f"head.1.0.{k}": v for k, v in model.head.linear.state_dict().items()})
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "zoobot.safetensors"))
    return folder, folder / "zoobot.safetensors"


def ours_child(job_file: Path) -> None:
    """One galaxymorph prediction in its own process, as ``galaxymorph predict`` would run it (so it can be killed).

    ``predict_records`` rather than ``predict`` so that the model's loading stays out of the
    time, and for ``rows_per_part``: the CLI's 50,000 rows per part would leave nothing to
    resume from in a 10,000-galaxy run.
    """
    from galaxymorph.data.inputs import prediction_records

    job = json.loads(job_file.read_text())
    torch.set_num_threads(job["threads"])
    model = load_model(job["checkpoint"])
    records = prediction_records(None, job["catalogue"], None, None, model.config["preprocessing"])
    start = time.perf_counter()
    backend, precision = backend_and_precision(job["backend"])
    counts = predict_records(model, records, job["out"], samples=job["samples"], batch_size=job["batch_size"],
                             workers=job["workers"], accelerator="cpu", rows_per_part=job["rows_per_part"],
                             progress=False, backend=backend, precision=precision)
    Path(job["info"]).write_text(json.dumps({"seconds": time.perf_counter() - start, **counts}))


def child_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}


def ours_process(job_file: Path, log: Path) -> None:
    """A child of ours: its own session (a kill reaches its loader workers too), its output to ``log``."""
    os.setsid()
    output = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(output, 1)
    os.dup2(output, 2)
    warnings.simplefilter("ignore")
    ours_child(job_file)


def start_ours(job: dict[str, Any], out: Path, name: str, work: Path) -> tuple[multiprocessing.Process, Path]:
    """Start one galaxymorph child writing ``out``; returns it and the file its timing will be written to.

    Children are forked from a server that imported galaxymorph once and ran nothing: fresh
    processes (no threads, no state of this one) without an interpreter's start-up each.
    """
    job = {**job, "out": str(out), "info": str(work / f"{name}.json")}
    job_file = work / f"{name}_job.json"
    job_file.write_text(json.dumps(job))
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(["benchmarks.predict_zoobot"])
    process = forkserver.Process(target=ours_process, args=(job_file, work / f"{name}.log"))
    process.start()
    return process, Path(job["info"])


def finish(exitcode: int, info: Path) -> dict[str, Any]:
    if exitcode != 0:
        log = Path(str(info).removesuffix(".json") + ".log")
        raise SystemExit(f"child failed (exit {exitcode}), see {log}:\n{log.read_text()[-3000:]}")
    return json.loads(info.read_text())


def finish_ours(process: multiprocessing.Process, info: Path) -> dict[str, Any]:
    process.join()
    return finish(process.exitcode, info)


def clean(out: Path) -> None:
    """A fresh output: a leftover file or parts folder would be resumed from instead of predicted."""
    out.unlink(missing_ok=True)
    shutil.rmtree(parts_dir(out), ignore_errors=True)


def run_ours(job: dict[str, Any], out: Path, name: str, work: Path) -> dict[str, Any]:
    clean(out)
    return finish_ours(*start_ours(job, out, name, work))


def run_zoobot(python: Path, job: dict[str, Any], name: str, work: Path) -> dict[str, Any]:
    job = {**job, "out": str(work), "info": str(work / f"{name}.json")}
    (work / f"{name}_job.json").write_text(json.dumps(job))
    with open(work / f"{name}.log", "w") as log:
        process = subprocess.run([str(python), str(work / "zoobot_child.py"), str(work / f"{name}_job.json")],
                                 stdout=log, stderr=subprocess.STDOUT, env=child_env(job["threads"]))
    return finish(process.returncode, work / f"{name}.json")


def complete_parts(out: Path) -> list[Path]:
    return sorted(parts_dir(out).glob(PART))


def killed_and_resumed(job: dict[str, Any], out: Path, work: Path, kill_after: int, sig: signal.Signals) -> dict[str, Any]:
    """Start ours, kill its process group once ``kill_after`` parts are complete, resume; what each stage left."""
    clean(out)
    process, _ = start_ours(job, out, "ours_killed", work)
    while len(complete_parts(out)) < kill_after and process.is_alive():
        time.sleep(0.02)
    if not process.is_alive():
        return {"killed": False, "note": f"finished (exit {process.exitcode}) before {kill_after} parts were written"}
    os.killpg(process.pid, sig)  # the loader workers too, as a job scheduler or an OOM kill would
    process.join()
    parts, kept = complete_parts(out), set()
    for part in parts:
        kept.update(pq.read_table(part, columns=["id_str"]).column("id_str").to_pylist())
    resumed = finish_ours(*start_ours(job, out, "ours_resumed", work))
    return {"killed": True, "signal": sig.name, "exit": process.exitcode, "parts_kept": len(parts),
            "rows_kept": len(kept), "kept_ids": kept, "resume_seconds": resumed["seconds"], "resume_new": resumed["new"]}


def compare(reference: Path, other: Path, kept: set[str] | None = None) -> dict[str, Any]:
    """Whether two outputs are identical (every column, rows in id order) and, if not, where they differ."""
    a, b = (pq.read_table(p).sort_by("id_str") for p in (reference, other))
    ids = a.column("id_str").to_pylist()
    result: dict[str, Any] = {"rows": [a.num_rows, b.num_rows], "same_ids": ids == b.column("id_str").to_pylist()}
    result["identical"] = result["same_ids"] and a.equals(b)
    if not result["same_ids"] or result["identical"]:
        return result
    schema, _ = read_metadata(reference)
    ca, cb = (read_concentrations(t, schema) for t in (a, b))
    same_row = np.all(ca == cb, axis=(1, 2))
    fractions = [f"{x}_fraction" for x in schema.answers]
    fa, fb = (t.select(fractions).to_pandas().to_numpy() for t in (a, b))
    # against the spread over MC samples: a difference of that size means other dropout masks, far less float noise
    result.update(rows_identical=int(same_row.sum()), sample_spread_concentration=float(ca.std(axis=-1).mean()),
                  mean_abs_diff_concentration=float(np.abs(ca - cb).mean()),
                  max_abs_diff_concentration=float(np.abs(ca - cb).max()),
                  max_abs_diff_fraction=float(np.abs(fa - fb).max()))
    if kept is not None:
        in_kept = np.isin(ids, list(kept))
        result["kept_rows_identical"] = f"{int(same_row[in_kept].sum())}/{int(in_kept.sum())}"
        result["resumed_rows_identical"] = f"{int(same_row[~in_kept].sum())}/{int((~in_kept).sum())}"
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gz2_option(parser)
    parser.add_argument("--galaxies", type=int, default=None, help="first N JPEGs by name (default all 9,728)")
    parser.add_argument("--repeats", type=int, default=1, help="ours/zoobot alternations")
    parser.add_argument("--samples", type=int, default=5, help="MC-dropout samples, both sides")
    parser.add_argument("--size", type=int, default=64, help="model input px, both sides")
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--batch-size", type=int, default=64, help="both sides")
    parser.add_argument("--workers", type=int, default=2, help="loader workers, both sides")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides (2 on 2 cores beside the "
                        "loader workers or other jobs ran the encoder 2-4x slower)")
    parser.add_argument("--rows-per-part", type=int, default=None, help="ours (default: a tenth of the galaxies, "
                        "at least a batch), so the kill finds parts to resume from")
    parser.add_argument("--signal", choices=["KILL", "INT", "TERM"], default="KILL", help="how the resume run is stopped")
    parser.add_argument("--skip-one-decode", action="store_true", help="only zoobot's own way (one call per sample)")
    parser.add_argument("--backends", nargs="+", default=["eager"],
                        choices=["eager", "onnx", "openvino", "auto", *REDUCED_PRECISION],
                        help="what runs our encoder (predict --backend; an exported one's conversion is inside the "
                        "time): each is a side of its own, the first is the one resumed; openvino-bf16 is "
                        "--backend openvino --precision bf16-mixed (CPUs with bf16 instructions)")


def our_side(backend: str, backends: list[str]) -> str:
    """Our side's name: as it always was with one backend, else naming the backend."""
    if len(backends) == 1:
        return "galaxymorph predict"
    options, precision = backend_and_precision(backend)
    return f"galaxymorph predict --backend {options}" + (f" --precision {precision}" if precision != "32-true" else "")


def measure(args: argparse.Namespace, result: Result) -> None:
    work = args.work
    catalogue = gz2_jpeg_catalogue(args, args.galaxies)
    galaxies = len(pd.read_csv(catalogue))
    rows_per_part = args.rows_per_part or max(args.batch_size, galaxies // 10)
    result.figures.update(galaxies=galaxies, rows_per_part=rows_per_part)
    common = {"catalogue": str(catalogue), "samples": args.samples, "batch_size": args.batch_size,
              "workers": args.workers, "threads": args.threads}
    checkpoint, zoobot_weights = untrained_checkpoint(work, args.arch, args.size, catalogue)
    ours_job = {**common, "checkpoint": str(checkpoint), "rows_per_part": rows_per_part, "backend": args.backends[0]}
    zoobot_job = {**common, "arch": args.arch, "size": args.size, "tree": get_schema("gz2").to_dict(),
                  "weights": str(zoobot_weights), "one_decode": not args.skip_one_decode}
    reason = zoobot_skip_reason(args)
    if reason:
        result.skip("zoobot 2.9", reason)
    else:
        python = zoobot_python(args)
        (work / "zoobot_child.py").write_text(ZOOBOT_CHILD)

    seconds: dict[str, list[float]] = {}
    for r in range(args.repeats):
        for backend in args.backends:
            name = f"ours_r{r}" if backend == args.backends[0] else f"ours_{backend}_r{r}"
            ours = run_ours({**ours_job, "backend": backend}, work / f"{name}.parquet", name, work)
            seconds.setdefault(our_side(backend, args.backends), []).append(ours["seconds"])
            print(f"[{r}] galaxymorph ({backend}): {galaxies / ours['seconds']:.1f} galaxies/s "
                  f"({ours['seconds']:.1f} s)", flush=True)
        if reason:
            continue
        zoobot = run_zoobot(python, zoobot_job, f"zoobot_r{r}", work)
        result.figures["zoobot_sample_spread"] = zoobot["sample_spread"]
        for variant in ("predict x N", "one decode, N passes"):
            if variant in zoobot:
                seconds.setdefault(f"zoobot 2.9 {variant}", []).append(zoobot[variant])
                print(f"[{r}] zoobot 2.9 ({variant}): {galaxies / zoobot[variant]:.1f} galaxies/s "
                      f"({zoobot[variant]:.1f} s; sample spread {zoobot['sample_spread']:.3g})", flush=True)
    for side, times in seconds.items():
        result.arm(side, galaxies_per_s=galaxies * len(times) / sum(times), seconds=times)

    reference = work / "ours_r0.parquet"
    if args.repeats > 1:
        result.figures["uninterrupted_runs_compared"] = compare(reference, work / "ours_r1.parquet")
    parts = -(-galaxies // rows_per_part)
    resumed_out = work / "ours_resumed.parquet"
    resume = killed_and_resumed(ours_job, resumed_out, work, max(1, parts // 2), signal.Signals[f"SIG{args.signal}"])
    kept = resume.pop("kept_ids", None)
    if resume["killed"]:
        resume["comparison"] = compare(reference, resumed_out, kept)
    result.figures["resume"] = resume

    ours = our_side(args.backends[0], args.backends)
    result.note(f"{galaxies} GZ2 JPEGs, {args.arch} at {args.size} px, {args.samples} samples, batch {args.batch_size}, "
                f"{args.workers} workers, {args.threads} threads, {args.repeats} repeat(s)")
    zoobot = "zoobot 2.9 predict x N"
    against_zoobot = zoobot in result.arms and len(args.backends) > 1  # each of our backends against zoobot's way
    result.table(["side", "galaxies/s", "galaxymorph / this", *(["this / zoobot 2.9"] if against_zoobot else [])],
                 [[side, f"{a['galaxies_per_s']:.1f}", "" if side == ours else f"{result.ratio(ours, side, 'galaxies_per_s'):.2f}x",
                   *([f"{result.ratio(side, zoobot, 'galaxies_per_s'):.2f}x"] if against_zoobot else [])]
                  for side, a in result.arms.items()], arms=list(result.arms))
    if args.repeats > 1:
        identity = result.figures["uninterrupted_runs_compared"]
        result.note(f"two uninterrupted runs identical: {identity['identical']}"
                    + ("" if identity["identical"] else f" ({json.dumps(identity)})"))
    if resume["killed"]:
        comparison = resume["comparison"]
        result.note(f"killed ({resume['signal']}) with {resume['rows_kept']} rows in {resume['parts_kept']} parts, "
                    f"resumed {resume['resume_new']} more: identical to the uninterrupted run: {comparison['identical']}"
                    + ("" if comparison["identical"] else f" ({json.dumps(comparison)})"))
    else:
        result.note(f"resume not tested: {resume['note']}")

