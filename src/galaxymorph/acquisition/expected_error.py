"""How well a galaxy's vote fractions will be known once the votes of new volunteers arrive.

For one question, the posterior of a galaxy's vote fractions ``p`` is the mixture of
its samples' Dirichlets Dir(a_s). Its **error now** is the root of each answer's
posterior variance, Var(p_k) = mean_s E_s[p_k^2] - (mean_s E_s[p_k])^2: the
root-mean-square distance between the posterior mean and the truth, if the posterior
is calibrated. When ``n`` votes ``y`` arrive (:mod:`galaxymorph.acquisition.outcomes`
says how many), Bayes' rule updates each sample to Dir(a_s + y) and weights it by
how well it predicted them, w_s proportional to DM(y | a_s). The **expected error
after** the votes is the root of E_y[Var(p_k | y)], the outcome drawn from the
posterior predictive (enumerated or sampled as for BALD). For a single sample it is
exactly the error now times sqrt(A / (A + n)), with A the sum of a.

A galaxy's error pools the variances of the chosen questions' answers, each
question weighted by P(asked) as BALD weights its information, before the root:

    error = sqrt( sum_q P(asked q) sum_{k in q} Var(p_k) / sum_q P(asked q) K_q ).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from galaxymorph.acquisition.information import chosen_questions
from galaxymorph.acquisition.outcomes import expect_over_votes, vote_counts
from galaxymorph.schema import Schema
from galaxymorph.stats import _as_samples, _per_question_total, probability_asked

__all__ = ["expected_errors", "posterior_variance"]


def posterior_variance(concentrations, schema: Schema) -> np.ndarray:
    """Variance of each answer's vote fraction under the mixture of the samples' Dirichlets, (galaxies, answers)."""
    c = _as_samples(concentrations)
    total = _per_question_total(c, schema)
    mean, second = c / total, c * (c + 1) / (total * (total + 1))
    return second.mean(axis=2) - mean.mean(axis=2) ** 2


def expected_errors(
    concentrations,
    schema: Schema,
    volunteers: int = 40,
    questions: Sequence[str] | None = None,
    draws: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per galaxy, ``error_now`` and ``error_after`` the votes of ``volunteers`` arrive (see the module docstring).

    Example:
        >>> import numpy as np
        >>> from galaxymorph import Question, Schema
        >>> yes_no = Schema("yes-no", [Question("q", ("yes", "no"))])
        >>> errors = expected_errors(np.array([[[2.0], [2.0]]]), yes_no, volunteers=5)  # Beta(2, 2), 5 votes
        >>> bool(np.isclose(errors["error_after"][0], errors["error_now"][0] * (4 / 9) ** 0.5))
        True
    """
    c = _as_samples(concentrations)
    chosen = chosen_questions(schema, questions)
    variance = posterior_variance(c, schema)
    now = np.stack([variance[:, schema.slices[q]].sum(axis=1) for q in chosen], axis=1)
    after = expect_over_votes(c, schema, vote_counts(c, schema, volunteers), chosen, _variance_after, now.copy(),
                              draws, seed)
    weight = probability_asked(c, schema)[:, chosen]
    answers = weight @ np.array([schema.slices[q].stop - schema.slices[q].start for q in chosen], dtype=np.float64)
    return pd.DataFrame({"error_now": np.sqrt((weight * now).sum(axis=1) / answers),
                         "error_after": np.sqrt(np.maximum((weight * after).sum(axis=1), 0.0) / answers)})


def _variance_after(a: np.ndarray, votes: np.ndarray, log_p: np.ndarray) -> np.ndarray:
    """Summed variance of the answers' fractions given each outcome: (g, S, K), (g or 1, D, K), (g, S, D) -> (g, D)."""
    weights = np.exp(log_p - logsumexp(log_p, axis=1, keepdims=True))  # which sample, given the votes
    updated = a[:, :, None, :] + votes[:, None, :, :]  # (g, S, D, K): each sample's Dirichlet after the votes
    total = updated.sum(axis=-1, keepdims=True)
    mean = np.einsum("gsd,gsdk->gdk", weights, updated / total)
    second = np.einsum("gsd,gsdk->gdk", weights, updated * (updated + 1) / (total * (total + 1)))
    return (second - mean**2).sum(axis=-1)
