"""The ``accelerator`` / ``devices`` / ``precision`` settings every model command shares, checked once.

Lightning does devices and precision; this module only refuses, in one line that
names the setting and the fix, an accelerator this machine does not have (Lightning's
own message is several lines deep in a traceback), and says when loaders should pin memory.
"""

from __future__ import annotations

import torch

__all__ = ["ACCELERATORS", "check_accelerator", "device_type", "pin_memory"]

ACCELERATORS = ("auto", "cpu", "gpu", "mps")


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def check_accelerator(accelerator: str, devices: int = 1) -> None:
    """Raise ``ValueError`` for an unknown accelerator, one absent here, or more devices than there are."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator={accelerator!r} must be one of {', '.join(ACCELERATORS)}")
    if devices < 1:
        raise ValueError(f"devices={devices!r} must be >= 1")
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise ValueError("accelerator='gpu' but this machine has no usable CUDA GPU (torch.cuda.is_available() is False); "
                         "use --accelerator cpu (or auto, which takes whatever is present)")
    if accelerator == "gpu" and devices > torch.cuda.device_count():
        raise ValueError(f"devices={devices} but this machine has {torch.cuda.device_count()} GPU(s); use --devices "
                         f"{torch.cuda.device_count()} or fewer")
    if accelerator == "mps" and not _mps_available():
        raise ValueError("accelerator='mps' but Apple's Metal backend is not available here "
                         "(torch.backends.mps.is_available() is False); use --accelerator cpu or auto")


def device_type(accelerator: str) -> str:
    """The torch device type an ``accelerator`` setting runs on here (``auto``: a CUDA GPU, else Apple's, else the CPU)."""
    if accelerator in ("auto", "gpu") and torch.cuda.is_available():
        return "cuda"
    if accelerator in ("auto", "mps") and _mps_available():
        return "mps"
    return "cpu"


def pin_memory(accelerator: str) -> bool:
    """Whether loaders should pin host memory: only when the batches go to a CUDA GPU."""
    return accelerator in ("auto", "gpu") and torch.cuda.is_available()
