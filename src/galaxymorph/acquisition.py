"""Which galaxies should volunteers see next: BALD, the mutual information between votes and model.

For one galaxy and question, sample ``s`` of the posterior (one MC-dropout pass,
or one model of an ensemble) says the votes of ``n`` new volunteers follow a
Dirichlet-Multinomial DM(a_s, n). The predictive distribution is their equally
weighted mixture ``m``. BALD (Houlsby et al. 2011; Walmsley et al. 2020 for
Galaxy Zoo) scores the galaxy by

    I = H[m] - mean_s H[DM_s] = mean_s KL(DM_s || m),

the information the votes would give about which sample is right: 0 when the
samples agree (however uncertain each is), at most log(samples) when confident
samples disagree. High-I galaxies are those the model would learn most from.

How many volunteers answer a question: ``n = round(volunteers * P(asked))``
(NumPy's rounding, half to even), the expected number of the ``volunteers`` who
see the galaxy and reach that question, with P(asked) from
:func:`galaxymorph.stats.probability_asked` (the mean over samples). Rounding
the expectation, rather than mixing over every number of volunteers who might
reach the question, keeps one enumeration per galaxy and question; a question
few of the galaxy's volunteers would reach gets few votes and so little information.

Outcomes are enumerated exactly when there are no more of them than ``draws``
(C(n + K - 1, K - 1) vote splits for K answers: 41 for a yes/no question at
n = 40, 861 for three answers), since Monte Carlo would then cost as much.
Beyond, the expectation over the mixture is estimated from ``draws`` vote
splits, ``draws / samples`` drawn from each sample (seeded): each split
contributes log(samples) minus the entropy of which sample it came from, a
value in [0, log samples], so the estimate is unbiased, never negative, exactly
0 for identical samples, and its standard error is at most
log(samples) / (2 sqrt(draws)): 0.018 nats for 5 samples and the default 2000
draws (tests check it against enumeration).

A galaxy's score sums its questions' information weighted by the probability
each is asked, over all questions or the chosen ones: on top of the fewer votes,
the weight favours the questions most volunteers answer. Summing treats questions
as independent, which is the usual approximation: the information of the whole
decision tree's votes would need outcomes of every path at once.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.special import gammaln, logsumexp

from galaxymorph.schema import Schema
from galaxymorph.stats import _as_samples, probability_asked

__all__ = ["acquisition_scores", "chosen_questions", "mutual_information", "rank_predictions"]

_CHUNK_ELEMENTS = 4_000_000  # galaxies per block so that a block's (galaxies, outcomes, answers, samples) stays ~32 MB


def chosen_questions(schema: Schema, questions: Sequence[str] | None = None) -> list[int]:
    """Indices of the named questions (all when None); an unknown name is a KeyError naming the closest."""
    if questions is None:
        return list(range(schema.n_questions))
    if not questions:
        raise ValueError("choose at least one question")
    return [schema.question_names.index(schema.question(name).name) for name in questions]


def mutual_information(
    concentrations,
    schema: Schema,
    volunteers: int = 40,
    questions: Sequence[str] | None = None,
    draws: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """BALD per galaxy and question, in nats, (galaxies, chosen questions); see the module docstring.

    Args:
        concentrations: (galaxies, answers, samples) Dirichlet concentrations, e.g. from
            :func:`galaxymorph.predict.read_concentrations`.
        volunteers: how many new volunteers would see each galaxy.
        questions: names of the questions to score (default all, in schema order).
        draws: vote splits per galaxy and question; more outcomes than this are sampled.
        seed: for the sampled questions; the same input and seed give the same output.

    Example:
        >>> import numpy as np
        >>> from galaxymorph import get_schema
        >>> schema = get_schema("gz_decals_dr5")
        >>> mutual_information(np.full((2, schema.n_answers, 5), 3.0), schema).max()
        0.0
    """
    if volunteers < 0:
        raise ValueError(f"volunteers must be >= 0, got {volunteers}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    c = _as_samples(concentrations)
    chosen = chosen_questions(schema, questions)
    counts = np.rint(volunteers * probability_asked(c, schema)).astype(np.int64)
    rng = np.random.default_rng(seed)
    out = np.zeros((c.shape[0], len(chosen)))
    if c.shape[2] < 2:
        return out  # one sample cannot disagree with itself
    for column, q in enumerate(chosen):
        answers = schema.slices[q]
        k = answers.stop - answers.start
        for n in np.unique(counts[:, q][counts[:, q] > 0]):
            rows = np.flatnonzero(counts[:, q] == n)
            outcomes = math.comb(int(n) + k - 1, k - 1)
            per_block = max(1, _CHUNK_ELEMENTS // (min(outcomes, draws) * k * c.shape[2]))
            for start in range(0, len(rows), per_block):
                block = rows[start : start + per_block]
                a = np.moveaxis(c[block, answers], 1, 2)  # (galaxies, samples, answers)
                out[block, column] = (_exact(a, int(n)) if outcomes <= draws else _sampled(a, int(n), draws, rng))
    return out


def acquisition_scores(
    concentrations,
    schema: Schema,
    volunteers: int = 40,
    questions: Sequence[str] | None = None,
    draws: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per galaxy: ``mi:<question>`` for the chosen questions and ``score``, their sum weighted by P(asked)."""
    c = _as_samples(concentrations)
    chosen = chosen_questions(schema, questions)
    names = [schema.question_names[q] for q in chosen]
    information = mutual_information(c, schema, volunteers, names, draws, seed)
    asked = probability_asked(c, schema)[:, chosen]
    frame = pd.DataFrame(information, columns=[f"mi:{name}" for name in names])
    frame.insert(0, "score", (asked * information).sum(axis=1))
    return frame


