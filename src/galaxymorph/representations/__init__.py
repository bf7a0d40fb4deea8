"""Representations: encoder features per galaxy, similarity search and anomaly scores on them.

- ``embed``: ``embed(checkpoint, out, ...)`` streams features to Parquet (resumable), optional PCA;
  ``read_embeddings(path)``.
- ``search``: ``similar(...)`` (cosine nearest neighbours) and ``anomaly_scores(...)``.
- ``index``: ``neighbour_index(path, vectors)``: exact search for small sets, a saved HNSW index (faiss) for large ones.
- ``grid``: ``image_grid(...)`` draws galaxies with captions into one PNG.
"""

from galaxymorph.representations.embed import embed, read_embeddings
from galaxymorph.representations.grid import image_grid
from galaxymorph.representations.index import NeighbourIndex, neighbour_index
from galaxymorph.representations.search import anomaly_scores, similar

__all__ = ["NeighbourIndex", "anomaly_scores", "embed", "image_grid", "neighbour_index", "read_embeddings", "similar"]
