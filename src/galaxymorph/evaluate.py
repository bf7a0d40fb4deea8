"""How good are the predictions: metrics against volunteer votes and, for simulated data, the truth.

Every metric is computed per question over the galaxies that have votes for it,
and compared with a constant prediction (each answer's mean observed fraction
over the same galaxies) so that a number means something on its own.

Calibration uses the posterior predictive of the votes (a mixture over MC samples
of Beta-Binomials for the number of volunteers who answered): its randomised PIT
is uniform when the model is calibrated, so the share of observed counts inside
each central predictive interval should equal the interval's nominal level.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import special

from galaxymorph.data.catalogue import check_votes, read_table, unique_ids
from galaxymorph.kaggle import KAGGLE_PREFIX, kaggle_columns, kaggle_rmse, to_kaggle
from galaxymorph.losses import DirichletMultinomialLoss
from galaxymorph.outputs import claim_folder
from galaxymorph.predict import read_concentrations, read_predictions
from galaxymorph.schema import Schema
from galaxymorph.stats import credible_intervals, expected_fractions, vote_fractions

__all__ = ["LEVELS", "evaluate", "evaluate_arrays", "mixture_nll", "predictive_pit"]

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
TRUTH_PREFIX = "true_p:"


def mixture_nll(concentrations: np.ndarray, counts: np.ndarray, schema: Schema) -> np.ndarray:
    """Dirichlet-Multinomial NLL per galaxy and question of the mixture over MC samples, (G, Q)."""
    loss = DirichletMultinomialLoss(schema, reduction="none")
    c = torch.tensor(np.asarray(concentrations), dtype=torch.float64)
    n = torch.tensor(np.asarray(counts), dtype=torch.float64)
    per_sample = torch.stack([loss(c[..., s], n) for s in range(c.shape[2])], dim=-1)
    return (-torch.logsumexp(-per_sample, dim=-1) + np.log(c.shape[2])).numpy()


def predictive_pit(concentrations: np.ndarray, counts: np.ndarray, schema: Schema, seed: int = 0) -> np.ndarray:
    """Randomised PIT of each observed count under the Beta-Binomial mixture, (G, A); NaN without votes."""
    rng = np.random.default_rng(seed)
    counts = np.nan_to_num(np.asarray(counts, dtype=np.float64))
    pit = np.full(counts.shape, np.nan)
    for sl in schema.slices:
        total = counts[:, sl].sum(axis=1)
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


def _errors(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    keep = np.isfinite(reference) & np.isfinite(predicted)
    diff = predicted[keep] - reference[keep]
    if not diff.size:
        return {"mae": float("nan"), "rmse": float("nan"), "n": 0}
    return {"mae": float(np.abs(diff).mean()), "rmse": float(np.sqrt((diff ** 2).mean())), "n": int(keep.sum())}


def _constant(reference: np.ndarray) -> np.ndarray:
    """The constant prediction: each answer's mean reference fraction, broadcast to all galaxies."""
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(np.where(np.isfinite(reference), reference, np.nan), axis=0, keepdims=True)
    return np.broadcast_to(mean, reference.shape)


