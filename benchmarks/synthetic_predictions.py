"""Large synthetic predictions files in the real ``predict`` layout, written fast (for memory tests and benchmarks).

One block of rows is built with :func:`galaxymorph.predict.layout.posterior_table` (the
posterior summaries are the slow part) and written again under new ids until ``n`` rows
are there, one row group per block, as ``predict`` writes them; the catalogue gets
independent votes per galaxy, so every metric sees ``n`` different galaxies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from galaxymorph.predict.layout import arrow_schema, posterior_table
from galaxymorph.schema import Question, Schema

__all__ = ["TWO", "write_catalogue", "write_predictions"]

TWO = Schema("two", [Question("shape", ("round", "disk")), Question("bar", ("yes", "no"), after=("shape_disk",))])


def write_predictions(path: Path, n: int, samples: int = 5, block: int = 50_000, seed: int = 0,
                      schema: Schema = TWO) -> Path:
    """``n`` rows of predictions (ids ``g0`` ... ``g{n-1}``), ``block`` rows per row group."""
    rng = np.random.default_rng(seed)
    layout = arrow_schema(schema, samples, {})
    conc = rng.uniform(1, 20, (min(block, n), schema.n_answers, samples))
    template = posterior_table([""] * len(conc), conc, [""] * len(conc), schema, layout)  # no image to decode
    with pq.ParquetWriter(path, layout) as writer:
        for start in range(0, n, block):
            rows = template.slice(0, min(block, n - start))
            ids = pa.array([f"g{i}" for i in range(start, start + len(rows))], pa.string())
            writer.write_table(rows.set_column(0, "id_str", ids))
    return path


def write_catalogue(path: Path, n: int, volunteers: int = 5, seed: int = 1, schema: Schema = TWO) -> Path:
    """A Parquet catalogue of the same ``n`` ids with up to ``volunteers`` votes per question."""
    rng = np.random.default_rng(seed)
    votes = rng.integers(0, volunteers + 1, (n, schema.n_answers)).astype(np.float64)
    frame = pd.DataFrame(votes, columns=list(schema.answers))
    frame.insert(0, "id_str", [f"g{i}" for i in range(n)])
    frame.to_parquet(path, index=False)
    return path
