"""The Dirichlet head: dropout, one linear layer, and a bounded map to concentrations above 1.

Predictions draw each galaxy's MC-dropout masks from its ``id_str`` (:func:`galaxy_keys`),
so which features a sample drops depends on nothing else: not on the batch it shares,
the loader workers, the ranks, the device, nor whether the run was killed and resumed
(the encoder's features themselves agree to float rounding across batches and devices).
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DirichletHead", "MIN_CONCENTRATION", "MAX_CONCENTRATION", "galaxy_keys", "keyed_dropout", "subkeys"]

# concentration = MIN + (MAX - MIN) * sigmoid(z): Zoobot's 1 + 100*sigmoid(z), with the floor
# lifted by 1e-3 so values stay strictly above 1 even where float32 sigmoid underflows to 0.
# Above 1, every answer's Dirichlet density is unimodal; the cap keeps the loss well scaled.
MIN_CONCENTRATION = 1.001
MAX_CONCENTRATION = 101.0


class DirichletHead(nn.Module):
    """Features (B, F) to Dirichlet concentrations (B, A) in [1.001, 101].

    Dropout lives only here, so Monte-Carlo dropout needs the encoder once and
    this cheap head several times. ``mc_dropout=True`` keeps dropout on whatever
    ``train()``/``eval()`` says.
    """

    def __init__(self, in_features: int, n_answers: int, dropout: float = 0.2) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = dropout
        self.linear = nn.Linear(in_features, n_answers)

    def forward(self, features: Tensor, mc_dropout: bool = False) -> Tensor:
        x = F.dropout(features, self.dropout, training=self.training or mc_dropout)
        return _bounded(self.linear(x))

    def sample(self, features: Tensor, n: int, keys: Tensor | None = None) -> Tensor:
        """(B, A, n) concentrations from n dropout masks; ``n=1`` is the deterministic head (no dropout)."""
        return mc_samples(self, features, n, keys)


def _bounded(logits: Tensor) -> Tensor:
    return MIN_CONCENTRATION + (MAX_CONCENTRATION - MIN_CONCENTRATION) * torch.sigmoid(logits)


class ClassifierHead(nn.Module):
    """Features to class logits: dropout then one linear layer; ``sample`` gives softmax probabilities.

    ``temperature`` divides the logits of every sample (``galaxymorph.calibration.fit_temperature``);
    training's loss sees them undivided.
    """

    def __init__(self, in_features: int, n_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"a classifier needs >= 2 classes, got {n_classes}")
        self.dropout = dropout
        self.temperature = 1.0
        self.linear = nn.Linear(in_features, n_classes)

    def forward(self, features: Tensor, mc_dropout: bool = False) -> Tensor:
        return self.linear(F.dropout(features, self.dropout, training=self.training or mc_dropout))

    def sample(self, features: Tensor, n: int, keys: Tensor | None = None) -> Tensor:
        return (mc_samples(self, features, n, keys) / self.temperature).softmax(dim=1)


class RegressionHead(nn.Module):
    """Features to one value: dropout, linear, and a sigmoid when the target is bounded to [0, 1]."""

    def __init__(self, in_features: int, dropout: float = 0.2, bounded: bool = False) -> None:
        super().__init__()
        self.dropout = dropout
        self.bounded = bounded
        self.linear = nn.Linear(in_features, 1)

    def forward(self, features: Tensor, mc_dropout: bool = False) -> Tensor:
        out = self.linear(F.dropout(features, self.dropout, training=self.training or mc_dropout))
        return torch.sigmoid(out) if self.bounded else out

    def sample(self, features: Tensor, n: int, keys: Tensor | None = None) -> Tensor:
        return mc_samples(self, features, n, keys)


def mc_samples(head: nn.Module, features: Tensor, n: int, keys: Tensor | None = None) -> Tensor:
    """(B, K, n) head outputs from n dropout masks in one batched pass; n=1 is deterministic (no dropout).

    With ``keys`` (one per galaxy, :func:`galaxy_keys`) the masks come from them alone
    (:func:`keyed_dropout`); without, from torch's global generator.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n == 1:
        with _eval(head):
            return head(features).unsqueeze(-1)
    if keys is None:
        out = head(features.repeat(n, 1), mc_dropout=True)
    else:
        with _eval(head):
            out = head(keyed_dropout(features, n, head.dropout, keys))
    return out.view(n, features.shape[0], -1).permute(1, 2, 0)


@contextlib.contextmanager
def _eval(module: nn.Module) -> Iterator[None]:
    """The module in eval mode (no dropout of its own) for the duration, then as it was."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def galaxy_keys(ids: Sequence[str]) -> Tensor:
    """One 32-bit key per galaxy from its ``id_str`` (blake2b), for :func:`keyed_dropout`."""
    digests = (hashlib.blake2b(str(i).encode(), digest_size=4).digest() for i in ids)
    return torch.tensor([int.from_bytes(d, "little") for d in digests], dtype=torch.int64)


def subkeys(keys: Tensor, index: int) -> Tensor:
    """Other keys for the same galaxies (a TTA view, an ensemble member): masks unrelated to the first ones."""
    return _mix32((keys + (index + 1) * 0x9E3779B9) & _LOW32)


def keyed_dropout(features: Tensor, n: int, p: float, keys: Tensor) -> Tensor:
    """(n x B, F) features under n dropout masks per galaxy, sample-major like ``features.repeat(n, 1)``.

    Each mask element is a counter-based hash of (key, sample, feature) rather than a
    draw from a generator's stream, so it is the same whatever else is computed.
    """
    b, width = features.shape
    counters = torch.arange(n * width, device=features.device, dtype=torch.int64).view(n, 1, width)
    # hash key and counter apart, then together: neighbouring keys do not share shifted streams
    bits = _mix32(_mix32(keys.to(features.device).view(1, b, 1)) ^ _mix32(counters))  # (n, B, F) in [0, 2^32)
    keep = (bits >> 8) >= round(p * 2**24)  # 24 uniform bits, compared as integers on every device
    return (features.unsqueeze(0) * keep / (1.0 - p)).flatten(0, 1)


_LOW32 = 0xFFFFFFFF


def _mix32(x: Tensor) -> Tensor:
    """Wellons' lowbias32 integer hash of values in [0, 2^32), in int64 arithmetic."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _mul32(x: Tensor, c: int) -> Tensor:
    """x * c mod 2^32, split at 16 bits so that no int64 product overflows."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _LOW32
