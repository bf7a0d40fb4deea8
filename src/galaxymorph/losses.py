"""Dirichlet-Multinomial negative log-likelihood of volunteer votes, all questions at once.

For a question with counts n_k (total N) and concentrations a_k (total A)::

    log p = lgamma(N+1) - sum lgamma(n_k+1) + lgamma(A) - lgamma(N+A)
            + sum [lgamma(n_k+a_k) - lgamma(a_k)]

All questions are computed at once, with no Python loop over questions: the
per-question sums are one ``index_add_`` over the answers' question indices.
Speed matters (this runs on every training step) and is dominated by the
special functions, so each is called once: lgamma on every argument stacked
together in forward, digamma on the same in a hand-written backward, and log
factorials of whole-number votes are looked up in a table. See
``python -m benchmarks loss`` for the comparison with Zoobot's losses.

Votes may be NaN for a whole question that was not provided (e.g. part of the
Kaggle GZ2 data); such questions, like questions nobody answered, contribute
exactly 0 and no gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from galaxymorph.schema import Schema

__all__ = ["DirichletMultinomialLoss", "dirichlet_multinomial_nll", "mask_nll"]


class _DirichletMultinomialNLL(torch.autograd.Function):
    """-log p per galaxy and question, with the gradient written out.

    Answers and questions are handled alike: ``a|A`` holds every answer's
    concentration followed by each question's total, ``n|N`` the same for
    counts, so ``log_beta_1 = lgamma(n+1) + lgamma(a) - lgamma(n+a)`` is one
    (galaxies, answers + questions) array, and ``nll`` is the sum of a
    question's answer terms minus its question term (pyro's
    ``DirichletMultinomial.log_prob``, in its order of operations, so float32
    results agree with it to rounding). One lgamma call on ``[a|A, n+a|N+A]``
    gives the likelihood and one digamma call on the same the gradient.
    """

    @staticmethod
    def forward(ctx, concentrations: Tensor, counts: Tensor, question_index: Tensor, n_questions: int,  # type: ignore[override]
                host: bool) -> Tensor:
        answers = concentrations.shape[1]
        values = torch.stack([concentrations, counts])
        totals = values.new_zeros(2, len(values[0]), n_questions).index_add_(2, question_index, values)
        arguments = torch.cat([values, totals], dim=2)
        conc, count = arguments
        if host:  # reading the range back is free here, and picks the cheaper log factorial
            lowest, highest = (float(x) for x in torch.aminmax(count)) if count.numel() else (0.0, 0.0)
            log_factorial = _log_factorial(count, lowest, highest)
        else:  # on an accelerator lgamma is cheap and a read-back would stall every step
            lowest, log_factorial = -math.inf, torch.lgamma(count + 1)
        count.add_(conc)  # arguments is now [a|A, n+a|N+A]
        lgamma_conc, lgamma_count_plus_conc = arguments.lgamma()
        log_beta_1 = log_factorial.add_(lgamma_conc).sub_(lgamma_count_plus_conc)
        nll = _sum_per_question(log_beta_1[:, :answers], question_index, n_questions).sub_(log_beta_1[:, answers:])
        # A question without votes already comes out exactly 0, with zero gradient:
        # every term is lgamma(1) = 0 or lgamma(x) - lgamma(x + 0). Only negative counts need a mask
        # (always applied off the host, where the mask costs less than finding out).
        unobserved = totals[1] <= 0 if lowest < 0 else None
        ctx.save_for_backward(arguments, question_index, unobserved)
        return nll if unobserved is None else nll.masked_fill_(unobserved, 0.0)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        arguments, question_index, unobserved = ctx.saved_tensors
        answers = len(question_index)
        digamma_conc, digamma_count_plus_conc = arguments.digamma()
        # d log_beta_1 / da = psi(a) - psi(n+a); d nll / da_k = that of answer k minus that of its question
        d_log_beta_1 = digamma_conc.sub_(digamma_count_plus_conc)
        grad = torch.sub(d_log_beta_1[:, :answers], d_log_beta_1[:, answers:].index_select(1, question_index))
        if unobserved is not None:
            grad_output = grad_output.masked_fill(unobserved, 0.0)
        return grad.mul_(grad_output.index_select(1, question_index)), None, None, None, None


def _log_factorial(counts: Tensor, lowest: float, highest: float) -> Tensor:
    """lgamma(counts + 1); for whole-number votes, by looking up a table of log k!, cheaper than lgamma."""
    if counts.numel() and 0 <= lowest and highest <= _LOG_FACTORIAL_TABLE_LIMIT:
        fractions = torch.aminmax(counts.frac())  # cheaper than .any()
        if float(fractions.min) == float(fractions.max) == 0:
            table = torch.arange(1, highest + 2, dtype=counts.dtype, device=counts.device).lgamma_()
            return table.index_select(0, counts.view(-1).int()).view(counts.shape)
    return torch.lgamma(counts + 1)


_LOG_FACTORIAL_TABLE_LIMIT = 1e6


def _sum_per_question(values: Tensor, question_index: Tensor, n_questions: int) -> Tensor:
    return values.new_zeros(len(values), n_questions).index_add_(1, question_index, values)


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
    question_index = answer_matrix.argmax(dim=1).to(concentrations.device)
    return _nll(concentrations, counts, question_index, answer_matrix.shape[1])


def _on_host(tensor: Tensor) -> bool:
    """Whether reading a value back to Python is free (CPU), rather than a stall of the accelerator's queue."""
    return tensor.device.type == "cpu"


