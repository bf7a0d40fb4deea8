"""The Kaggle "Galaxy Challenge" GZ2 labels as a ``gz2`` catalogue of vote counts.

Kaggle gives 37 *weighted cumulative* vote fractions per galaxy, not counts. The
Dirichlet-Multinomial likelihood needs counts, so this conversion assumes:

1. Every galaxy was classified by ``volunteers`` people (default 40; GZ2 galaxies
   received about 40-50 classifications each).
2. The number who answered question q is ``N_q = volunteers * reach_q``, where
   ``reach_q`` is the share of volunteers that reached q: the sum of q's
   cumulative fractions. For "anything odd?", which Kaggle normalised to sum to 1,
   the reach is instead ``1 - (root answers that end the classification)``, i.e.
   ``1 - Class1.3`` ("star or artifact"): every other path leads to it in GZ2.
3. ``count_a = round(fraction_a * N_q)`` with ``fraction_a`` the per-question
   fraction (:func:`galaxymorph.kaggle.from_kaggle`). Rounding makes a question's
   counts sum to ``round(N_q)`` only approximately (within half a vote per answer).
   The weights of GZ2's volunteer weighting are thereby treated as plain votes.
4. A question whose columns are empty (NaN) in ``labels.csv`` was not provided
   (4,000 of the 9,728 galaxies have only questions 1, 2, 6, 7 and 8): its counts
   stay NaN, which costs nothing in the loss. A provided question nobody reached
   (cumulative fractions all 0) gets zero counts.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from galaxymorph.data.catalogue import read_table
from galaxymorph.kaggle import (
    KAGGLE_PREFIX,
    KAGGLE_UNIT_QUESTIONS,
    from_kaggle,
    kaggle_columns,
)
from galaxymorph.outputs import check_suffix, claim_file
from galaxymorph.schema import Schema, get_schema

__all__ = ["question_reach", "kaggle_to_catalogue", "kaggle_to_counts"]


def _is_converted(path: Path) -> bool:
    """A catalogue this module wrote (it carries the ``kaggle:`` fraction columns), so it may be rewritten."""
    try:
        names = (pq.read_schema(path).names if path.suffix.lower() in (".parquet", ".pq")
                 else path.open().readline().split(","))
    except (OSError, ValueError):
        return False
    return any(name.strip().startswith(KAGGLE_PREFIX) for name in names)


def _terminal_root_answers(schema: Schema) -> list[int]:
    """Answers of first questions that lead to no further question (GZ2: star or artifact)."""
    leading = {p for parents in schema.parent_answers for p in parents}
    return [
        a
        for q, question in enumerate(schema.questions)
        if question.is_root
        for a in range(schema.slices[q].start, schema.slices[q].stop)
        if a not in leading
    ]


def question_reach(cumulative: np.ndarray, schema: Schema) -> np.ndarray:
    """Share of volunteers reaching each question, (galaxies, questions); NaN where not provided."""
    reach = np.stack([cumulative[:, cols].sum(axis=1) for cols in schema.slices], axis=1)
    stop_early = cumulative[:, _terminal_root_answers(schema)].sum(axis=1)
    for name in KAGGLE_UNIT_QUESTIONS:
        reach[:, schema.question_names.index(name)] = 1.0 - stop_early
    return reach


def kaggle_to_counts(cumulative: np.ndarray, volunteers: float = 40, schema: Schema | None = None) -> np.ndarray:
    """Kaggle cumulative fractions (galaxies, 37) -> vote counts (float, NaN = not provided).

    See the module docstring for the assumptions.
    """
    if volunteers <= 0:
        raise ValueError(f"volunteers must be positive, got {volunteers}")
    schema = schema or get_schema("gz2")
    cumulative = np.asarray(cumulative, dtype=np.float64)
    fractions = from_kaggle(cumulative, schema)  # NaN where a question's sum is 0 or missing
    per_answer_n = volunteers * np.clip(question_reach(cumulative, schema), 0.0, 1.0)[:, schema.question_index]
    counts = np.round(np.nan_to_num(fractions, nan=0.0) * per_answer_n)
    return np.where(np.isnan(cumulative), np.nan, counts)


def kaggle_to_catalogue(
    labels: str | Path,
    images: str | Path,
    volunteers: float = 40,
    out: str | Path | None = None,
    suffix: str = ".jpg",
) -> pd.DataFrame:
    """Kaggle ``labels.csv`` + image folder -> a ``gz2`` catalogue (``id_str``, ``file_loc``, counts).

    ``file_loc`` is ``<images>/<GalaxyID><suffix>``, written relative to ``out``'s folder
    when the images live under it, else absolute. Writes ``out`` (Parquet or CSV) if given.
    The Kaggle fractions are kept as ``kaggle:Class1.1`` ... columns for evaluation.
    """
    schema = get_schema("gz2")
    if out is not None:
        check_suffix(out, (".parquet", ".pq", ".csv"), "a Parquet or CSV catalogue")
        claim_file(out, is_own=Path(out).is_file() and _is_converted(Path(out)))
    if not Path(images).is_dir():
        raise FileNotFoundError(f"--images {images}: no such folder (the Kaggle images_training_rev1 folder)")
    table, _ = read_table(labels)
    names = kaggle_columns(schema)
    missing = [c for c in ["GalaxyID", *names] if c not in table.columns]
    if missing:
        raise ValueError(f"{labels}: not a Kaggle GZ2 labels file, missing columns {missing[:5]}")
    cumulative = table[list(names)].to_numpy(np.float64)
    counts = kaggle_to_counts(cumulative, volunteers, schema)
    images = Path(images).resolve()
    base = Path(out).resolve().parent if out is not None else None
    ids = table["GalaxyID"].astype(str)

    def location(galaxy: str) -> str:
        path = images / f"{galaxy}{suffix}"
        return os.path.relpath(path, base) if base is not None and base in path.parents else str(path)

    catalogue = pd.concat(
        [
            pd.DataFrame({"id_str": ids, "file_loc": ids.map(location)}),
            pd.DataFrame(counts.astype(np.float32), columns=list(names.values())),
            pd.DataFrame(cumulative, columns=[KAGGLE_PREFIX + k for k in names]),
        ],
        axis=1,
    )
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        catalogue.to_parquet(out, index=False) if out.suffix.lower() in (".parquet", ".pq") else catalogue.to_csv(out, index=False)
    return catalogue
