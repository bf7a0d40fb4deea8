"""Posterior statistics from predicted Dirichlet concentrations.

Inputs are concentrations of shape (galaxies, answers) or (galaxies, answers,
samples), one sample per MC-dropout pass; outputs are numpy arrays. Samples are
treated as an equally weighted mixture, so every statistic here is of the
mixture, not of an averaged concentration.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import special, stats

from galaxymorph.schema import Schema

__all__ = [
    "credible_intervals",
    "expected_fractions",
    "from_cumulative",
    "posterior_predictive_counts",
    "probability_asked",
    "to_cumulative",
    "vote_fractions",
]


def _as_samples(concentrations) -> np.ndarray:
    """(galaxies, answers[, samples]) -> float64 (galaxies, answers, samples)."""
    c = np.asarray(concentrations, dtype=np.float64)
    if c.ndim == 2:
        c = c[..., None]
    if c.ndim != 3:
        raise ValueError(f"concentrations must be (galaxies, answers[, samples]), got shape {c.shape}")
    return c


def _per_question_total(values: np.ndarray, schema: Schema) -> np.ndarray:
    """Sum over each answer's question, broadcast back to answers (axis 1)."""
    if values.shape[1] != schema.n_answers:
        raise ValueError(f"expected {schema.n_answers} answers for schema {schema.name!r}, got {values.shape[1]}")
    totals = np.add.reduceat(values, [s.start for s in schema.slices], axis=1)
    return np.take(totals, schema.question_index, axis=1)


def expected_fractions(concentrations, schema: Schema) -> np.ndarray:
    """Posterior mean vote fraction of each answer within its question, (galaxies, answers)."""
    c = _as_samples(concentrations)
    return (c / _per_question_total(c, schema)).mean(axis=2)


def credible_intervals(
    concentrations, schema: Schema, levels: Sequence[float] = (0.05, 0.95), tol: float = 1e-7
) -> np.ndarray:
    """Quantiles of each answer's vote fraction, (galaxies, answers, len(levels)).

    Each sample's marginal is Beta(a_k, A - a_k); the quantile of their mixture
    is found to ``tol`` by :func:`_mixture_quantile`.
    """
    c = _as_samples(concentrations)
    alpha = c.reshape(-1, c.shape[2])
    beta = (_per_question_total(c, schema) - c).reshape(alpha.shape)
    out = np.empty(c.shape[:2] + (len(levels),))
    for i, level in enumerate(levels):
        if not 0.0 < level < 1.0:
            raise ValueError(f"credible level must be in (0, 1), got {level}")
        out[..., i] = _mixture_quantile(alpha, beta, level, tol).reshape(c.shape[:2])
    return out


def _mixture_quantile(alpha: np.ndarray, beta: np.ndarray, level: float, tol: float) -> np.ndarray:
    """Quantile of equally weighted Beta mixtures, one per row of (rows, components).

    Starts from the exact quantile of the Beta with the mixture's mean and
    variance (exact for one component), then takes Newton steps on the mixture
    CDF inside a shrinking bisection bracket; only rows not yet converged are
    iterated on, so a few cheap ``betainc`` passes suffice.
    """
    total = alpha + beta
    mean = (alpha / total).mean(axis=1)
    second = (alpha * (alpha + 1) / (total * (total + 1))).mean(axis=1)
    spread = np.maximum(mean * (1 - mean) / np.maximum(second - mean**2, 1e-300) - 1, 1e-12)
    x = special.betaincinv(mean * spread, (1 - mean) * spread, level)
    if alpha.shape[1] == 1:
        return x
    lo, hi = np.zeros_like(x), np.ones_like(x)
    active = np.arange(len(x))
    for _ in range(100):
        if active.size == 0:
            break
        a, b, xa, la, ha = alpha[active], beta[active], x[active], lo[active], hi[active]
        excess = special.betainc(a, b, xa[:, None]).mean(axis=1) - level
        below = excess < 0
        la, ha = np.where(below, xa, la), np.where(below, ha, xa)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_density = (a - 1) * np.log(xa[:, None]) + (b - 1) * np.log1p(-xa[:, None]) - special.betaln(a, b)
            newton = xa - excess / np.exp(log_density).mean(axis=1)
        inside = np.isfinite(newton) & (newton >= la) & (newton <= ha)
        x[active] = np.where(inside, newton, 0.5 * (la + ha))
        lo[active], hi[active] = la, ha
        active = active[(np.abs(excess) >= tol) & (ha - la > tol)]
    return x


