"""What runs the encoder while predicting: eager PyTorch, or its weights exported to onnxruntime or OpenVINO.

MC-dropout prediction spends nearly all its model time in one encoder pass per galaxy
(the head is one linear layer), so that pass is what a backend replaces; the head's
keyed dropout masks, the OOD score and the writing stay PyTorch's, in float32 after an
exported encoder. At ``--precision 32-true`` every backend here computes in float32 and
gives the same vote fractions as eager PyTorch to float rounding (within 1e-4:
``tests/test_backends.py``, BENCHMARKS.md), so an output made by one may be resumed by
another and none of them is recorded in ``made_by``; what does change the numbers
(``--precision bf16-mixed``) is recorded (:func:`numerics`), with the backend: eager
autocasts PyTorch, and OpenVINO (on CPUs with bf16 instructions) computes the encoder in
bf16 itself, each with its own numbers. ``auto`` never lowers the precision asked for.

``auto`` takes, on CPU, OpenVINO, then onnxruntime, else eager; on a GPU eager (the
exported ones run on CPU only). On the CPU measured in BENCHMARKS.md (an AVX-512 Xeon, 1
thread) OpenVINO ran the encoders at 0.94-2.87x eager's images/s and onnxruntime at
0.80-2.16x, both slower only on convnext_nano at 64 px; converting costs seconds when
predict starts, so eager, the default, stays faster for a few hundred galaxies. On an AMD
EPYC with AVX-512 BF16, OpenVINO's bf16 ran them at 1.7-4.6x eager's float32, its accuracy
within the seeds' spread: offered when asked for (``--precision bf16-mixed``), never by ``auto``.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from galaxymorph.models.ensemble import Ensemble
from galaxymorph.models.onnx import EXPORTER

__all__ = ["AUTO_ORDER", "BACKENDS", "FLOAT32_PRECISIONS", "Encode", "check_backend", "encoder_backend", "installed",
           "numerics", "onnxruntime_encoder", "openvino_encoder", "openvino_has_bf16", "openvino_model"]

Encode = Callable[[torch.Tensor], Any]  # images -> features, as model.features gives them

# name -> (module it needs, the extra that installs it); eager needs nothing
NEEDS = {"openvino": ("openvino", "openvino"), "onnx": ("onnxruntime", "onnx")}
BACKENDS = ("auto", "eager", *NEEDS)
AUTO_ORDER = ("openvino", "onnx")  # fastest first (BENCHMARKS.md: CPU backends)
FLOAT32_PRECISIONS = ("32-true", "32")
OPENVINO_PRECISIONS = {"32-true": "f32", "32": "f32", "bf16-mixed": "bf16"}  # --precision -> its inference precision


def installed(backend: str) -> bool:
    """Whether ``backend``'s packages can be imported here (eager always can; onnx also needs torch's exporter)."""
    if backend not in NEEDS:
        return True
    modules = [NEEDS[backend][0], *(EXPORTER if backend == "onnx" else ())]
    return all(importlib.util.find_spec(name) is not None for name in modules)


def _check_name(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r} is not one of {', '.join(BACKENDS)}")


def _exported(backend: str, device: torch.device | str, precision: str) -> list[str]:
    """The exported backends to try in order for ``backend`` here (none: eager); one that cannot run here is refused."""
    _check_name(backend)
    device = torch.device(device)
    if backend == "auto":
        usable = device.type == "cpu" and precision in FLOAT32_PRECISIONS
        return [b for b in AUTO_ORDER if usable and installed(b)]
    if backend == "eager":
        return []
    if device.type != "cpu":
        raise ValueError(f"--backend {backend} runs on CPU only, not {device.type}; use --backend eager or auto there")
    if backend == "openvino" and precision not in OPENVINO_PRECISIONS:
        raise ValueError(f"--backend openvino runs --precision 32-true or bf16-mixed, not {precision}; use one of "
                         "them, or --backend eager")
    if backend == "onnx" and precision not in FLOAT32_PRECISIONS:
        raise ValueError(f"--backend onnx computes in float32, not --precision {precision}; use --precision "
                         "32-true, or --backend eager or openvino for reduced precision")
    if not installed(backend):
        module, extra = NEEDS[backend]
        raise ValueError(f"--backend {backend} needs {module}: pip install 'galaxymorph[{extra}]' "
                         "(or --backend auto, which takes what is installed)")
    if backend == "openvino" and precision not in FLOAT32_PRECISIONS and not openvino_has_bf16():
        raise ValueError(f"--backend openvino --precision {precision} needs a CPU on which OpenVINO computes bf16 "
                         "(AVX-512 BF16 or AMX, for instance); on this one it would compute in float32: use "
                         "--precision 32-true")
    return [backend]


@functools.cache  # asked when predict checks its settings and again when it builds the encoder; the CPU stays
def openvino_has_bf16() -> bool:
    """Whether OpenVINO computes bf16 natively on this CPU (it ignores a bf16 hint elsewhere)."""
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def check_backend(backend: str, device: torch.device | str = "cpu", precision: str = "32-true") -> None:
    """Refuse, in one line with the fix, a backend that cannot run on ``device`` at ``precision`` or is not installed."""
    _exported(backend, device, precision)


def numerics(precision: str, backend: str = "eager") -> dict[str, str]:
    """What ``made_by`` records of how the numbers were computed: nothing for float32 (any backend), else the precision
    and, for an exported backend, which one.

    The float32 backends agree to float rounding, so files made by any of them resume one
    another; reduced precision gives other numbers, eager's autocast others than OpenVINO's
    bf16, and must not be mixed in. (``auto`` runs eager at reduced precision.)
    """
    if precision in FLOAT32_PRECISIONS:
        return {}
    return {"precision": precision, **({"backend": backend} if backend in NEEDS else {})}


def onnxruntime_encoder(graph: bytes, threads: int) -> Encode:
    """An ONNX graph of ``features`` (:func:`galaxymorph.models.onnx.onnx_graph`) run by onnxruntime on ``threads``."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    # no busy-waiting between operators: the loader workers need those cores on a small machine
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    return lambda images: torch.from_numpy(session.run(None, {"images": _numpy(images)})[0])


