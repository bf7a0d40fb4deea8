"""What predictions are compared with: the votes (and truth, Kaggle targets) of the evaluated galaxies, and the constant baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from galaxymorph.kaggle import to_kaggle
from galaxymorph.schema import Schema
from galaxymorph.stats import vote_fractions

__all__ = ["Baselines", "References", "take_rows"]


def take_rows(values: np.ndarray | None, rows: np.ndarray | slice) -> np.ndarray | None:
    """Some rows of an optional array (truth, Kaggle targets): None stays None."""
    return None if values is None else values[rows]


@dataclass
class References:
    """What one set of galaxies' predictions are compared with, row-aligned."""

    counts: np.ndarray  # (G, A) votes; NaN = not provided
    observed: np.ndarray  # (G, A) vote fractions; NaN where the question has no votes
    totals: np.ndarray  # (G, Q) votes per question
    truth: np.ndarray | None  # (G, A) true probabilities where the question has votes, else NaN
    kaggle: np.ndarray | None  # (G, 37) Kaggle cumulative targets for gz2; NaN = not provided

    @classmethod
    def of_votes(cls, counts: np.ndarray, schema: Schema, truth: np.ndarray | None = None,
                 kaggle: np.ndarray | None = None) -> References:
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
        return cls(counts, observed, totals, truth, kaggle)

    def take(self, rows: np.ndarray | slice) -> References:
        """The same references for some of the galaxies."""
        return References(*(take_rows(values, rows) for values in vars(self).values()))


@dataclass
class Baselines:
    """Each column's mean over the evaluated galaxies (the constant predictions) and who has votes."""

    observed: np.ndarray
    truth: np.ndarray | None
    kaggle: np.ndarray | None
    voted: np.ndarray  # (Q,) evaluated galaxies with votes for each question

    @classmethod
    def over(cls, chunks: Iterable[tuple[References, np.ndarray]], schema: Schema) -> Baselines:
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
        return cls(means["observed"], means.get("truth"), means.get("kaggle"), voted.astype(np.int64))
