"""Every metric as a ratio of sums over galaxies, added up one batch at a time.

Memory does not grow with the number of galaxies, and the result does not depend on
the batch size (the PIT's random numbers included: each batch draws where the whole
set would). Given the calibration scales the concentrations carry, the same batches are
also scored without them (``uncalibrated``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from galaxymorph.calibration import scale_concentrations
from galaxymorph.evaluation.references import Baselines, References
from galaxymorph.kaggle import to_kaggle
from galaxymorph.likelihood import mixture_nll, predictive_pit
from galaxymorph.schema import Schema
from galaxymorph.stats import credible_intervals, expected_fractions

__all__ = ["BATCH_ROWS", "LEVELS", "MetricSums", "check_min_votes", "evaluate_arrays"]

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
BATCH_ROWS = 65_536  # galaxies per batch: ~50 MB of float64 concentrations for 34 answers x 5 samples


def check_min_votes(min_votes: int) -> None:
    """Refuse a negative vote threshold before any work (every galaxy passes it, silently)."""
    if min_votes < 0:
        raise ValueError(f"min_votes={min_votes} must be >= 0: the votes a question needs to count in the "
                         "confident-galaxy accuracy (--min-votes)")


class MetricSums:
    """Sums over galaxies from which every metric follows; :meth:`add` takes one batch at a time."""

    def __init__(self, schema: Schema, baselines: Baselines, levels: Sequence[float], min_votes: int,
                 confident: float, scales: Mapping[str, float] | None = None) -> None:
        self.schema, self.baselines, self.levels = schema, baselines, list(levels)
        # the calibration scales the concentrations carry, and the same sums without them
        self.scales, self.undo = dict(scales or {}), {q: 1 / s for q, s in (scales or {}).items()}
        self.before = MetricSums(schema, baselines, levels, min_votes, confident) if scales else None
        self.min_votes, self.confident = min_votes, confident
        self.sizes = np.array([sl.stop - sl.start for sl in schema.slices])
        self.errors: dict[str, np.ndarray] = {}  # (sum |d|, sum d^2, count) per column
        self.nll, self.voted = np.zeros(schema.n_questions), np.zeros(schema.n_questions, dtype=np.int64)
        self.nll_galaxies, self.voted_any, self.galaxies, self.samples = 0.0, 0, 0, 0
        self.coverage = np.zeros((len(self.levels) + 1, schema.n_answers))  # row 0: counts with a PIT; then inside
        self.truth_coverage = np.zeros_like(self.coverage)  # row 0: known true values; then inside each interval
        self.confusion = [np.zeros((k, k), dtype=np.int64) for k in self.sizes]
        # where each question's PIT draws start in the random stream, and how many galaxies drew so far
        self.pit_start = np.concatenate([[0], np.cumsum(baselines.voted * self.sizes)[:-1]])
        self.pit_seen = np.zeros(schema.n_questions, dtype=np.int64)

    def _add_errors(self, name: str, predicted: np.ndarray, reference: np.ndarray) -> None:
        keep = np.isfinite(reference) & np.isfinite(predicted)
        diff = np.where(keep, predicted - reference, 0.0)
        self.errors[name] = self.errors.get(name, 0) + np.stack([np.abs(diff).sum(0), (diff ** 2).sum(0), keep.sum(0)])

    def _add_inside(self, table: np.ndarray, known: np.ndarray, inside: Iterable[np.ndarray]) -> None:
        table[0] += known.sum(0)
        for i, hit in enumerate(inside):
            table[i + 1] += (known & hit).sum(0)

    def add(self, conc: np.ndarray, ref: References) -> np.ndarray:
        """Add a batch: concentrations (g, A, S) and its references; returns its predicted fractions."""
        schema, levels = self.schema, self.levels
        if self.before is not None:  # votes only: the truth's and Kaggle's metrics are not reported before calibration
            self.before.add(scale_concentrations(conc, schema, self.undo), replace(ref, truth=None, kaggle=None))
        predicted = expected_fractions(conc, schema)
        self.galaxies, self.samples = self.galaxies + len(conc), conc.shape[2]
        self._add_errors("model", predicted, ref.observed)
        self._add_errors("constant", np.broadcast_to(self.baselines.observed, predicted.shape), ref.observed)
        voted = ref.totals > 0
        nll = mixture_nll(conc, ref.counts, schema)
        self.nll += np.where(voted, nll, 0.0).sum(0)
        self.voted += voted.sum(0)
        self.nll_galaxies += float(nll[voted.any(1)].sum())
        self.voted_any += int(voted.any(1).sum())
        pit = predictive_pit(conc, ref.counts, schema, skip=self.pit_start + self.pit_seen * self.sizes)
        self.pit_seen += voted.sum(0)
        self._add_inside(self.coverage, ~np.isnan(pit), (np.abs(pit - 0.5) <= lv / 2 for lv in levels))
        for q, sl in enumerate(schema.slices):
            sure = voted[:, q] & (ref.totals[:, q] >= self.min_votes) & (
                np.nan_to_num(ref.observed[:, sl]).max(axis=1) > self.confident)
            np.add.at(self.confusion[q], (ref.observed[sure, sl].argmax(1), predicted[sure, sl].argmax(1)), 1)
        if ref.truth is not None:
            self._add_errors("truth", predicted, ref.truth)
            self._add_errors("noise_floor", ref.observed, ref.truth)
            self._add_errors("truth_constant", np.broadcast_to(self.baselines.truth, predicted.shape), ref.truth)
            bounds = credible_intervals(conc, schema, [p for lv in levels for p in ((1 - lv) / 2, (1 + lv) / 2)])
            self._add_inside(self.truth_coverage, ~np.isnan(ref.truth),
                             ((bounds[..., 2 * i] <= ref.truth) & (ref.truth <= bounds[..., 2 * i + 1])
                              for i in range(len(levels))))
        if ref.kaggle is not None:
            self._add_errors("kaggle", to_kaggle(predicted, schema), ref.kaggle)
            self._add_errors("kaggle_constant", np.broadcast_to(self.baselines.kaggle, ref.kaggle.shape), ref.kaggle)
        return predicted

    def _error(self, name: str, columns: slice = slice(None)) -> dict[str, float]:
        total, squares, n = self.errors[name][:, columns].sum(axis=1)
        if not n:
            return {"mae": float("nan"), "rmse": float("nan"), "n": 0}
        return {"mae": float(total / n), "rmse": float(np.sqrt(squares / n)), "n": int(n)}

    def _coverage(self, table: np.ndarray, columns: slice = slice(None)) -> dict[str, float]:
        n = table[0, columns].sum()
        return {str(lv): float(table[i + 1, columns].sum() / n) if n else float("nan")
                for i, lv in enumerate(self.levels)}

    def result(self) -> dict[str, Any]:
        """The metrics, in the layout of ``evaluation.json``."""
        schema, has_truth = self.schema, "truth" in self.errors
        questions: dict[str, Any] = {}
        for q, (name, sl) in enumerate(zip(schema.question_names, schema.slices)):
            matrix = self.confusion[q]
            entry: dict[str, Any] = {
                "galaxies": int(self.voted[q]),
                "nll": float(self.nll[q] / self.voted[q]) if self.voted[q] else float("nan"),
                "model": self._error("model", sl),
                "constant": self._error("constant", sl),
                "coverage": self._coverage(self.coverage, sl),
                "confident": {"galaxies": int(matrix.sum()),
                              "accuracy": float(np.trace(matrix) / matrix.sum()) if matrix.sum() else float("nan"),
                              "confusion": matrix.tolist(), "answers": list(schema.answers[sl])},
            }
            if has_truth:
                entry["truth"] = {"model": self._error("truth", sl), "noise_floor": self._error("noise_floor", sl),
                                  "constant": self._error("truth_constant", sl),
                                  "coverage": self._coverage(self.truth_coverage, sl)}
            questions[name] = entry
        overall: dict[str, Any] = {
            "nll_per_galaxy": self.nll_galaxies / self.voted_any if self.voted_any else float("nan"),
            "model": self._error("model"),
            "constant": self._error("constant"),
            "coverage": self._coverage(self.coverage),
        }
        if has_truth:
            overall["truth"] = {"model": self._error("truth"), "noise_floor": self._error("noise_floor"),
                                "constant": self._error("truth_constant")}
        if "kaggle" in self.errors:
            overall["kaggle_rmse"] = {"model": self._error("kaggle")["rmse"],
                                      "constant": self._error("kaggle_constant")["rmse"]}
        result = {"schema": schema.name, "galaxies": self.galaxies, "samples": self.samples,
                  "min_votes": self.min_votes, "confident_threshold": self.confident, "levels": self.levels,
                  "overall": overall, "questions": questions}
        if self.before is not None:
            result["uncalibrated"] = _calibration_metrics(self.before.result())
            result["calibration_scales"] = self.scales
        return result


def _calibration_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """The parts of a result that calibration changes (the vote fractions it keeps): coverage and NLL."""
    return {"overall": {key: result["overall"][key] for key in ("coverage", "nll_per_galaxy")},
            "questions": {name: {key: entry[key] for key in ("galaxies", "nll", "coverage")}
                          for name, entry in result["questions"].items()}}


def evaluate_arrays(
    concentrations: np.ndarray,
    counts: np.ndarray,
    schema: Schema,
    truth: np.ndarray | None = None,
    min_votes: int = 10,
    confident: float = 0.8,
    levels: Sequence[float] = LEVELS,
    kaggle: np.ndarray | None = None,
    batch_rows: int = BATCH_ROWS,
    scales: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """All metrics from concentrations (G, A, S), vote counts (G, A) and optional true probabilities (G, A).

    ``kaggle``: for ``gz2``, the Kaggle cumulative fractions (G, 37; NaN = not provided) that the
    Kaggle RMSE is scored against, as the benchmarks score it. Without them the targets are
    derived from the counts, which rounding has moved away from the original fractions.
    ``scales``: the calibration scale per question that the concentrations carry; the result then
    adds ``uncalibrated`` (coverage and NLL without them) and ``calibration_scales``.
    """
    check_min_votes(min_votes)
    conc = np.asarray(concentrations, dtype=np.float64)
    conc = conc[..., None] if conc.ndim == 2 else conc
    ref = References.of_votes(counts, schema, truth, kaggle)
    sums = MetricSums(schema, Baselines.over([(ref, np.ones(len(conc)))], schema), levels, min_votes, confident, scales)
    for start in range(0, len(conc), batch_rows):
        rows = slice(start, start + batch_rows)
        sums.add(conc[rows], ref.take(rows))
    return sums.result()
