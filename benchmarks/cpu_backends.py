"""Prediction at the CPU's limit (issue #29): the bare encoder per backend, the whole predict, and where the rest goes.

    python -m benchmarks cpu_backends [--archs ...] [--sizes 64 224] [--threads 1 2]
        [--backends eager compile onnx openvino int8-onnx int8-openvino] [--galaxies 300] [--accuracy]

Side by side in one process, alternating, because these machines are shared:

1. **Encoders.** For each architecture and input size: FLOPs per image (``torch.utils.flop_counter``),
   then images/s of the bare encoder (``model.features``: normalisation and forward, one batch, after a
   warm-up, median of interleaved rounds) for each backend at each thread count, and the share of the
   float32 GEMM rate the same threads reach (a 2048^3 matmul: the machine's practical peak). Backends:
   eager PyTorch; ``torch.compile`` (inductor, frozen weights); onnxruntime and OpenVINO as
   ``predict --backend`` builds them; int8 (onnxruntime's static QDQ quantization, per-channel weights,
   calibrated on other galaxies than those timed) run by onnxruntime and by OpenVINO; bf16 autocast only
   where the CPU has bf16 instructions (avx512_bf16 or AMX), and there OpenVINO in bf16 too (``predict --backend
   openvino --precision bf16-mixed``). Each backend's vote fractions (5 keyed MC-dropout samples, as predict
   computes them) are compared with eager's on the timed galaxies.
   Weights are random, with batch-norm statistics from real galaxies so that features do not fade.
2. **Pipeline.** ``predict_records`` (what ``predict`` runs after loading the model) over the same
   galaxies from a JPEG catalogue and from shards, 2 loader workers, 1 torch thread, for eager and the
   exported backends (their conversion inside the time), with 1 and 5 samples: in all, and after the
   first batch; and each stage alone on the same galaxies (reading and decoding without a model, the
   evaluation transform, the encoder, the head's samples, the posterior summaries written to Parquet),
   from which the most galaxies/s a predict could reach: the main process's stages one after another,
   and every core's time shared between them and the decoding.
3. **Accuracy** (``--accuracy``): a model trained for a few minutes per seed on the GZ2 shards; its
   test-split Kaggle RMSE and interval coverage with eager PyTorch and with each reduced-precision
   backend, the change set against the spread over seeds (a backend is offered only within it); and
   ``export --onnx`` run by onnxruntime against ``predict --samples 1``'s concentrations on 16 real GZ2
   galaxies.
"""

from __future__ import annotations

import argparse
import gc
import io
import itertools
import math
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from benchmarks._harness import Result
from benchmarks._shared import (
    TINY_ARCH,
    add_gz2_option,
    gz2_catalogue,
    gz2_folder,
    gz2_preprocessing,
    gz2_shards,
    hhmmss,
    kaggle_truth,
)
from benchmarks.predict_zoobot import untrained_model
from galaxymorph.data.inputs import (
    GalaxyStream,
    Records,
    catalogue_records,
    collate_galaxies,
)
from galaxymorph.data.shards import write_shards
from galaxymorph.data.transforms import Preprocessing, eval_transform
from galaxymorph.engine import GalaxyInputs, RunSettings, run_over_galaxies
from galaxymorph.evaluation import evaluate_arrays
from galaxymorph.models import GalaxyModel, load_model
from galaxymorph.models.head import galaxy_keys
from galaxymorph.models.onnx import export_onnx, onnx_graph, quiet_exporter
from galaxymorph.prediction import (
    predict,
    predict_records,
    read_concentrations,
    read_predictions,
)
from galaxymorph.prediction.backends import (
    encoder_backend,
    installed,
    onnxruntime_encoder,
    openvino_encoder,
    openvino_model,
)
from galaxymorph.prediction.layout import output_format
from galaxymorph.prediction.mc_dropout import MCDropoutPredictor, posterior
from galaxymorph.prediction.parts import PartWriter
from galaxymorph.schema import get_schema
from galaxymorph.stats import expected_fractions
from galaxymorph.training import TrainConfig, train

