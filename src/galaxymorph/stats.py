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

    Each sample's marginal is Beta(a_k, A - a_k). The mixture's quantile lies
    between its components' quantiles (exact ``betaincinv``); Newton steps on the
    mixture CDF, kept inside that bracket, find it to ``tol`` in a few iterations.
    """
    c = _as_samples(concentrations)
    alpha = c
    beta = _per_question_total(c, schema) - c
    out = np.empty(c.shape[:2] + (len(levels),))
    for i, level in enumerate(levels):
        if not 0.0 < level < 1.0:
            raise ValueError(f"credible level must be in (0, 1), got {level}")
        components = special.betaincinv(alpha, beta, level)
        log_norm = special.betaln(alpha, beta)
        lo, hi = components.min(axis=2), components.max(axis=2)
        x = components.mean(axis=2)
        for _ in range(50):
            if np.max(hi - lo) <= tol:
                break
            excess = special.betainc(alpha, beta, x[..., None]).mean(axis=2) - level
            lo = np.where(excess < 0, x, lo)
            hi = np.where(excess < 0, hi, x)
            with np.errstate(divide="ignore", invalid="ignore"):
                xs = x[..., None]
                density = np.exp((alpha - 1) * np.log(xs) + (beta - 1) * np.log1p(-xs) - log_norm).mean(axis=2)
                newton = x - excess / density
            inside = np.isfinite(newton) & (newton > lo) & (newton < hi)
            x = np.where(inside, newton, 0.5 * (lo + hi))
            lo = np.where(np.abs(excess) < tol, x, lo)
            hi = np.where(np.abs(excess) < tol, x, hi)
        out[..., i] = x
    return out


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
