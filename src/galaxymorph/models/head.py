"""The Dirichlet head: dropout, one linear layer, and a bounded map to concentrations above 1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DirichletHead", "MIN_CONCENTRATION", "MAX_CONCENTRATION"]

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

    def sample(self, features: Tensor, n: int) -> Tensor:
        """(B, A, n) concentrations from n dropout masks; ``n=1`` is the deterministic head (no dropout)."""
        return mc_samples(self, features, n)


def _bounded(logits: Tensor) -> Tensor:
    return MIN_CONCENTRATION + (MAX_CONCENTRATION - MIN_CONCENTRATION) * torch.sigmoid(logits)


class ClassifierHead(nn.Module):
    """Features to class logits: dropout then one linear layer; ``sample`` gives softmax probabilities."""

    def __init__(self, in_features: int, n_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"a classifier needs >= 2 classes, got {n_classes}")
        self.dropout = dropout
        self.linear = nn.Linear(in_features, n_classes)

    def forward(self, features: Tensor, mc_dropout: bool = False) -> Tensor:
        return self.linear(F.dropout(features, self.dropout, training=self.training or mc_dropout))

    def sample(self, features: Tensor, n: int) -> Tensor:
        return mc_samples(self, features, n).softmax(dim=1)


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

    def sample(self, features: Tensor, n: int) -> Tensor:
        return mc_samples(self, features, n)


def mc_samples(head: nn.Module, features: Tensor, n: int) -> Tensor:
    """(B, K, n) head outputs from n dropout masks in one batched pass; n=1 is deterministic (no dropout)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n == 1:
        was_training = head.training
        head.eval()
        try:
            return head(features).unsqueeze(-1)
        finally:
            head.train(was_training)
    out = head(features.repeat(n, 1), mc_dropout=True)
    return out.view(n, features.shape[0], -1).permute(1, 2, 0)
