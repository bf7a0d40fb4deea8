"""How good are the predictions: metrics against volunteer votes and, for simulated data, the truth.

Every metric is computed per question over the galaxies that have votes for it,
and compared with a constant prediction (each answer's mean observed fraction
over the same galaxies) so that a number means something on its own.

Calibration uses the posterior predictive of the votes (a mixture over MC samples
of Beta-Binomials for the number of volunteers who answered): its randomised PIT
is uniform when the model is calibrated, so the share of observed counts inside
each central predictive interval should equal the interval's nominal level.

A predictions file is read in batches of rows (``batch_rows``): every metric is a
ratio of sums over galaxies (:class:`_Sums`), added up batch by batch, so memory
does not grow with the number of galaxies, and the result does not depend on the
batch size (the PIT's random numbers included). The constant baseline's means come
first, from the catalogue rows that were predicted, which needs only the ids.

A file from a calibrated model records the scales its concentrations carry
(metadata ``calibration``, see :mod:`galaxymorph.calibration`); its calibration
metrics are then also reported before them (``uncalibrated``), from the same batches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from scipy import special

from galaxymorph.data.catalogue import check_votes, read_table, unique_ids
from galaxymorph.kaggle import KAGGLE_PREFIX, kaggle_columns, to_kaggle
from galaxymorph.losses import DirichletMultinomialLoss
from galaxymorph.outputs import claim_folder
from galaxymorph.predict.layout import read_metadata
from galaxymorph.schema import Schema
from galaxymorph.stats import credible_intervals, expected_fractions, vote_fractions

__all__ = ["BATCH_ROWS", "LEVELS", "evaluate", "evaluate_arrays", "mixture_nll", "predictive_pit"]

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
TRUTH_PREFIX = "true_p:"
BATCH_ROWS = 65_536  # galaxies per batch: ~50 MB of float64 concentrations for 34 answers x 5 samples
PLOT_GALAXIES = 20_000  # the scatter plots show at most this many galaxies, drawn at random


def mixture_nll(concentrations: np.ndarray, counts: np.ndarray, schema: Schema) -> np.ndarray:
    """Dirichlet-Multinomial NLL per galaxy and question of the mixture over MC samples, (G, Q)."""
    loss = DirichletMultinomialLoss(schema, reduction="none")
    c = torch.tensor(np.asarray(concentrations), dtype=torch.float64)
    n = torch.tensor(np.asarray(counts), dtype=torch.float64)
    per_sample = torch.stack([loss(c[..., s], n) for s in range(c.shape[2])], dim=-1)
    return (-torch.logsumexp(-per_sample, dim=-1) + np.log(c.shape[2])).numpy()


def predictive_pit(
    concentrations: np.ndarray, counts: np.ndarray, schema: Schema, seed: int = 0, skip: Sequence[int] | None = None
) -> np.ndarray:
    """Randomised PIT of each observed count under the Beta-Binomial mixture, (G, A); NaN without votes.

    The uniform numbers are one stream from ``seed``, question by question and galaxy by
    galaxy; ``skip[q]`` is where question ``q`` starts in it (default: after the previous
    question's galaxies with votes here), so a batch of a larger set can draw what the
    whole set would.
    """
    counts = np.nan_to_num(np.asarray(counts, dtype=np.float64))
    totals = counts @ schema.answer_matrix
    sizes = np.array([sl.stop - sl.start for sl in schema.slices])
    if skip is None:
        skip = np.concatenate([[0], np.cumsum((totals > 0).sum(axis=0) * sizes)[:-1]])
    pit = np.full(counts.shape, np.nan)
    for q, sl in enumerate(schema.slices):
        rng = np.random.default_rng(seed)
        rng.bit_generator.advance(int(skip[q]))
        total = totals[:, q]
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


def _take(values: np.ndarray | None, rows: np.ndarray | slice) -> np.ndarray | None:
    return None if values is None else values[rows]


@dataclass
class _References:
    """What one set of galaxies' predictions are compared with, row-aligned."""

    counts: np.ndarray  # (G, A) votes; NaN = not provided
    observed: np.ndarray  # (G, A) vote fractions; NaN where the question has no votes
    totals: np.ndarray  # (G, Q) votes per question
    truth: np.ndarray | None  # (G, A) true probabilities where the question has votes, else NaN
    kaggle: np.ndarray | None  # (G, 37) Kaggle cumulative targets for gz2; NaN = not provided

    def take(self, rows: np.ndarray | slice) -> _References:
        """The same references for some of the galaxies."""
        return _References(*(_take(values, rows) for values in vars(self).values()))


def _references(counts: np.ndarray, schema: Schema, truth: np.ndarray | None = None,
                kaggle: np.ndarray | None = None) -> _References:
    """Observed fractions, totals and the masked truth and Kaggle targets of some galaxies' votes."""
    counts = np.asarray(counts, dtype=np.float64)
    observed = vote_fractions(np.nan_to_num(counts), schema)
    totals = np.nan_to_num(counts) @ schema.answer_matrix
    if truth is not None:
        truth = np.where(totals[:, schema.question_index] > 0, truth, np.nan)
    if schema.name != "gz2":
        kaggle = None
    elif kaggle is None:  # answers not provided (NaN) are skipped, not scored as zero
        kaggle = np.where(np.isnan(counts), np.nan, to_kaggle(np.nan_to_num(observed), schema))
    else:
        kaggle = np.asarray(kaggle, dtype=np.float64)
    return _References(counts, observed, totals, truth, kaggle)


@dataclass
class _Baselines:
    """Each column's mean over the evaluated galaxies (the constant predictions) and who has votes."""

    observed: np.ndarray
    truth: np.ndarray | None
    kaggle: np.ndarray | None
    voted: np.ndarray  # (Q,) evaluated galaxies with votes for each question


def _baselines(chunks: Iterable[tuple[_References, np.ndarray]], schema: Schema) -> _Baselines:
    """Means over ``(references, weights)`` chunks; a weight counts how often a galaxy is evaluated."""
    sums: dict[str, np.ndarray] = {}
    voted = np.zeros(schema.n_questions)
    for ref, weight in chunks:
        voted += weight @ (ref.totals > 0)
        for name in ("observed", "truth", "kaggle"):
            values = getattr(ref, name)
            if values is not None:
                finite = np.isfinite(values)
                sums[name] = sums.get(name, 0) + np.stack([weight @ np.where(finite, values, 0.0), weight @ finite])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = {name: total / n for name, (total, n) in sums.items()}
    return _Baselines(means["observed"], means.get("truth"), means.get("kaggle"), voted.astype(np.int64))


class _Sums:
    """Sums over galaxies from which every metric follows; :meth:`add` takes one batch at a time."""

    def __init__(self, schema: Schema, baselines: _Baselines, levels: Sequence[float], min_votes: int,
                 confident: float, scales: Mapping[str, float] | None = None) -> None:
        self.schema, self.baselines, self.levels = schema, baselines, list(levels)
        # the calibration scales the concentrations carry, and the same sums without them
        self.scales, self.undo = dict(scales or {}), {q: 1 / s for q, s in (scales or {}).items()}
        self.before = _Sums(schema, baselines, levels, min_votes, confident) if scales else None
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

    def add(self, conc: np.ndarray, ref: _References) -> np.ndarray:
        """Add a batch: concentrations (g, A, S) and its references; returns its predicted fractions."""
        schema, levels = self.schema, self.levels
        if self.before is not None:  # calibration imports this module, so it is imported here
            from galaxymorph.calibration import scale_concentrations

            # votes only: the truth's and Kaggle's metrics are not reported before calibration
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
    conc = np.asarray(concentrations, dtype=np.float64)
    conc = conc[..., None] if conc.ndim == 2 else conc
    ref = _references(counts, schema, truth, kaggle)
    sums = _Sums(schema, _baselines([(ref, np.ones(len(conc)))], schema), levels, min_votes, confident, scales)
    for start in range(0, len(conc), batch_rows):
        rows = slice(start, start + batch_rows)
        sums.add(conc[rows], ref.take(rows))
    return sums.result()


def _optional_columns(rows: pd.DataFrame, columns: list[str]) -> np.ndarray | None:
    """The catalogue's extra per-answer columns (truth, Kaggle fractions) as floats; None unless all are there."""
    return rows[columns].to_numpy(np.float64) if all(c in rows.columns for c in columns) else None


def _batch_concentrations(batch: pa.RecordBatch, schema: Schema) -> np.ndarray:
    """The ``conc:<answer>`` columns of a batch of prediction rows as float64 (galaxies, answers, samples)."""
    columns = [batch.column(f"conc:{a}") for a in schema.answers]
    return np.stack([c.flatten().to_numpy().reshape(len(batch), -1) for c in columns], axis=1).astype(np.float64)


def evaluate(
    predictions: str | Path,
    catalogue: str | Path | pd.DataFrame,
    out: str | Path | None = None,
    min_votes: int = 10,
    confident: float = 0.8,
    levels: Sequence[float] = LEVELS,
    batch_rows: int = BATCH_ROWS,
) -> dict[str, Any]:
    """Metrics of a predictions file against a catalogue's votes (and ``true_p:`` / ``kaggle:`` columns if present).

    The file is read ``batch_rows`` rows at a time, twice: the ids, then the concentrations;
    the catalogue's votes are held as arrays. With ``out``, writes ``evaluation.json`` and
    the plots there (scatter plots of at most ``PLOT_GALAXIES`` galaxies drawn at random).
    A file that records calibration scales is also evaluated without them (see :func:`evaluate_arrays`).
    """
    schema, meta = read_metadata(predictions)
    catalogue, path = read_table(catalogue)
    missing = [a for a in schema.answers if a not in catalogue.columns]
    if missing:
        raise ValueError(f"catalogue has no vote column {missing[0]!r} ({len(missing)} of schema {schema.name!r} "
                         "missing); evaluate against the catalogue the model's schema describes")
    name = str(path or "catalogue")
    index = pd.Index(unique_ids(catalogue, name))
    check_votes(catalogue, schema, name)
    counts = catalogue[list(schema.answers)].to_numpy(np.float64)
    truth = _optional_columns(catalogue, [TRUTH_PREFIX + a for a in schema.answers])
    kaggle = _optional_columns(catalogue, [KAGGLE_PREFIX + k for k in kaggle_columns(schema)]) if schema.name == "gz2" else None
    del catalogue
    file = pq.ParquetFile(predictions)

    def batches(columns: list[str]) -> Iterable[tuple[np.ndarray, pa.RecordBatch]]:
        """(catalogue row of each prediction, -1 if none; the batch) for every batch of the file."""
        for batch in file.iter_batches(batch_size=batch_rows, columns=columns):
            yield index.get_indexer(batch.column("id_str").to_numpy(zero_copy_only=False)), batch

    weights = np.zeros(len(index), dtype=np.int64)  # how often each catalogue row is predicted
    for rows, _ in batches(["id_str"]):
        weights += np.bincount(rows[rows >= 0], minlength=len(index))
    matched = int(weights.sum())
    if not matched:
        raise ValueError("no predicted id_str is in the catalogue; are these the right files?")
    chunks = (slice(s, s + batch_rows) for s in range(0, len(index), batch_rows))
    baselines = _baselines(((_references(counts[c], schema, _take(truth, c), _take(kaggle, c)), weights[c])
                            for c in chunks), schema)
    sums = _Sums(schema, baselines, levels, min_votes, confident, meta.get("calibration"))
    shown = np.sort(np.random.default_rng(0).choice(matched, min(matched, PLOT_GALAXIES), replace=False))
    plotted: list[tuple[np.ndarray, _References]] = []
    for rows, batch in batches(["id_str"] + [f"conc:{a}" for a in schema.answers]):
        keep = rows >= 0
        if not keep.any():
            continue
        rows = rows[keep]
        ref = _references(counts[rows], schema, _take(truth, rows), _take(kaggle, rows))
        predicted = sums.add(_batch_concentrations(batch, schema)[keep], ref)
        offset = sums.galaxies - len(rows)
        pick = shown[(shown >= offset) & (shown < sums.galaxies)] - offset
        plotted.append((predicted[pick], ref.take(pick)))
    result = sums.result()
    result["unmatched_predictions"] = int(file.metadata.num_rows - matched)
    if out is not None:
        from galaxymorph.report.plots import PLOT_FILES, plot_evaluation

        out = Path(out)
        claim_folder(out, "evaluation.json", own_files=PLOT_FILES)
        out.mkdir(parents=True, exist_ok=True)
        predicted = np.concatenate([p for p, _ in plotted])
        observed = np.concatenate([r.observed for _, r in plotted])
        truth = None if truth is None else np.concatenate([r.truth for _, r in plotted])
        result["plots"] = plot_evaluation(result, schema, predicted, observed, truth, out)
        (out / "evaluation.json").write_text(json.dumps(result, indent=2, allow_nan=True))
    return result
