"""Dirichlet-Multinomial negative log-likelihood of volunteer votes, all questions at once.

For a question with counts n_k (total N) and concentrations a_k (total A)::

    log p = lgamma(N+1) - sum lgamma(n_k+1) + lgamma(A) - lgamma(N+A)
            + sum [lgamma(n_k+a_k) - lgamma(a_k)]

Per-question sums are one matrix product with the schema's fixed
answer-to-question matrix, so there is no Python loop over questions. The
gradient is written out (digamma terms) in a custom autograd function: it is
several times faster than letting autograd trace the dozen elementwise ops.

Votes may be NaN for a whole question that was not provided (e.g. part of the
Kaggle GZ2 data); such questions, like questions nobody answered, contribute
exactly 0 and no gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from galaxymorph.schema import Schema

__all__ = ["DirichletMultinomialLoss", "dirichlet_multinomial_nll"]


class _DirichletMultinomialNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, concentrations: Tensor, counts: Tensor, answer_matrix: Tensor) -> Tensor:  # type: ignore[override]
        totals = counts @ answer_matrix
        total_concentration = concentrations @ answer_matrix
        per_answer = torch.lgamma(counts + concentrations) - torch.lgamma(concentrations) - torch.lgamma(counts + 1)
        log_likelihood = (
            per_answer @ answer_matrix
            + torch.lgamma(totals + 1)
            + torch.lgamma(total_concentration)
            - torch.lgamma(totals + total_concentration)
        )
        observed = (totals > 0).to(concentrations.dtype)
        ctx.save_for_backward(concentrations, counts, answer_matrix, totals, total_concentration, observed)
        return -log_likelihood * observed

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        concentrations, counts, answer_matrix, totals, total_concentration, observed = ctx.saved_tensors
        grad_question = -grad_output * observed
        grad_total = grad_question * (torch.digamma(total_concentration) - torch.digamma(totals + total_concentration))
        to_answers = answer_matrix.t()
        grad = grad_total @ to_answers + (grad_question @ to_answers) * (
            torch.digamma(counts + concentrations) - torch.digamma(concentrations)
        )
        return grad, None, None


def dirichlet_multinomial_nll(concentrations: Tensor, counts: Tensor, answer_matrix: Tensor) -> Tensor:
    """Per-galaxy, per-question NLL, shape (galaxies, questions).

    Args:
        concentrations: (galaxies, answers), every value finite and > 0.
        counts: (galaxies, answers) vote counts; NaN for a question not provided.
        answer_matrix: (answers, questions) one-hot, ``Schema.answer_matrix``.

    Raises:
        ValueError: concentrations that are NaN, infinite or not positive, naming
            the first bad galaxy (row) and answer (column).
    """
    bad = ~(torch.isfinite(concentrations) & (concentrations > 0))
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"concentrations must be finite and > 0; got {concentrations[row, col].item()} "
            f"at galaxy row {row}, answer column {col} ({int(bad.sum())} bad values in the batch)"
        )
    counts = torch.nan_to_num(counts.to(concentrations.dtype), nan=0.0)
    return _DirichletMultinomialNLL.apply(concentrations, counts, answer_matrix.to(concentrations.dtype))


class DirichletMultinomialLoss(nn.Module):
    """The training loss of a schema: NLL summed over questions.

    ``reduction="none"`` gives (galaxies, questions); ``"sum"`` sums over questions
    per galaxy; ``"mean"`` (the training loss) then averages over galaxies.

    Example:
        >>> from galaxymorph import get_schema
        >>> loss = DirichletMultinomialLoss(get_schema("gz2"))
        >>> loss(torch.full((4, 37), 2.0), torch.ones(4, 37)).shape
        torch.Size([])
    """

    def __init__(self, schema: Schema, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("none", "sum", "mean"):
            raise ValueError(f"reduction must be 'none', 'sum' or 'mean', not {reduction!r}")
        self.reduction = reduction
        self.register_buffer("answer_matrix", torch.from_numpy(schema.answer_matrix), persistent=False)

    def forward(self, concentrations: Tensor, counts: Tensor) -> Tensor:
        per_question = dirichlet_multinomial_nll(concentrations, counts, self.answer_matrix)
        if self.reduction == "none":
            return per_question
        per_galaxy = per_question.sum(dim=1)
        return per_galaxy if self.reduction == "sum" else per_galaxy.mean()