def rank_predictions(
    predictions: str | Path, top: int, volunteers: int = 40, questions: Sequence[str] | None = None
) -> pd.DataFrame:
    """The ``top`` most informative galaxies of a predictions file: rank, id_str, file_loc, score, mi:<question>.

    Predictions with one sample per galaxy (``--samples 1``) are refused: they cannot be ranked.
    """
    from galaxymorph.predict import read_concentrations, read_predictions

    if top < 1:
        raise ValueError(f"--top must be at least 1, got {top}")
    frame, schema, _ = read_predictions(predictions)
    concentrations = read_concentrations(frame, schema)
    if concentrations.shape[2] < 2:  # every score would be 0: a queue in file order, not by information
        raise ValueError(f"{predictions} holds one posterior sample per galaxy, and BALD ranks by how samples "
                         "disagree; predict with --samples 5 (or more, or --tta) and rank those")
    scores = acquisition_scores(concentrations, schema, volunteers, questions)
    scores.insert(0, "file_loc", frame["file_loc"].to_numpy())
    scores.insert(0, "id_str", frame["id_str"].to_numpy())
    queue = scores.sort_values("score", ascending=False, kind="stable").head(top).reset_index(drop=True)
    queue.insert(0, "rank", np.arange(1, len(queue) + 1))
    return queue


def _log_pmf(a: np.ndarray, votes: np.ndarray) -> np.ndarray:
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


def _information(log_p: np.ndarray) -> np.ndarray:
    """Per outcome, log(samples) minus the entropy of which sample made it, (g, S, D) -> (g, D); in [0, log S]."""
    log_posterior = log_p - logsumexp(log_p, axis=1, keepdims=True)
    return math.log(log_p.shape[1]) + (np.exp(log_posterior) * log_posterior).sum(axis=1)


def _exact(a: np.ndarray, n: int) -> np.ndarray:
    """Sum over every split of ``n`` votes of the mixture's probability times the information; rounding clipped at 0."""
    log_p = _log_pmf(a, _splits(n, a.shape[2])[None])
    mixture = np.exp(log_p).mean(axis=1)
    return np.maximum((mixture * _information(log_p)).sum(axis=1), 0.0)


def _sampled(a: np.ndarray, n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """The same expectation over the mixture from ``draws / samples`` vote splits drawn from each sample."""
    g, samples, k = a.shape
    each = max(1, math.ceil(draws / samples))
    shares = rng.gamma(np.repeat(a[:, :, None, :], each, axis=2))  # (g, S, each, K): Dirichlet draws, unnormalised
    votes = rng.multinomial(n, shares / shares.sum(axis=-1, keepdims=True)).reshape(g, samples * each, k)
    return np.maximum(_information(_log_pmf(a, votes)).mean(axis=1), 0.0)


@lru_cache(maxsize=256)
def _splits(n: int, k: int) -> np.ndarray:
    """Every way ``n`` votes fall into ``k`` answers, (C(n + k - 1, k - 1), k): stars and bars."""
    bars = np.array(list(combinations(range(n + k - 1), k - 1)), dtype=np.int64).reshape(-1, k - 1)
    edges = np.concatenate([np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), n + k - 1)], axis=1)
    return np.diff(edges, axis=1) - 1
