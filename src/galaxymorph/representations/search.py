"""Similarity search and anomaly scores on embeddings.

Similarity is cosine similarity: it compares the direction of feature vectors, so a
galaxy's overall brightness (which scales many features together) matters less than
its pattern. Neighbours come from a :class:`~galaxymorph.representations.index.NeighbourIndex`:
exact search for small sets, an HNSW index for large ones. Anomaly scores are either
the cosine distance to the k-th nearest neighbour (isolated galaxies score high) or
an ``IsolationForest`` score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from galaxymorph.representations.index import NeighbourIndex

__all__ = ["ANOMALY_METHODS", "similar", "anomaly_scores"]

ANOMALY_METHODS = ("knn", "isolation-forest")


def similar(frame: pd.DataFrame, vectors: np.ndarray, query: str, k: int = 8,
            index: NeighbourIndex | None = None) -> pd.DataFrame:
    """The ``k`` rows of ``frame`` most similar to ``query`` (itself first), with ``rank`` and ``similarity``.

    ``frame`` has an ``id_str`` column, row-aligned with ``vectors``; ``similarity``
    is the cosine similarity (1 for identical directions). ``index`` is the search over
    ``vectors`` (default exact: for one query, building an index would cost more).

    Raises:
        KeyError: ``query`` is not an ``id_str`` (the message shows a few that are).
    """
    ids = frame["id_str"].astype(str).to_numpy()
    where = np.flatnonzero(ids == str(query))
    if not len(where):
        raise KeyError(f"--query {query!r} is not in the embeddings (ids look like {ids[:3].tolist()})")
    k = min(k, len(ids))
    index = index or NeighbourIndex(vectors)
    order = index.search(vectors[where[:1]], k)[1][0]
    # exact duplicates tie with the query and may come first: keep the query itself at rank 0
    order = np.concatenate([[where[0]], order[(order != where[0]) & (order >= 0)]])[:k]
    result = frame.iloc[order].reset_index(drop=True)
    result["rank"] = np.arange(len(order))
    result["similarity"] = index.vectors[order] @ index.vectors[where[0]]
    return result


def anomaly_scores(vectors: np.ndarray, method: str = "knn", k: int = 10, seed: int = 0,
                   index: NeighbourIndex | None = None) -> np.ndarray:
    """One score per galaxy, higher = more unusual.

    ``knn``: cosine distance to the k-th nearest other galaxy (``index``: default exact search
    below ``EXACT_BELOW`` galaxies, else a new, unsaved HNSW index); ``k`` at least the number of
    galaxies is refused, since there is no k-th other galaxy.
    ``isolation-forest``: minus scikit-learn's ``IsolationForest.score_samples`` (seeded).
    """
    if method == "knn":
        if len(vectors) < 2:
            raise ValueError("knn anomaly scores need at least 2 galaxies")
        if not 1 <= k < len(vectors):
            raise ValueError(f"knn: --k {k} must be between 1 and {len(vectors) - 1}, the number of other galaxies "
                             f"in the embeddings ({len(vectors)} in all)")
        index = index or NeighbourIndex.build(vectors)
        similarity, rows = index.search(vectors, k + 1)
        # the galaxy itself is usually among its neighbours (first, or tied with a duplicate); an
        # approximate search may miss it, and then the k-th other galaxy is one column earlier
        itself = (rows == np.arange(len(vectors))[:, None]).any(axis=1)
        return 1.0 - np.where(itself, similarity[:, k], similarity[:, k - 1])
    if method == "isolation-forest":
        from sklearn.ensemble import IsolationForest

        return -IsolationForest(random_state=seed).fit(vectors).score_samples(vectors)
    raise ValueError(f"method must be one of {ANOMALY_METHODS}, got {method!r}")
