"""Post-hoc calibration: a scale per question on Dirichlet concentrations, a temperature on a classifier's logits.

Dropout in the head alone gives MC samples that agree too well, so the predictive
intervals hold fewer held-out votes than they promise (GZ2: 84-86% in the 90%
intervals). Multiplying a question's concentrations by ``s`` keeps every expected
vote fraction (``a_k / sum a``) and widens (``s < 1``) or narrows (``s > 1``) the
predictive distribution of the votes. ``s`` is fitted by the likelihood the model was
trained on: the Dirichlet-Multinomial NLL of held-out votes under the mixture of MC
samples, each question on its own (the questions' NLLs are separate terms), by a
log-spaced grid search refined once around its best point.

A fine-tuned classifier gets the same treatment through its one parameter of spread, a
temperature ``T`` on its logits (Guo et al. 2017): ``softmax(logits / T)`` keeps every
class ranking and softens (``T > 1``) or sharpens (``T < 1``) the probabilities. ``T``
is fitted by the likelihood of the validation labels under the mixture of MC samples,
with a log-normal prior on ``T``: a few hundred labels leave few validation galaxies,
and when the model already classifies all of them right the likelihood alone would
sharpen it without bound.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy import optimize, special

from galaxymorph.likelihood import mixture_nll
from galaxymorph.schema import Schema

__all__ = ["fit_scales", "fit_temperature", "scale_concentrations"]

GRID = np.geomspace(0.05, 20.0, 61)  # wide enough for posteriors 20x too narrow or too wide
TEMPERATURE_PRIOR_WIDTH = 0.5  # of log T: T within a factor 1.65 of 1 is unremarkable, a factor 4.5 needs strong evidence


def scale_concentrations(concentrations: np.ndarray, schema: Schema, scales: Mapping[str, float]) -> np.ndarray:
    """(galaxies, answers[, samples]) concentrations with each question's answers multiplied by its scale (default 1)."""
    per_answer = np.array([scales.get(schema.question_names[q], 1.0) for q in schema.question_index])
    shape = (1, -1) + (1,) * (np.ndim(concentrations) - 2)
    return np.asarray(concentrations, dtype=np.float64) * per_answer.reshape(shape)


def _nll_by_question(concentrations: np.ndarray, counts: np.ndarray, schema: Schema, scales: np.ndarray) -> np.ndarray:
    """Summed NLL of every question at one scale per question, (questions,)."""
    named = dict(zip(schema.question_names, scales))
    return mixture_nll(scale_concentrations(concentrations, schema, named), counts, schema).sum(axis=0)


def fit_scales(concentrations: np.ndarray, counts: np.ndarray, schema: Schema) -> dict[str, float]:
    """The scale per question that maximises the likelihood of ``counts`` (galaxies, answers) under the MC mixture.

    A question no galaxy answered keeps scale 1. Example: posteriors twice too
    confident come back with scales near 0.5.
    """
    conc = np.asarray(concentrations, dtype=np.float64)
    conc = conc[..., None] if conc.ndim == 2 else conc

    def best_of(candidates: np.ndarray) -> np.ndarray:  # (tries, questions) -> each question's best scale
        nll = np.stack([_nll_by_question(conc, counts, schema, row) for row in candidates])
        return candidates[np.argmin(nll, axis=0), np.arange(schema.n_questions)]

    coarse = best_of(np.repeat(GRID[:, None], schema.n_questions, axis=1))
    step = GRID[1] / GRID[0]
    fine = best_of(np.clip(coarse[None, :] * np.geomspace(1 / step, step, 11)[:, None], GRID[0], GRID[-1]))
    answered = [np.nansum(counts[:, s]) > 0 for s in schema.slices]
    return {name: float(s) if ok else 1.0 for name, s, ok in zip(schema.question_names, fine, answered)}


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature of a classifier's logits that best explains ``labels`` (galaxies,) as class indices.

    ``probabilities``: (galaxies, classes[, samples]) softmax outputs at ``T = 1``, as
    ``predict`` samples them (their logarithms are the logits up to a constant per
    sample, which the softmax ignores). Example: a model whose logits are three times
    too large comes back with ``T`` near 3.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    floor = np.finfo(np.float32).tiny  # a probability predict's float32 rounded to 0 was at most about this
    log_p = np.log(np.clip(p[..., None] if p.ndim == 2 else p, floor, None))
    chosen = np.asarray(labels, dtype=np.int64)
    samples = log_p.shape[2]

    def neg_log_posterior(log_t: float) -> float:
        tempered = special.log_softmax(log_p / np.exp(log_t), axis=1)[np.arange(len(chosen)), chosen]  # (galaxies, S)
        nll = -(special.logsumexp(tempered, axis=1) - np.log(samples)).sum()
        return float(nll + log_t ** 2 / (2 * TEMPERATURE_PRIOR_WIDTH ** 2))

    best = optimize.minimize_scalar(neg_log_posterior, bounds=(np.log(GRID[0]), np.log(GRID[-1])), method="bounded")
    return float(np.exp(best.x))
