"""Similarity search and anomaly scores on embeddings, with scikit-learn.

Similarity is cosine similarity (``NearestNeighbors(metric="cosine")``, exact
brute-force search): it compares the direction of feature vectors, so a galaxy's
overall brightness (which scales many features together) matters less than its
pattern. Anomaly scores are either the cosine distance to the k-th nearest
neighbour (isolated galaxies score high) or an ``IsolationForest`` score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

__all__ = ["ANOMALY_METHODS", "similar", "anomaly_scores"]

ANOMALY_METHODS = ("knn", "isolation-forest")


def similar(frame: pd.DataFrame, vectors: np.ndarray, query: str, k: int = 8) -> pd.DataFrame:
    """The ``k`` rows of ``frame`` most similar to ``query`` (itself first), with ``rank`` and ``similarity``.

    ``frame`` has an ``id_str`` column, row-aligned with ``vectors``; ``similarity``
    is the cosine similarity (1 for identical directions).

    Raises:
        KeyError: ``query`` is not an ``id_str`` (the message shows a few that are).
    """
    ids = frame["id_str"].astype(str).to_numpy()
    where = np.flatnonzero(ids == str(query))
    if not len(where):
        raise KeyError(f"--query {query!r} is not in the embeddings (ids look like {ids[:3].tolist()})")
    k = min(k, len(ids))
    search = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(vectors)
    order = search.kneighbors(vectors[where[:1]], return_distance=False)[0]
    # exact duplicates tie with the query and may come first: keep the query itself at rank 0
    order = np.concatenate([[where[0]], order[order != where[0]]])[:k]
    result = frame.iloc[order].reset_index(drop=True)
    result["rank"] = np.arange(len(order))
    result["similarity"] = 1.0 - _cosine_distance(vectors[order], vectors[where[0]])
    return result


def _cosine_distance(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    from sklearn.metrics.pairwise import cosine_distances

    return cosine_distances(vectors, query[None, :])[:, 0]


def anomaly_scores(vectors: np.ndarray, method: str = "knn", k: int = 10, seed: int = 0) -> np.ndarray:
    """One score per galaxy, higher = more unusual.

    ``knn``: cosine distance to the k-th nearest other galaxy. ``isolation-forest``:
    minus scikit-learn's ``IsolationForest.score_samples`` (seeded).
    """
    if method == "knn":
        if len(vectors) < 2:
            raise ValueError("knn anomaly scores need at least 2 galaxies")
        k = min(k, len(vectors) - 1)
        search = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(vectors)
        distance, _ = search.kneighbors(vectors)  # column 0 is the galaxy itself
        return distance[:, k]
    if method == "isolation-forest":
        from sklearn.ensemble import IsolationForest

        return -IsolationForest(random_state=seed).fit(vectors).score_samples(vectors)
    raise ValueError(f"method must be one of {ANOMALY_METHODS}, got {method!r}")
