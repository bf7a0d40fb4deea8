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
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if n == 1:
            return _bounded(self.linear(features)).unsqueeze(-1)
        conc = self.forward(features.repeat(n, 1), mc_dropout=True)  # one batched pass, n masks
        return conc.view(n, features.shape[0], -1).permute(1, 2, 0)


def _bounded(logits: Tensor) -> Tensor:
    return MIN_CONCENTRATION + (MAX_CONCENTRATION - MIN_CONCENTRATION) * torch.sigmoid(logits)