def probability_asked(concentrations, schema: Schema) -> np.ndarray:
    """Probability that a volunteer is asked each question, (galaxies, questions).

    A volunteer follows one path, so the answers leading to a question are
    exclusive events: P(asked q) = sum over parent answers p of
    P(asked question of p) * fraction(p), computed per sample in topological
    order, then averaged over samples.
    """
    c = _as_samples(concentrations)
    fractions = c / _per_question_total(c, schema)
    asked = np.zeros((c.shape[0], schema.n_questions, c.shape[2]))
    for q in schema.topological_order:
        parents = schema.parent_answers[q]
        if not parents:
            asked[:, q] = 1.0
        else:
            owners = schema.question_index[list(parents)]
            asked[:, q] = (asked[:, owners] * fractions[:, list(parents)]).sum(axis=1)
    return asked.mean(axis=2)


def posterior_predictive_counts(concentrations, schema: Schema, n_volunteers: int) -> np.ndarray:
    """P(k of ``n_volunteers`` give each answer), (galaxies, answers, n_volunteers + 1).

    The marginal of a Dirichlet-Multinomial for one answer is Beta-Binomial(n, a_k, A - a_k),
    mixed over samples. ``n_volunteers`` is the number who answer that question.
    """
    if n_volunteers < 0:
        raise ValueError(f"n_volunteers must be >= 0, got {n_volunteers}")
    c = _as_samples(concentrations)
    beta = _per_question_total(c, schema) - c
    k = np.arange(n_volunteers + 1)
    pmf = stats.betabinom.pmf(k[None, None, None, :], n_volunteers, c[..., None], beta[..., None])
    return pmf.mean(axis=2)


def vote_fractions(counts, schema: Schema) -> np.ndarray:
    """Observed fraction of each answer within its question; NaN where the question has no votes."""
    n = np.asarray(counts, dtype=np.float64)
    totals = _per_question_total(n, schema)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, n / totals, np.nan)


def to_cumulative(fractions, schema: Schema, unit_questions: Sequence[str] = ()) -> np.ndarray:
    """Per-question fractions -> fractions of all volunteers (the Kaggle GZ2 format).

    Each answer's fraction is multiplied by the share of volunteers who reach its
    question: the sum of the cumulative fractions of the answers leading to it
    (1 for first questions and for ``unit_questions``; Kaggle treats GZ2's
    "anything odd?" that way).
    """
    f = np.asarray(fractions, dtype=np.float64)
    cumulative = np.zeros_like(f)
    unknown = set(unit_questions) - set(schema.question_names)
    if unknown:
        raise KeyError(f"unit_questions not in schema {schema.name!r}: {sorted(unknown)}")
    for q in schema.topological_order:
        question = schema.questions[q]
        parents = list(schema.parent_answers[q])
        reach = 1.0 if (not parents or question.name in unit_questions) else cumulative[:, parents].sum(axis=1, keepdims=True)
        cumulative[:, schema.slices[q]] = f[:, schema.slices[q]] * reach
    return cumulative


def from_cumulative(cumulative, schema: Schema) -> np.ndarray:
    """Inverse of :func:`to_cumulative`: renormalise within each question (NaN where nobody reached it)."""
    return vote_fractions(cumulative, schema)
