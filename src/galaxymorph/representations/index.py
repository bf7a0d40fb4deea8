"""Cosine nearest neighbours of a set of embeddings: exact for small sets, an HNSW index (faiss) for large ones.

Below :data:`EXACT_BELOW` galaxies the search is exact (scikit-learn, brute force):
there one query takes ~30 ms and every galaxy's neighbours (``anomalies``) about a minute on
two shared cores; beyond, exact search grows with the square of the set. From there on, an HNSW graph
(``faiss.IndexHNSWFlat`` on unit vectors, inner product = cosine similarity) is
built once and saved beside the embeddings as ``<embeddings>.hnsw.faiss``, with
``<embeddings>.hnsw.json`` recording what it was built from (row count, file size
and modification time, the parameters). It is rebuilt when the embeddings file
changed; an index file without our record is never overwritten.
BENCHMARKS.md (``python -m benchmarks neighbours``) has its recall and speed at 1e6 vectors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from galaxymorph.files import atomic_path
from galaxymorph.outputs import OutputInUse

__all__ = ["EXACT_BELOW", "NeighbourIndex", "neighbour_index"]

EXACT_BELOW = 20_000
HNSW_M = 32  # graph degree: recall 0.97 at efSearch 32 on embedding-like vectors (BENCHMARKS.md)
EF_CONSTRUCTION = 40
EF_SEARCH = 64
MADE_BY = "galaxymorph neighbour index"


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (float32), so that inner products are cosine similarities."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), np.finfo(np.float32).tiny)


class NeighbourIndex:
    """Cosine nearest neighbours of fixed vectors: ``search(queries, k)`` -> (similarities, rows), best first."""

    def __init__(self, vectors: np.ndarray, hnsw: object | None = None) -> None:
        self.vectors = _unit(vectors)
        self.hnsw = hnsw  # a faiss index over ``vectors``, or None for exact search
        if hnsw is not None:
            hnsw.hnsw.efSearch = EF_SEARCH

    @property
    def exact(self) -> bool:
        return self.hnsw is None

    @classmethod
    def build(cls, vectors: np.ndarray, approximate: bool | None = None) -> NeighbourIndex:
        """Exact search, or (``approximate``; default: from :data:`EXACT_BELOW` galaxies on) a new HNSW graph."""
        if not (len(vectors) >= EXACT_BELOW if approximate is None else approximate):
            return cls(vectors)
        import faiss

        built = cls(vectors)
        hnsw = faiss.IndexHNSWFlat(built.vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = EF_CONSTRUCTION
        hnsw.add(built.vectors)
        return cls(built.vectors, hnsw)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar rows to each query (cosine similarity, rows; -1 where fewer were found)."""
        k = min(k, len(self.vectors))
        queries = _unit(queries)
        if self.hnsw is not None:
            return self.hnsw.search(queries, k)
        from sklearn.neighbors import NearestNeighbors

        search = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(self.vectors)
        distance, rows = search.kneighbors(queries)
        return 1.0 - distance, rows


def _paths(embeddings: Path) -> tuple[Path, Path]:
    return embeddings.with_name(embeddings.name + ".hnsw.faiss"), embeddings.with_name(embeddings.name + ".hnsw.json")


def _source(embeddings: Path, rows: int) -> dict[str, object]:
    """What an index is valid for: the embeddings file as it is now."""
    stat = embeddings.stat()
    return {"made_by": MADE_BY, "rows": rows, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "m": HNSW_M, "ef_construction": EF_CONSTRUCTION}


def neighbour_index(embeddings: str | Path, vectors: np.ndarray, approximate: bool | None = None) -> NeighbourIndex:
    """The search for an embeddings file's ``vectors``: exact, or its saved HNSW index (built first if missing or stale).

    Raises:
        OutputInUse: ``<embeddings>.hnsw.faiss`` exists but was not written here (no matching record).
    """
    if not (len(vectors) >= EXACT_BELOW if approximate is None else approximate):
        return NeighbourIndex(vectors)
    import faiss

    embeddings = Path(embeddings)
    index_file, record_file = _paths(embeddings)
    wanted = _source(embeddings, len(vectors))
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    if index_file.exists() and record.get("made_by") != MADE_BY:
        raise OutputInUse(f"{index_file} exists and was not written by galaxymorph; move it to let the index be built")
    if record == wanted and index_file.is_file():
        return NeighbourIndex(vectors, faiss.read_index(str(index_file)))
    built = NeighbourIndex.build(vectors, approximate=True)
    record_file.write_text(json.dumps({"made_by": MADE_BY}))  # ours from now on; valid once the full record is in
    with atomic_path(index_file) as tmp:
        faiss.write_index(built.hnsw, str(tmp))
    record_file.write_text(json.dumps(wanted))
    return built