def evaluate_arrays(
    concentrations: np.ndarray,
    counts: np.ndarray,
    schema: Schema,
    truth: np.ndarray | None = None,
    min_votes: int = 10,
    confident: float = 0.8,
    levels: Sequence[float] = LEVELS,
    kaggle: np.ndarray | None = None,
) -> dict[str, Any]:
    """All metrics from concentrations (G, A, S), vote counts (G, A) and optional true probabilities (G, A).

    ``kaggle``: for ``gz2``, the Kaggle cumulative fractions (G, 37; NaN = not provided) that the
    Kaggle RMSE is scored against, as the benchmarks score it. Without them the targets are
    derived from the counts, which rounding has moved away from the original fractions.
    """
    conc = np.asarray(concentrations, dtype=np.float64)
    conc = conc[..., None] if conc.ndim == 2 else conc
    counts = np.asarray(counts, dtype=np.float64)
    predicted = expected_fractions(conc, schema)
    observed = vote_fractions(np.nan_to_num(counts), schema)
    baseline = _constant(observed)
    totals = np.nan_to_num(counts) @ schema.answer_matrix
    nll = mixture_nll(conc, counts, schema)
    pit = predictive_pit(conc, counts, schema)
    inside = {lv: np.abs(pit - 0.5) <= lv / 2 for lv in levels}
    if truth is not None:
        truth = np.where(totals[:, schema.question_index] > 0, truth, np.nan)
        bounds = credible_intervals(conc, schema, [p for lv in levels for p in ((1 - lv) / 2, (1 + lv) / 2)])
    questions: dict[str, Any] = {}
    for q, (name, sl) in enumerate(zip(schema.question_names, schema.slices)):
        voted = totals[:, q] > 0
        answers = schema.answers[sl]
        entry: dict[str, Any] = {
            "galaxies": int(voted.sum()),
            "nll": float(nll[voted, q].mean()) if voted.any() else float("nan"),
            "model": _errors(predicted[:, sl], observed[:, sl]),
            "constant": _errors(baseline[:, sl], observed[:, sl]),
            "coverage": {str(lv): float(np.nanmean(np.where(np.isnan(pit[:, sl]), np.nan, inside[lv][:, sl])))
                         if voted.any() else float("nan") for lv in levels},
        }
        sure = voted & (totals[:, q] >= min_votes) & (np.nan_to_num(observed[:, sl]).max(axis=1) > confident)
        truth_label = observed[sure, sl].argmax(axis=1)
        guess = predicted[sure, sl].argmax(axis=1)
        matrix = np.zeros((len(answers), len(answers)), dtype=int)
        np.add.at(matrix, (truth_label, guess), 1)
        entry["confident"] = {
            "galaxies": int(sure.sum()),
            "accuracy": float((truth_label == guess).mean()) if sure.any() else float("nan"),
            "confusion": matrix.tolist(),
            "answers": list(answers),
        }
        if truth is not None:
            entry["truth"] = {
                "model": _errors(predicted[:, sl], truth[:, sl]),
                "noise_floor": _errors(observed[:, sl], truth[:, sl]),
                "constant": _errors(_constant(truth)[:, sl], truth[:, sl]),
                "coverage": {str(lv): float(np.nanmean(np.where(np.isnan(truth[:, sl]), np.nan,
                                                                (bounds[:, sl, 2 * i] <= truth[:, sl]) & (truth[:, sl] <= bounds[:, sl, 2 * i + 1]))))
                             if voted.any() else float("nan") for i, lv in enumerate(levels)},
            }
        questions[name] = entry
    voted_any = (totals > 0).any(axis=1)
    result: dict[str, Any] = {
        "schema": schema.name,
        "galaxies": int(len(conc)),
        "samples": int(conc.shape[2]),
        "min_votes": min_votes,
        "confident_threshold": confident,
        "levels": list(levels),
        "overall": {
            "nll_per_galaxy": float(nll[voted_any].sum(axis=1).mean()) if voted_any.any() else float("nan"),
            "model": _errors(predicted, observed),
            "constant": _errors(baseline, observed),
            "coverage": {str(lv): float(np.nanmean(np.where(np.isnan(pit), np.nan, inside[lv]))) for lv in levels},
        },
        "questions": questions,
    }
    if truth is not None:
        result["overall"]["truth"] = {
            "model": _errors(predicted, truth),
            "noise_floor": _errors(observed, truth),
            "constant": _errors(_constant(truth), truth),
        }
    if schema.name == "gz2":
        # answers not provided (NaN) are skipped, not scored as zero
        target = (np.where(np.isnan(counts), np.nan, to_kaggle(np.nan_to_num(observed), schema)) if kaggle is None
                  else np.asarray(kaggle, dtype=np.float64))
        result["overall"]["kaggle_rmse"] = {
            "model": kaggle_rmse(to_kaggle(predicted, schema), target),
            "constant": kaggle_rmse(_constant(target), target),
        }
    return result


def _optional_columns(rows: pd.DataFrame, columns: list[str]) -> np.ndarray | None:
    """The catalogue's extra per-answer columns (truth, Kaggle fractions) as floats; None unless all are there."""
    return rows[columns].to_numpy(np.float64) if all(c in rows.columns for c in columns) else None


def evaluate(
    predictions: str | Path,
    catalogue: str | Path | pd.DataFrame,
    out: str | Path | None = None,
    min_votes: int = 10,
    confident: float = 0.8,
    levels: Sequence[float] = LEVELS,
) -> dict[str, Any]:
    """Metrics of a predictions file against a catalogue's votes (and ``true_p:`` / ``kaggle:`` columns if present).

    With ``out``, writes ``evaluation.json`` and the plots there.
    """
    frame, schema, _ = read_predictions(predictions)
    catalogue, path = read_table(catalogue)
    missing = [a for a in schema.answers if a not in catalogue.columns]
    if missing:
        raise ValueError(f"catalogue has no vote column {missing[0]!r} ({len(missing)} of schema {schema.name!r} "
                         "missing); evaluate against the catalogue the model's schema describes")
    name = str(path or "catalogue")
    ids = unique_ids(catalogue, name)
    check_votes(catalogue, schema, name)
    catalogue = catalogue.set_index(ids)
    matched = frame[frame["id_str"].isin(catalogue.index)]
    if matched.empty:
        raise ValueError("no predicted id_str is in the catalogue; are these the right files?")
    rows = catalogue.loc[matched["id_str"]]
    truth = _optional_columns(rows, [TRUTH_PREFIX + a for a in schema.answers])
    kaggle = _optional_columns(rows, [KAGGLE_PREFIX + k for k in kaggle_columns(schema)]) if schema.name == "gz2" else None
    result = evaluate_arrays(read_concentrations(matched, schema), rows[list(schema.answers)].to_numpy(np.float64),
                             schema, truth, min_votes, confident, levels, kaggle)
    result["unmatched_predictions"] = int(len(frame) - len(matched))
    if out is not None:
        from galaxymorph.report.plots import PLOT_FILES, plot_evaluation

        out = Path(out)
        claim_folder(out, "evaluation.json", own_files=PLOT_FILES)
        out.mkdir(parents=True, exist_ok=True)
        observed = vote_fractions(np.nan_to_num(rows[list(schema.answers)].to_numpy(np.float64)), schema)
        predicted = matched[[f"{a}_fraction" for a in schema.answers]].to_numpy(np.float64)
        result["plots"] = plot_evaluation(result, schema, predicted, observed, truth, out)
        (out / "evaluation.json").write_text(json.dumps(result, indent=2, allow_nan=True))
    return result