SAMPLES = 5
BACKENDS = ("eager", "compile", "onnx", "openvino", "int8-onnx", "int8-openvino", "bf16", "openvino-bf16")
BF16 = ("bf16", "openvino-bf16")  # run only where the CPU has bf16 instructions
TINY = {"archs": [TINY_ARCH], "sizes": [16], "threads": [1], "batch": 8, "galaxies": 16, "rounds": 1,
        "round_seconds": 0.0, "backends": ["eager", "onnx", "int8-onnx"], "pipeline_arch": TINY_ARCH,
        "pipeline_backends": ["eager"], "samples": [2], "workers": 2, "pipeline_rounds": 1}
Encode = Callable[[torch.Tensor], torch.Tensor]
# the one-off steps (Conversions) each backend needs before its first batch
STEPS = {"eager": (), "bf16": (), "compile": ("compile",), "onnx": ("onnx",), "openvino": ("openvino",),
         "openvino-bf16": ("openvino",),
         "int8-onnx": ("onnx", "int8-onnx"), "int8-openvino": ("onnx", "int8-onnx", "int8-openvino")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gz2_option(parser)
    parser.add_argument("--archs", nargs="+", default=["efficientnet_b0", "resnet18", "resnet10t", "convnext_nano"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 224])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=None,
                        help="default: every one installed (bf16 and openvino-bf16 only with bf16 instructions)")
    parser.add_argument("--batch", type=int, default=64, help="images per encoder call (and per predict batch)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (the median is kept)")
    parser.add_argument("--round-seconds", type=float, default=1.0, help="each backend's time per round, at least")
    parser.add_argument("--skip-encoders", action="store_true")
    parser.add_argument("--galaxies", type=int, default=300, help="through the whole predict (JPEGs and shards)")
    parser.add_argument("--pipeline-arch", default="efficientnet_b0", help="the whole predict's model (64 px)")
    parser.add_argument("--pipeline-backends", nargs="+", default=["eager", "onnx", "openvino"],
                        choices=["eager", "onnx", "openvino"])
    parser.add_argument("--samples", nargs="+", type=int, default=[1, 5], help="MC samples in the whole predict")
    parser.add_argument("--workers", type=int, default=2, help="loader workers in the whole predict")
    parser.add_argument("--pipeline-rounds", type=int, default=2)
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--accuracy", action="store_true", help="train on GZ2 (one model per seed), then the reduced-"
                        "precision backends' test-split RMSE and coverage beside eager's, and export parity")
    parser.add_argument("--accuracy-arch", default="resnet18")
    parser.add_argument("--accuracy-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--accuracy-minutes", type=float, default=8.0, help="training time per seed")
    parser.add_argument("--accuracy-epochs", type=int, default=3, help="cosine schedule length (the minutes cap it)")
    parser.add_argument("--accuracy-backends", nargs="+", default=["int8-onnx", "int8-openvino"], choices=BACKENDS)


# ------------------------------------------------------------------ the machine, the inputs
def gemm_gflops(threads: int, n: int = 2048, seconds: float = 1.0) -> float:
    """float32 GFLOP/s of an n^3 matmul on ``threads``: the practical peak the encoders are set against."""
    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        done += 1
    return 2 * n**3 * done / (time.perf_counter() - start) / 1e9


def runnable(backend: str, flags: list[str]) -> str | None:
    """Why ``backend`` cannot run here (None: it can)."""
    if backend in BF16 and not {"avx512_bf16", "amx_bf16"} & set(flags):
        return "no bf16 instructions (avx512_bf16, amx_bf16) on this CPU: bf16 would be emulated"
    package = backend.removeprefix("int8-").removesuffix("-bf16")
    if package in ("onnx", "openvino") and not installed(package):
        return f"{package} is not installed (pip install 'galaxymorph[{package}]')"
    return None


def pixels(files: list[Path], prep: Preprocessing) -> torch.Tensor:
    """uint8 (N, C, stored, stored): the files read as predict reads them."""
    return torch.stack([torch.from_numpy(prep.read(f)).permute(2, 0, 1) for f in files])


