"""How likely the volunteers' votes are under a model's MC-sampled posterior: mixture NLL and randomised PIT.

The posterior predictive of a galaxy's votes is the mixture over MC samples of the
Dirichlet-Multinomial the model was trained on (:mod:`galaxymorph.losses`); for one
answer's count it is a mixture of Beta-Binomials over the number of volunteers who
answered. Evaluation scores predictions with both; calibration fits its scales by the NLL.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy import special

from galaxymorph.losses import DirichletMultinomialLoss
from galaxymorph.schema import Schema

__all__ = ["mixture_nll", "predictive_pit"]


def mixture_nll(concentrations: np.ndarray, counts: np.ndarray, schema: Schema) -> np.ndarray:
    """Dirichlet-Multinomial NLL per galaxy and question of the mixture over MC samples, (G, Q)."""
    loss = DirichletMultinomialLoss(schema, reduction="none")
    c = torch.tensor(np.asarray(concentrations), dtype=torch.float64)
    n = torch.tensor(np.asarray(counts), dtype=torch.float64)
    per_sample = torch.stack([loss(c[..., s], n) for s in range(c.shape[2])], dim=-1)
    return (-torch.logsumexp(-per_sample, dim=-1) + np.log(c.shape[2])).numpy()


def predictive_pit(
    concentrations: np.ndarray, counts: np.ndarray, schema: Schema, seed: int = 0, skip: Sequence[int] | None = None
) -> np.ndarray:
    """Randomised PIT of each observed count under the Beta-Binomial mixture, (G, A); NaN without votes.

    The uniform numbers are one stream from ``seed``, question by question and galaxy by
    galaxy; ``skip[q]`` is where question ``q`` starts in it (default: after the previous
    question's galaxies with votes here), so a batch of a larger set can draw what the
    whole set would.
    """
    counts = np.nan_to_num(np.asarray(counts, dtype=np.float64))
    totals = counts @ schema.answer_matrix
    sizes = np.array([sl.stop - sl.start for sl in schema.slices])
    if skip is None:
        skip = np.concatenate([[0], np.cumsum((totals > 0).sum(axis=0) * sizes)[:-1]])
    pit = np.full(counts.shape, np.nan)
    for q, sl in enumerate(schema.slices):
        rng = np.random.default_rng(seed)
        rng.bit_generator.advance(int(skip[q]))
        total = totals[:, q]
        rows = np.flatnonzero(total > 0)
        for start in range(0, len(rows), 1024):
            r = rows[start:start + 1024]
            a = concentrations[r, sl, :]                      # (g, k, S)
            b = a.sum(axis=1, keepdims=True) - a
            n = total[r][:, None, None, None]                 # (g, 1, 1, 1)
            j = np.arange(int(total[r].max()) + 1)            # (J,)
            with np.errstate(invalid="ignore"):
                log_pmf = (special.gammaln(n + 1) - special.gammaln(j + 1) - special.gammaln(np.maximum(n - j, 0) + 1)
                           + special.betaln(j + a[..., None], n - j + b[..., None]) - special.betaln(a, b)[..., None])
            pmf = np.where(j <= n, np.exp(log_pmf), 0.0).mean(axis=2)  # (g, k, J)
            x = counts[r, sl].astype(int)[..., None]
            below = np.where(j < x, pmf, 0.0).sum(axis=-1)
            at = np.take_along_axis(pmf, x, axis=-1)[..., 0]
            pit[r, sl] = below + rng.uniform(size=below.shape) * at
    return pit
