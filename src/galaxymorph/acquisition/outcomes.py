"""The votes new volunteers might give, question by question: enumerated when few, sampled when many.

For one galaxy and question, sample ``s`` of the posterior (one MC-dropout pass, or
one model of an ensemble) says the votes of ``n`` new volunteers follow a
Dirichlet-Multinomial DM(a_s, n); the predictive distribution is their equally
weighted mixture. BALD and the expected error after the votes are both
expectations of a statistic of the outcome over that mixture, computed here once.

How many volunteers answer a question: ``n = round(volunteers * P(asked))``
(NumPy's rounding, half to even), the expected number of the ``volunteers`` who
see the galaxy and reach that question, with P(asked) from
:func:`galaxymorph.stats.probability_asked` (the mean over samples). Rounding the
expectation, rather than mixing over every number of volunteers who might reach
the question, keeps one enumeration per galaxy and question.

Outcomes are enumerated exactly when there are no more of them than ``draws``
(C(n + K - 1, K - 1) vote splits for K answers: 41 for a yes/no question at
n = 40, 861 for three answers), since Monte Carlo would then cost as much.
Beyond, ``draws / samples`` vote splits are drawn from each sample (seeded), so
the mean of the statistic over them is an unbiased estimate of its expectation.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations
from typing import Callable, Iterator, Sequence

import numpy as np
from scipy.special import gammaln

from galaxymorph.schema import Schema
from galaxymorph.stats import probability_asked

__all__ = ["Statistic", "draw_votes", "expect_over_votes", "log_pmf", "question_blocks", "vote_counts"]

_CHUNK_ELEMENTS = 4_000_000  # galaxies per block so that a block's (galaxies, outcomes, answers, samples) stays ~32 MB

# statistic(a (g, S, K), votes (g or 1, D, K), log DM(votes | a_s) (g, S, D)) -> (g, D): one value per outcome
Statistic = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def vote_counts(concentrations: np.ndarray, schema: Schema, volunteers: int) -> np.ndarray:
    """New votes per galaxy and question, (galaxies, questions): ``round(volunteers * P(asked))``."""
    if volunteers < 0:
        raise ValueError(f"volunteers must be >= 0, got {volunteers}")
    return np.rint(volunteers * probability_asked(concentrations, schema)).astype(np.int64)


def expect_over_votes(concentrations: np.ndarray, schema: Schema, counts: np.ndarray, chosen: Sequence[int],
                      statistic: Statistic, out: np.ndarray, draws: int = 2000, seed: int = 0) -> np.ndarray:
    """``out[g, j]`` = E[statistic] over the votes of question ``chosen[j]``, for galaxies with votes to come.

    Rows whose count is 0 keep the value ``out`` had (what the statistic is with no votes).
    The outcome is weighted by the mixture's probability when enumerated; sampled outcomes
    are drawn from the mixture, so they are averaged.
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    rng = np.random.default_rng(seed)
    for column, n, block, a in question_blocks(concentrations, schema, counts, chosen,
                                               lambda n, k: min(_outcomes(n, k), draws)):
        if _outcomes(n, a.shape[2]) <= draws:
            votes = _splits(n, a.shape[2])[None]
            log_p = log_pmf(a, votes)
            out[block, column] = (np.exp(log_p).mean(axis=1) * statistic(a, votes, log_p)).sum(axis=1)
        else:
            votes = draw_votes(a, n, draws, rng)
            out[block, column] = statistic(a, votes, log_pmf(a, votes)).mean(axis=1)
    return out


def question_blocks(concentrations: np.ndarray, schema: Schema, counts: np.ndarray, chosen: Sequence[int],
                    outcomes: Callable[[int, int], int]) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """(column in ``chosen``, n votes, galaxy rows, their concentrations (g, S, K)) for every question and n > 0.

    Galaxies with the same number of votes to come share a block, cut so that a block's
    ``outcomes(n, K)`` outcomes per galaxy stay within about 32 MB of float64.
    """
    samples = concentrations.shape[2]
    for column, q in enumerate(chosen):
        answers = schema.slices[q]
        k = answers.stop - answers.start
        for n in np.unique(counts[:, q][counts[:, q] > 0]):
            rows = np.flatnonzero(counts[:, q] == n)
            per_block = max(1, _CHUNK_ELEMENTS // (outcomes(int(n), k) * k * samples))
            for start in range(0, len(rows), per_block):
                block = rows[start : start + per_block]
                yield column, int(n), block, np.moveaxis(concentrations[block, answers], 1, 2)


def draw_votes(a: np.ndarray, n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(g, S x each, K) splits of ``n`` votes, ``each = ceil(draws / S)`` from each sample in turn.

    Draw ``m`` comes from sample ``m // each`` for every galaxy, so draws of several
    galaxies (or questions) with the same index come from the same sample.
    """
    g, samples, k = a.shape
    each = max(1, math.ceil(draws / samples))
    shares = rng.gamma(np.repeat(a[:, :, None, :], each, axis=2))  # (g, S, each, K): Dirichlet draws, unnormalised
    return rng.multinomial(n, shares / shares.sum(axis=-1, keepdims=True)).reshape(g, samples * each, k)


def log_pmf(a: np.ndarray, votes: np.ndarray) -> np.ndarray:
    """log DM(votes | a_s) for every sample: a (g, S, K), votes (g or 1, D, K) of n votes each -> (g, S, D).

    lgamma(v + a) - lgamma(a) is looked up in a table over v = 0..n, built with
    n + 1 lgamma calls per answer instead of one per outcome.
    """
    n = int(votes[0, 0].sum())
    rising = gammaln(a[..., None] + np.arange(n + 1)) - gammaln(a)[..., None]  # (g, S, K, n + 1)
    total = a.sum(axis=-1)
    log_p = (gammaln(n + 1) - gammaln(votes + 1).sum(axis=-1))[:, None, :] + (gammaln(total) - gammaln(n + total))[..., None]
    for k in range(a.shape[2]):
        log_p = log_p + np.take_along_axis(rising[:, :, k], votes[:, None, :, k], axis=2)
    return log_p


def _outcomes(n: int, k: int) -> int:
    """How many ways ``n`` votes fall into ``k`` answers."""
    return math.comb(n + k - 1, k - 1)


@lru_cache(maxsize=256)
def _splits(n: int, k: int) -> np.ndarray:
    """Every way ``n`` votes fall into ``k`` answers, (C(n + k - 1, k - 1), k): stars and bars."""
    bars = np.array(list(combinations(range(n + k - 1), k - 1)), dtype=np.int64).reshape(-1, k - 1)
    edges = np.concatenate([np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), n + k - 1)], axis=1)
    return np.diff(edges, axis=1) - 1
