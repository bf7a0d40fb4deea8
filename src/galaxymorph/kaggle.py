"""The Kaggle "Galaxy Challenge" view of GZ2: column names, cumulative format, RMSE.

The ``gz2`` schema lists questions and answers in the Kaggle column order, so the
k-th answer of the q-th question is ``Class{q}.{k}``.
"""

from __future__ import annotations

import numpy as np

from galaxymorph.schema import Schema, get_schema
from galaxymorph.stats import from_cumulative, to_cumulative

__all__ = ["KAGGLE_PREFIX", "KAGGLE_UNIT_QUESTIONS", "kaggle_columns", "kaggle_rmse", "to_kaggle", "from_kaggle"]

# Kaggle normalised "anything odd?" to sum to 1 over all volunteers, although in
# GZ2 it is reached only by those who did not answer "star or artifact".
KAGGLE_UNIT_QUESTIONS = ("something-odd",)

# A gz2 catalogue keeps the original Kaggle fractions beside the vote counts derived
# from them (``kaggle:Class1.1`` ...), so that scores use the competition's targets.
KAGGLE_PREFIX = "kaggle:"


def kaggle_columns(schema: Schema | None = None) -> dict[str, str]:
    """Map Kaggle names (``Class1.1`` ...) to the ``gz2`` schema's answer columns."""
    schema = schema or get_schema("gz2")
    return {
        f"Class{qi + 1}.{ai + 1}": column
        for qi, question in enumerate(schema.questions)
        for ai, column in enumerate(question.columns)
    }


def to_kaggle(fractions, schema: Schema | None = None) -> np.ndarray:
    """Per-question vote fractions (galaxies, 37) -> Kaggle cumulative fractions."""
    return to_cumulative(fractions, schema or get_schema("gz2"), KAGGLE_UNIT_QUESTIONS)


def from_kaggle(cumulative, schema: Schema | None = None) -> np.ndarray:
    """Kaggle cumulative fractions -> per-question vote fractions (NaN where nobody reached)."""
    return from_cumulative(cumulative, schema or get_schema("gz2"))


def kaggle_rmse(predicted_cumulative, true_cumulative) -> float:
    """The competition's score: RMSE over all 37 values of every galaxy (NaN entries skipped)."""
    p = np.asarray(predicted_cumulative, dtype=np.float64)
    t = np.asarray(true_cumulative, dtype=np.float64)
    keep = ~np.isnan(t)
    return float(np.sqrt(np.mean((p[keep] - t[keep]) ** 2)))
