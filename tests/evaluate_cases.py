"""Seeded predictions + catalogues whose evaluation was recorded by the in-memory ``evaluate`` (before streaming).

``tests/data/evaluate_reference.json`` holds that evaluation of each case; the streaming
code must reproduce it (``tests/test_evaluate.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from galaxymorph import get_schema
from galaxymorph.calibration import scale_concentrations
from galaxymorph.kaggle import KAGGLE_PREFIX, kaggle_columns, to_kaggle
from galaxymorph.prediction.layout import arrow_schema, posterior_table
from galaxymorph.schema import Question, Schema

TWO = Schema("two", [Question("shape", ("round", "disk")), Question("bar", ("yes", "no"), after=("shape_disk",))])
REFERENCE = Path(__file__).parent / "data" / "evaluate_reference.json"


def write_case(folder: Path, name: str, scales: dict[str, float] | None = None,
               recorded: bool = True) -> tuple[Path, pd.DataFrame]:
    """Case ``two`` (truth columns, unmatched ids on both sides, unvoted questions) or ``gz2`` (Kaggle columns).

    ``scales``: the concentrations multiplied by them, as a calibrated model predicts, and
    recorded in the metadata unless not ``recorded`` (as predict wrote before it recorded them).
    """
    schema = TWO if name == "two" else get_schema("gz2")
    n, samples = (300, 3) if name == "two" else (40, 2)
    rng = np.random.default_rng(42)
    conc = rng.uniform(1, 25, (n, schema.n_answers, samples))
    ids = [f"g{i}" for i in range(n)]
    votes = rng.integers(0, 9, (n, schema.n_answers)).astype(np.float64)
    votes[rng.random(n) < 0.2, schema.slices[-1]] = 0.0  # the last question without votes for a fifth of them
    catalogue = pd.DataFrame(votes, columns=list(schema.answers)).assign(id_str=ids)
    if name == "two":
        truth = rng.dirichlet(np.ones(2), (n, 2)).reshape(n, 4)
        for i, a in enumerate(schema.answers):
            catalogue[f"true_p:{a}"] = truth[:, i]
        catalogue = pd.concat([catalogue, catalogue.iloc[:1].assign(id_str="only-in-catalogue")], ignore_index=True)
        ids[5], ids[6] = "only-predicted-1", "only-predicted-2"
    else:
        kaggle = to_kaggle(rng.dirichlet(np.ones(3), n).repeat(13, axis=1)[:, :schema.n_answers], schema)
        kaggle[rng.random(kaggle.shape) < 0.1] = np.nan
        for i, column in enumerate(kaggle_columns(schema)):
            catalogue[KAGGLE_PREFIX + column] = kaggle[:, i]
    conc = scale_concentrations(conc, schema, scales or {})
    layout = arrow_schema(schema, samples, {"calibration": scales} if scales and recorded else {})
    table = posterior_table(ids, conc, [None] * n, schema, layout)
    path = folder / f"{name}.parquet"
    pq.write_table(table, path, row_group_size=64)
    return path, catalogue