def openvino_encoder(converted: Any, threads: int, precision: str = "f32") -> Encode:
    """An OpenVINO model (converted from ``features``, or read from ONNX) compiled for the CPU on ``threads``.

    ``precision`` f32 unless bf16 is asked for: OpenVINO's default is bf16 on CPUs that have it (other numbers).
    """
    import openvino

    compiled = openvino.Core().compile_model(converted, "CPU", {
        "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision})
    return lambda images: torch.from_numpy(np.array(compiled(_numpy(images))[0]))


def openvino_model(model: nn.Module) -> Any:
    """``model.features`` converted by OpenVINO's own PyTorch converter (no ONNX needed), for any batch size."""
    import openvino

    from galaxymorph.models.onnx import AsModule, example_images, quiet_exporter

    example = example_images(model.config)
    with quiet_exporter(), torch.no_grad():
        return openvino.convert_model(AsModule(model, model.features).eval(), example_input=example,
                                      input=[-1, *example.shape[1:]])


def _numpy(images: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)


def _onnxruntime(model: nn.Module, precision: str) -> Encode:
    from galaxymorph.models.onnx import onnx_graph

    return onnxruntime_encoder(onnx_graph(model, model.features, ["features"]), torch.get_num_threads())


def _openvino(model: nn.Module, precision: str) -> Encode:  # the threads share_threads gave
    return openvino_encoder(openvino_model(model), torch.get_num_threads(), OPENVINO_PRECISIONS[precision])


_BUILDERS: dict[str, Callable[[nn.Module, str], Encode]] = {"onnx": _onnxruntime, "openvino": _openvino}


def encoder_backend(model: nn.Module, backend: str, device: torch.device | str = "cpu",
                    precision: str = "32-true") -> tuple[str, Encode]:
    """(the backend that runs, ``model.features`` run by it); an ensemble's encoders member by member.

    ``auto`` takes the first of :data:`AUTO_ORDER` installed here that converts the model
    (each converter has shapes it cannot take, e.g. OpenVINO a ResNet's pooling over a
    1-pixel map), else eager PyTorch; a backend asked for by name that cannot convert
    the model is refused with the converter's reason.
    """
    for name in _exported(backend, device, precision):
        try:
            return name, _build(model.eval(), name, precision)
        except Exception as err:  # the converters' own errors have no common base class
            reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            if backend != "auto":
                raise ValueError(f"--backend {name} could not convert this model ({reason}); use --backend auto "
                                 "or eager") from None
            warnings.warn(f"{name} could not convert this model ({reason}); predicting with the next backend",
                          stacklevel=2)
    return "eager", model.features


def _build(model: nn.Module, backend: str, precision: str) -> Encode:
    if isinstance(model, Ensemble):
        members = [_build(member, backend, precision) for member in model.models]
        return lambda images: [encode(images) for encode in members]
    return _BUILDERS[backend](model, precision)