# ------------------------------------------------------------------ encoders
def flops_per_image(model: GalaxyModel, image: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.features(image[None])
    return float(counter.get_total_flops())


def int8_graph(graph: bytes, calibration: torch.Tensor) -> bytes:
    """onnxruntime's static int8 quantization (QDQ, per-channel weights, uint8 activations) of a float32 graph."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"images": b.numpy()} for b in calibration.split(16)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp, quiet_exporter():
        source, prepared, quantized = (Path(tmp) / name for name in ("f32.onnx", "pre.onnx", "int8.onnx"))
        source.write_bytes(graph)
        quant_pre_process(str(source), str(prepared))
        quantize_static(str(prepared), str(quantized), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return quantized.read_bytes()


class Conversions:
    """Each backend's one-off work for a model (export, conversion, quantization, compilation), done once and timed."""

    def __init__(self, model: GalaxyModel, calibration: torch.Tensor, batch: int):
        self.model, self.calibration, self.batch = model, calibration, batch
        self.seconds: dict[str, float] = {}
        self._cache: dict[str, Any] = {}

    def _once(self, name: str, make: Callable[[], Any]) -> Any:
        if name not in self._cache:
            start = time.perf_counter()
            self._cache[name] = make()
            self.seconds[name] = time.perf_counter() - start
        return self._cache[name]

    def graph(self) -> bytes:
        return self._once("onnx", lambda: onnx_graph(self.model, self.model.features, ["features"]))

    def encoder(self, backend: str, threads: int) -> Encode:
        """``backend``'s encoder on ``threads`` (onnxruntime and OpenVINO fix their threads when built)."""
        model = self.model
        if backend == "eager":
            return model.features
        if backend == "bf16":
            return lambda images: _bf16(model, images)
        if backend == "compile":
            return self._once("compile", lambda: compiled(model, self.batch))
        if backend == "onnx":
            return onnxruntime_encoder(self.graph(), threads)
        if backend in ("openvino", "openvino-bf16"):
            return openvino_encoder(self._once("openvino", lambda: openvino_model(model)), threads,
                                    "bf16" if backend in BF16 else "f32")
        int8 = self._once("int8-onnx", lambda: int8_graph(self.graph(), self.calibration))
        if backend == "int8-onnx":
            return onnxruntime_encoder(int8, threads)
        import openvino

        return openvino_encoder(self._once("int8-openvino", lambda: openvino.convert_model(io.BytesIO(int8))), threads)


def _bf16(model: GalaxyModel, images: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return model.features(images).float()


def compiled(model: GalaxyModel, batch: int) -> Encode:
    """``model.features`` by inductor with frozen weights (constant-folded, prepacked), compiled on a first call."""
    import torch._inductor.config as inductor

    inductor.freezing = True
    function = torch.compile(model.features, dynamic=False)
    prep = model.config["preprocessing"]
    with torch.no_grad():
        function(torch.rand(batch, prep["channels"], prep["image_size"], prep["image_size"]))
    return function


def timed_rates(encoders: dict[str, Encode], images: torch.Tensor, rounds: int, seconds: float) -> dict[str, float]:
    """Images/s of each encoder on ``images`` (one batch): median of ``rounds`` interleaved rounds of >= ``seconds``."""
    repeats: dict[str, int] = {}
    with torch.no_grad():
        for name, encode in encoders.items():  # warm-up, and how many calls fill a round
            encode(images)
            start = time.perf_counter()
            encode(images)
            repeats[name] = max(1, math.ceil(seconds / (time.perf_counter() - start)))
        rates: dict[str, list[float]] = {name: [] for name in encoders}
        for _ in range(rounds):
            for name, encode in encoders.items():
                start = time.perf_counter()
                for _ in range(repeats[name]):
                    encode(images)
                rates[name].append(len(images) * repeats[name] / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


def fractions(model: GalaxyModel, images: torch.Tensor, encode: Encode) -> np.ndarray:
    """Vote fractions as predict computes them: the encoder by ``encode``, 5 keyed MC-dropout samples of the head."""
    keys = galaxy_keys([f"g{i}" for i in range(len(images))])
    with torch.no_grad():
        samples, _ = posterior(model, images, SAMPLES, keys=keys, encode=encode)
    return expected_fractions(samples.float().numpy(), model.schema)


def encoder_arm(arch: str, size: int, threads: int, backend: str) -> str:
    return f"{arch} {size} px, {threads} thread{'s' * (threads > 1)}, {backend}"


def measure_encoders(args: argparse.Namespace, result: Result, arch: str, size: int, stored: torch.Tensor,
                     calibration_stored: torch.Tensor, backends: list[str], peaks: dict[int, float]) -> None:
    """One arm per (threads, backend) for ``arch`` at ``size`` px, and their table."""
    prep = replace(gz2_preprocessing(args), image_size=size)  # the stored pixels' central crop, resized to size
    transform = eval_transform(prep)
    images, calibration = transform(stored), transform(calibration_stored)
    model = untrained_model(arch, prep, calibration)
    flops = flops_per_image(model, images[0])
    conversions = Conversions(model, calibration, args.batch)
    reference = fractions(model, images, model.features)
    rows, arms = [], []
    for threads in args.threads:
        torch.set_num_threads(threads)
        encoders: dict[str, Encode] = {}
        for backend in backends:
            try:
                encoders[backend] = conversions.encoder(backend, threads)
            except Exception as err:  # a backend that cannot take this model is a result, not a crash
                reason = str(err).strip().splitlines()[-1][:160] if str(err).strip() else type(err).__name__
                result.skip(encoder_arm(arch, size, threads, backend), f"conversion failed: {reason}")
        rates = timed_rates(encoders, images, args.rounds, args.round_seconds)
        for backend, encode in encoders.items():
            name = encoder_arm(arch, size, threads, backend)
            achieved = rates[backend] * flops / 1e9
            one_off = sum(conversions.seconds[step] for step in STEPS[backend])
            figures = result.arm(name, images_per_s=rates[backend], gflop_per_image=flops / 1e9, gflops=achieved,
                                 of_gemm_peak=achieved / peaks[threads], one_off_s=one_off,
                                 max_fraction_difference=float(np.abs(fractions(model, images, encode) - reference).max()))
            arms.append(name)
            rows.append([f"{threads}", backend, f"{rates[backend]:.0f}",
                         f"{result.ratio(name, encoder_arm(arch, size, threads, 'eager'), 'images_per_s'):.2f}x",
                         f"{achieved:.1f}", f"{figures['of_gemm_peak']:.0%}", f"{figures['max_fraction_difference']:.1e}",
                         f"{one_off:.0f}" if STEPS[backend] else ""])
    result.table(["threads", "backend", "images/s", "x eager", "GFLOP/s", "of GEMM peak", "max |Δ fraction|",
                  "one-off s"], rows, arms=arms, title=f"{arch} at {size} px: {flops / 1e9:.3f} GFLOP per image, "
                 f"batch {len(images)}", align=["---", "---", "---:", "---:", "---:", "---:", "---:", "---:"])


# ------------------------------------------------------------------ the pipeline
def shard_folder(files: list[Path], prep: Preprocessing, work: Path, batch: int) -> Path:
    """The galaxies of ``files`` as shards (one split, votes all zero: prediction reads only the pixels)."""
    out = work / f"shards_{len(files)}_{prep.stored_size}px"
    if not (out / "manifest.json").is_file():
        schema = get_schema("gz2")
        catalogue = pd.DataFrame({"id_str": [f.stem for f in files], "file_loc": [str(f) for f in files],
                                  **{answer: 0.0 for answer in schema.answers}})
        catalogue.to_parquet(work / "shard_catalogue.parquet")
        write_shards(work / "shard_catalogue.parquet", "gz2", out, prep, val_fraction=0.0, test_fraction=0.0,
                     workers=2, shard_size=max(batch, -(-len(files) // 4)), progress=False)  # 2 shards per worker
    return out


def loader_rate(records: Records, prep: dict[str, Any], workers: int, batch: int) -> float:
    """Galaxies/s of the loader alone (reading and decoding in ``workers`` processes, no model), after its first
    batch (the workers' start-up is a fixed cost, not a rate)."""
    loader = DataLoader(GalaxyStream(records, prep), batch_size=batch, num_workers=workers, collate_fn=collate_galaxies)
    count, start = 0, None
    for part in loader:
        if start is None:
            start = time.perf_counter()
        else:
            count += len(part["id_str"])
    return count / (time.perf_counter() - start) if count else float("nan")


def stage_rates(model: GalaxyModel, stored: torch.Tensor, encode: Encode, samples: int, rounds: int) -> dict[str, float]:
    """Galaxies/s of each main-process stage of a predict step alone, on one batch of ``stored`` pixels."""
    transform = eval_transform(Preprocessing.from_dict(model.config["preprocessing"]))
    ids = [f"g{i}" for i in range(len(stored))]
    keys = galaxy_keys(ids)
    layout, to_table = output_format(model.config, samples, {})
    with torch.no_grad():
        images = transform(stored)
        features = encode(images)
        draws = model.sample(features, samples, keys).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        writer = PartWriter(Path(tmp), layout, rows_per_part=10**9)
        stages = {
            "evaluation transform": lambda: transform(stored),
            "encoder": lambda: encode(images),
            "head samples": lambda: model.sample(features, samples, keys),
            "summaries + Parquet": lambda: writer.write_table(to_table(ids, draws, [None] * len(ids))),
        }
        rates: dict[str, list[float]] = {name: [] for name in stages}
        with torch.no_grad():
            for _ in range(rounds):
                for name, stage in stages.items():
                    start = time.perf_counter()
                    stage()
                    rates[name].append(len(stored) / (time.perf_counter() - start))
        writer.close()
    return {name: statistics.median(r) for name, r in rates.items()}


def ceilings(stages: dict[str, float], decode_main_process: float, cores: int) -> dict[str, float]:
    """The most galaxies/s a predict can reach given its stages' costs: the main process does every stage but decoding,
    one galaxy after another; and every core's time goes to decoding (workers) or to the main process's stages."""
    main = sum(1 / rate for rate in stages.values())  # seconds per galaxy in the main process
    bounds = {"main process": 1 / main, "all cores": cores / (main + 1 / decode_main_process)}
    return {**bounds, "ceiling": min(bounds.values())}


class AfterFirstBatch(Callback):
    """When the first batch was done and how many galaxies came after it: the rate once conversion and start-up are past."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.galaxies = 0

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.start is None:
            self.start = time.perf_counter()
        else:
            self.galaxies += len(batch["id_str"])


def whole_predict(model: GalaxyModel, records: Records, out: Path, backend: str, samples: int,
                  args: argparse.Namespace) -> tuple[float, float]:
    """Galaxies/s of predict_records over ``records`` into a fresh ``out``: in all (conversion and start-up included),
    and after the first batch."""
    after = AfterFirstBatch()
    start = time.perf_counter()
    with quiet_exporter():
        counts = predict_records(model, records, out, samples=samples, batch_size=args.batch, workers=args.workers,
                                 accelerator="cpu", progress=False, backend=backend, callbacks=[after])
    end = time.perf_counter()
    out.unlink()
    return counts["rows"] / (end - start), after.galaxies / (end - after.start) if after.galaxies else float("nan")


def measure_pipeline(args: argparse.Namespace, result: Result, files: list[Path]) -> None:
    """Whole predict from JPEGs and from shards per backend, beside each stage alone (1 thread)."""
    torch.set_num_threads(1)
    prep = gz2_preprocessing(args)
    stored = pixels(files[:args.batch], prep)
    model = untrained_model(args.pipeline_arch, prep, eval_transform(prep)(stored))
    inputs = {"JPEG catalogue": Records(listed=catalogue_records(pd.DataFrame(
                  {"id_str": [f.stem for f in files], "file_loc": [str(f) for f in files]}))),
              "shards": Records.from_shards(shard_folder(files, prep, args.work, args.batch))}
    backends = [b for b in args.pipeline_backends if installed(b)]
    figures = result.figures.setdefault("pipeline", {"arch": args.pipeline_arch, "size": prep.image_size,
                                                     "galaxies": len(files), "workers": args.workers})
    figures["decode_per_s"] = {name: loader_rate(r, prep.to_dict(), args.workers, args.batch) for name, r in inputs.items()}
    figures["decode_main_process_per_s"] = {name: loader_rate(r, prep.to_dict(), 0, args.batch)
                                            for name, r in inputs.items()}
    figures["conversion_s"], figures["stages_per_s"] = {}, {}
    for backend in backends:
        start = time.perf_counter()
        with quiet_exporter():
            _, encode = encoder_backend(model, backend)
        figures["conversion_s"][backend] = time.perf_counter() - start  # what predict does as it starts
        for samples in args.samples:
            figures["stages_per_s"][f"{backend}, {samples} samples"] = stage_rates(model, stored, encode, samples,
                                                                                   max(3, args.rounds))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    figures["ceilings_per_s"] = {f"{name}, {arm}": ceilings(stages, figures["decode_main_process_per_s"][name], cores)
                                 for name in inputs for arm, stages in figures["stages_per_s"].items()}
    runs: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    for _ in range(args.pipeline_rounds):  # alternating, so the shared machine's load hits every arm alike
        for name, records in inputs.items():
            for backend in backends:
                for samples in args.samples:
                    runs.setdefault((name, backend, samples), []).append(
                        whole_predict(model, records, args.work / "predict.parquet", backend, samples, args))
    for key, rates in runs.items():
        result.arm(pipeline_arm(*key), galaxies_per_s=statistics.median(r[0] for r in rates),
                   after_first_batch_per_s=statistics.median(r[1] for r in rates), rounds=len(rates))
    pipeline_tables(result, figures, list(runs))


def pipeline_arm(source: str, backend: str, samples: int) -> str:
    return f"predict, {source}, {backend}, {samples} sample{'s' * (samples > 1)}"


def pipeline_tables(result: Result, p: dict[str, Any], keys: list[tuple[str, str, int]]) -> None:
    result.note(f"{p['arch']} at {p['size']} px, {p['galaxies']} galaxies, batch {result.data['settings']['batch']}, "
                f"{p['workers']} loader workers, 1 torch thread; the conversion as predict starts (inside the rates "
                "in all): " + (", ".join(f"{b} {s:.0f} s" for b, s in p["conversion_s"].items() if b != "eager")
                               or "none"))
    rows = []
    for source, backend, samples in keys:
        arm = result.arms[pipeline_arm(source, backend, samples)]
        ratio = result.ratio(pipeline_arm(source, backend, samples), pipeline_arm(source, "eager", samples),
                             "after_first_batch_per_s")
        rows.append([source, backend, f"{samples}", f"{arm['galaxies_per_s']:.0f}",
                     f"{arm['after_first_batch_per_s']:.0f}", f"{ratio:.2f}x"])
    result.table(["input", "backend", "samples", "galaxies/s in all", "after the first batch", "x eager (after)"],
                 rows, arms=[pipeline_arm(*key) for key in keys], title="The whole predict",
                 align=["---", "---", "---:", "---:", "---:", "---:"])
    rows = []
    for name, rate in p["decode_per_s"].items():
        rows.append([f"reading + decoding, {name}, {p['workers']} workers", f"{rate:.0f}"])
        rows.append([f"reading + decoding, {name}, in the main process", f"{p['decode_main_process_per_s'][name]:.0f}"])
    for arm, stages in p["stages_per_s"].items():
        rows += [[f"{stage} ({arm})", f"{rate:.0f}"] for stage, rate in stages.items()]
    result.table(["stage alone (after its first batch)", "galaxies/s"], rows, title="Each stage alone",
                 align=["---", "---:"])
    result.table(["input, encoder, samples", "main process alone", "all cores busy", "ceiling"],
                 [[arm, *(f"{b[k]:.0f}" for k in ("main process", "all cores", "ceiling"))]
                  for arm, b in p["ceilings_per_s"].items()],
                 title="The most galaxies/s these stages allow", align=["---", "---:", "---:", "---:"])


# ------------------------------------------------------------------ accuracy of reduced precision, export parity
class _WithEncoder(MCDropoutPredictor):
    """The predictor with an encoder function predict does not offer (int8), giving each batch's ids with its samples."""

    def __init__(self, model: GalaxyModel, samples: int, encode: Encode) -> None:
        super().__init__(model, samples)
        self.given = encode

    def on_predict_start(self) -> None:
        super().on_predict_start()
        self._encode = self.given

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> tuple[list[str], torch.Tensor]:
        return batch["id_str"], self.run(batch)[1].float()


def test_split(model: GalaxyModel, shards: Path, encode: Encode, batch: int) -> tuple[list[str], np.ndarray]:
    """(ids, concentrations (G, A, S)) of the shards' test split, through the one loop over galaxies."""
    run = RunSettings(accelerator="cpu", batch_size=batch, workers=1, progress=False)
    inputs = GalaxyInputs(Records.from_shards(shards, "test"), model.config["preprocessing"], run)
    _, outputs = run_over_galaxies(_WithEncoder(model, SAMPLES, encode), inputs, run, return_predictions=True)
    return [i for ids, _ in outputs for i in ids], torch.cat([s for _, s in outputs]).numpy()


def measure_accuracy(args: argparse.Namespace, result: Result) -> None:
    """Briefly trained GZ2 models (one per seed): Kaggle RMSE and interval coverage on the test split, eager against
    each reduced-precision backend; and ``export --onnx`` in onnxruntime against predict on 16 real galaxies."""
    shards, catalogue = gz2_shards(args), gz2_catalogue(args)
    table = pd.read_parquet(catalogue).set_index("id_str")
    truth, schema = kaggle_truth(catalogue), get_schema("gz2")
    torch.set_num_threads(1)
    backends = [b for b in args.accuracy_backends if not runnable(b, result.data["machine"]["flags"])]
    for seed in args.accuracy_seeds:
        run = args.work / f"accuracy_{args.accuracy_arch}_{args.accuracy_minutes:g}min_seed{seed}"
        if not (run / "best" / "config.json").is_file():
            gc.collect()  # the last seed's OpenVINO models: destroyed by a forked loader worker's collector, they hang it
            train(TrainConfig(shards=str(shards), out=str(run), arch=args.accuracy_arch, size=64, seed=seed,
                              epochs=args.accuracy_epochs, patience=args.accuracy_epochs, threads=1, workers=1,
                              max_time=hhmmss(args.accuracy_minutes), progress=False))
        model = load_model(run)
        epochs = int(pd.read_csv(run / "metrics.csv")["epoch"].max()) + 1
        prep = Preprocessing.from_dict(model.config["preprocessing"])
        val = GalaxyStream(Records.from_shards(shards, "val"), prep.to_dict())  # int8 calibrated on validation
        calibration = eval_transform(prep)(torch.stack([item["image"] for item in itertools.islice(val, 2 * args.batch)]))
        conversions = Conversions(model, calibration, args.batch)
        for backend in ("eager", *backends):
            gc.collect()  # as before training: the test split's loader worker is forked too
            ids, conc = test_split(model, shards, conversions.encoder(backend, 1), args.batch)
            metrics = evaluate_arrays(conc, table.loc[ids, list(schema.answers)].fillna(0).to_numpy(), schema,
                                      levels=(0.5, 0.9), kaggle=truth.loc[ids].to_numpy())["overall"]
            result.arm(f"seed {seed}, {backend}", kaggle_rmse=metrics["kaggle_rmse"]["model"], epochs=epochs,
                       coverage_50=metrics["coverage"]["0.5"], coverage_90=metrics["coverage"]["0.9"],
                       nll_per_galaxy=metrics["nll_per_galaxy"], test_galaxies=len(ids))
    accuracy_tables(args, result, backends)
    result.figures["export"] = export_parity(args, run)
    e = result.figures["export"]
    result.note(f"`export --onnx` run by onnxruntime against `predict --samples 1` on {e['galaxies']} real GZ2 "
                f"galaxies (seed {args.accuracy_seeds[-1]}'s model): largest concentration difference "
                f"{e['max_abs_difference']:.1e} ({e['max_relative_difference']:.1e} relative)")


def accuracy_tables(args: argparse.Namespace, result: Result, backends: list[str]) -> None:
    seeds, metrics = args.accuracy_seeds, ("kaggle_rmse", "coverage_50", "coverage_90", "nll_per_galaxy")
    arms = [f"seed {s}, {b}" for s in seeds for b in ("eager", *backends)]
    result.table(["seed", "epochs", "backend", "Kaggle RMSE", "50% coverage", "90% coverage", "NLL per galaxy"],
                 [[arm.split(", ")[0].split()[1], result.arms[arm]["epochs"], arm.split(", ")[1],
                   *(f"{result.arms[arm][m]:.4f}" for m in metrics)] for arm in arms], arms=arms,
                 title=f"{args.accuracy_arch} at 64 px trained {args.accuracy_minutes:g} min per seed; the GZ2 test "
                       f"split, {SAMPLES} samples", align=["---:", "---:", "---", "---:", "---:", "---:", "---:"])
    verdicts, rows = {}, []
    for backend in backends:
        entry = {}
        for metric in ("kaggle_rmse", "coverage_90"):
            eager = [result.arms[f"seed {s}, eager"][metric] for s in seeds]
            change = [result.arms[f"seed {s}, {backend}"][metric] - e for s, e in zip(seeds, eager)]
            entry[metric] = {"mean_change": statistics.mean(change),
                             "seed_spread": statistics.stdev(eager) if len(seeds) > 1 else float("nan")}
        entry["within_seed_spread"] = all(abs(e["mean_change"]) <= e["seed_spread"] for e in entry.values())
        verdicts[backend] = entry
        rows.append([backend, *(f"{entry[m]['mean_change']:+.4f} ({entry[m]['seed_spread']:.4f})"
                                for m in ("kaggle_rmse", "coverage_90")), "yes" if entry["within_seed_spread"] else "no"])
    result.figures["verdicts"] = verdicts
    result.table(["backend", "Kaggle RMSE change (eager's spread over seeds)", "90% coverage change (spread)",
                  "within the spread"], rows, arms=arms, title="Reduced precision against eager, same models")


def export_parity(args: argparse.Namespace, run: Path) -> dict[str, float]:
    """``export --onnx`` run by onnxruntime on 16 real GZ2 galaxies against ``predict --samples 1``'s concentrations."""
    import onnxruntime

    files = sorted((gz2_folder(args) / "images").glob("*.jpg"))[:16]
    out = args.work / "export_parity"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    pd.DataFrame({"id_str": [f.stem for f in files], "file_loc": [str(f) for f in files]}).to_csv(
        out / "catalogue.csv", index=False)
    path = export_onnx(run, out / "model.onnx")
    predict(run, out / "predictions.parquet", catalogue=out / "catalogue.csv", samples=1, progress=False,
            accelerator="cpu")
    frame, schema, meta = read_predictions(out / "predictions.parquet")
    frame = frame.set_index("id_str").loc[[f.stem for f in files]].reset_index()
    expected = read_concentrations(frame, schema)[..., 0]
    prep = Preprocessing.from_dict(meta["preprocessing"])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    concentrations = session.run(None, {"images": eval_transform(prep)(pixels(files, prep)).numpy()})[0]
    difference = np.abs(concentrations - expected)
    return {"galaxies": len(files), "max_abs_difference": float(difference.max()),
            "max_relative_difference": float((difference / expected).max())}


# ------------------------------------------------------------------ the run
def measure(args: argparse.Namespace, result: Result) -> None:
    threads_before = torch.get_num_threads()
    try:
        flags = result.data["machine"]["flags"]
        wanted = args.backends or [b for b in BACKENDS if b not in BF16 or not runnable(b, flags)]
        backends = []
        for backend in wanted:
            reason = runnable(backend, flags)
            if reason:
                result.skip(f"every {backend} arm", reason)
            else:
                backends.append(backend)
        if "eager" not in backends:
            backends.insert(0, "eager")  # the reference of every comparison
        peaks = {t: gemm_gflops(t) for t in args.threads}
        result.figures["gemm_gflops"] = peaks
        result.note("GEMM peak (float32 2048^3 matmul): " + ", ".join(f"{g:.0f} GFLOP/s on {t} thread{'s' * (t > 1)}"
                                                                    for t, g in peaks.items()))
        prep = gz2_preprocessing(args)
        files = sorted((gz2_folder(args) / "images").glob("*.jpg"))
        if len(files) < args.galaxies + 2 * args.batch:
            raise SystemExit(f"{args.galaxies + 2 * args.batch} GZ2 JPEGs needed, {len(files)} found")
        stored, calibration = pixels(files[:args.batch], prep), pixels(files[-2 * args.batch:], prep)  # timed, int8's
        for arch in [] if args.skip_encoders else args.archs:
            for size in args.sizes:
                measure_encoders(args, result, arch, size, stored, calibration, backends, peaks)
        if not args.skip_pipeline:
            measure_pipeline(args, result, files[:args.galaxies])
        if args.accuracy:
            measure_accuracy(args, result)
    finally:
        torch.set_num_threads(threads_before)