def _nll(concentrations: Tensor, counts: Tensor, question_index: Tensor, n_questions: int) -> Tensor:
    host = _on_host(concentrations)
    _check_concentrations(concentrations, host)
    counts = counts.to(concentrations.dtype)
    if not host or not math.isfinite(counts.sum().item()):  # on the host one sum is cheaper than a scan for NaN
        counts = torch.nan_to_num(counts, nan=0.0)
    return _DirichletMultinomialNLL.apply(concentrations, counts, question_index, n_questions, host)


def _check_concentrations(concentrations: Tensor, host: bool = True) -> None:
    """Raise on NaN, infinite or non-positive values; one cheap reduction when all is well.

    Off the host the same reduction feeds an asynchronous device assertion, so a
    training step never waits for it; the galaxy row and answer column are then not known.
    """
    if concentrations.numel() == 0:
        return
    lowest, highest = torch.aminmax(concentrations)  # NaN propagates to both, failing both tests
    if not host:
        torch._assert_async((lowest > 0) & (highest < math.inf),
                            "concentrations must be finite and > 0 (run the loss on CPU to find the galaxy row and answer column)")
        return
    if 0 < lowest.item() and highest.item() < math.inf:
        return
    bad = ~(torch.isfinite(concentrations) & (concentrations > 0))
    row, col = (int(i) for i in bad.nonzero()[0])
    raise ValueError(
        f"concentrations must be finite and > 0; got {concentrations[row, col].item()} "
        f"at galaxy row {row}, answer column {col} ({int(bad.sum())} bad values in the batch)"
    )


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
        self.register_buffer("question_index", torch.from_numpy(schema.question_index).long(), persistent=False)

    def forward(self, concentrations: Tensor, counts: Tensor) -> Tensor:
        per_question = _nll(concentrations, counts, self.question_index, self.answer_matrix.shape[1])
        if self.reduction == "none":
            return per_question
        per_galaxy = per_question.sum(dim=1)
        return per_galaxy if self.reduction == "sum" else per_galaxy.mean()


def mask_nll(logits: Tensor, target: tuple[Tensor, Tensor]) -> Tensor:
    """Mean per-pixel Binomial NLL of volunteers' masks: each of n volunteers marks a pixel with probability
    sigmoid(logit).

    Args:
        logits: (B, K, H, W), one per class and pixel.
        target: the share of volunteers who marked each pixel (B, K, H, W) and how many drew (B,);
            shares times volunteers are the counts k (fractional where masks were resampled).

    ``-log p = -k log(q) - (n - k) log(1 - q) - log C(n, k)``: n times the cross-entropy
    of the share, less the log binomial coefficient (which only makes it a likelihood).
    """
    shares, volunteers = target
    n = volunteers.to(logits.dtype).view(-1, 1, 1, 1)
    shares = shares.to(logits.dtype)
    k = shares * n
    log_choose = torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
    return (n * F.binary_cross_entropy_with_logits(logits, shares, reduction="none") - log_choose).mean()
