"""BALD: the mutual information between new volunteers' votes and the model, for one galaxy or a batch.

BALD (Houlsby et al. 2011; Walmsley et al. 2020 for Galaxy Zoo) scores a galaxy
and question by

    I = H[m] - mean_s H[DM_s] = mean_s KL(DM_s || m),

the information the votes would give about which posterior sample is right
(:mod:`galaxymorph.acquisition.outcomes` says which votes): 0 when the samples
agree (however uncertain each is), at most log(samples) when confident samples
disagree. Per outcome it is log(samples) minus the entropy of which sample made
it, a value in [0, log samples]; so the sampled estimate is unbiased, never
negative, exactly 0 for identical samples, and its standard error is at most
log(samples) / (2 sqrt(draws)): 0.018 nats for 5 samples and the default 2000
draws (tests check it against enumeration).

A galaxy's score sums its questions' information weighted by the probability
each is asked, over all questions or the chosen ones: on top of the fewer votes,
the weight favours the questions most volunteers answer. Summing treats questions
as independent, which is the usual approximation.

**A batch** (BatchBALD, Kirsch et al. 2019) is scored by the information of all
its votes together, which is less than the sum when its galaxies teach the same
thing. That needs samples that are the same model for every galaxy: the models of
an ensemble are, but one model's dropout masks are drawn per galaxy (from its
``id_str``), so its s-th samples of two galaxies are unrelated. The joint score
therefore takes each ensemble member as one model, its predictive the mixture of
its own samples, and estimates the information about which member is right from
``draws`` joint vote outcomes (every question of every galaxy in the batch; draw
m comes from the same member for all of them). It cannot exceed log(members).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from galaxymorph.acquisition.outcomes import draw_votes, expect_over_votes, log_pmf, question_blocks, vote_counts
from galaxymorph.schema import Schema
from galaxymorph.stats import _as_samples, probability_asked

__all__ = ["acquisition_scores", "chosen_questions", "joint_information", "model_log_likelihoods",
           "mutual_information"]


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
            :func:`galaxymorph.prediction.read_concentrations`.
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
    c = _as_samples(concentrations)
    chosen = chosen_questions(schema, questions)
    counts = vote_counts(c, schema, volunteers)
    out = np.zeros((c.shape[0], len(chosen)))
    if c.shape[2] < 2:
        return out  # one sample cannot disagree with itself
    return np.maximum(expect_over_votes(c, schema, counts, chosen, _bald, out, draws, seed), 0.0)


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


def model_log_likelihoods(
    concentrations,
    schema: Schema,
    models: np.ndarray,
    volunteers: int = 40,
    questions: Sequence[str] | None = None,
    draws: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """log p(votes | model) of ``draws`` joint vote outcomes per galaxy, (galaxies, draws, models).

    ``models[s]`` says which model (ensemble member) made sample ``s``; a model's
    probability of the votes of every chosen question is the mean over its own samples.
    Draw ``m`` of every galaxy comes from the same sample, so draws with the same index
    are one joint outcome of a batch (:func:`joint_information`).
    """
    c = _as_samples(concentrations)
    models = np.asarray(models)
    if models.shape != (c.shape[2],):
        raise ValueError(f"models must name the model of each of the {c.shape[2]} samples, got shape {models.shape}")
    names, index = np.unique(models, return_inverse=True)
    each = max(1, math.ceil(draws / c.shape[2]))
    counts = vote_counts(c, schema, volunteers)
    rng = np.random.default_rng(seed)
    out = np.zeros((c.shape[0], c.shape[2] * each, len(names)))
    chosen = chosen_questions(schema, questions)
    for _, n, rows, a in question_blocks(c, schema, counts, chosen, lambda n, k: c.shape[2] * each):
        log_p = log_pmf(a, draw_votes(a, n, draws, rng))  # (g, S, draws)
        per_model = [logsumexp(log_p[:, index == j], axis=1) - math.log((index == j).sum()) for j in range(len(names))]
        out[rows] += np.stack(per_model, axis=-1)
    return out


def joint_information(log_likelihoods: np.ndarray) -> np.ndarray:
    """Information (nats) about which model is right, from votes' log-likelihoods (..., draws, models) -> (...).

    The mean over the draws of log(models) minus the entropy of which model made the
    votes. A batch's log-likelihoods are the sums of its galaxies'
    (:func:`model_log_likelihoods`); one galaxy's alone give its BALD over all its
    questions at once.
    """
    return np.maximum(_information(log_likelihoods, axis=-1).mean(axis=-1), 0.0)  # rounding clipped at 0


def _bald(a: np.ndarray, votes: np.ndarray, log_p: np.ndarray) -> np.ndarray:
    """Each outcome's information about which sample is right (a statistic for ``expect_over_votes``)."""
    return _information(log_p, axis=1)


def _information(log_p: np.ndarray, axis: int) -> np.ndarray:
    """Per outcome, log(samples) minus the entropy of which sample made it; ``axis`` is the samples'. In [0, log S]."""
    log_posterior = log_p - logsumexp(log_p, axis=axis, keepdims=True)
    return math.log(log_p.shape[axis]) + (np.exp(log_posterior) * log_posterior).sum(axis=axis)
