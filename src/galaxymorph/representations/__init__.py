"""Representations: encoder features per galaxy, similarity search and anomaly scores on them.

- ``embed``: ``embed(checkpoint, out, ...)`` streams features to Parquet (resumable), optional PCA;
  ``read_embeddings(path)``.
- ``search``: ``similar(...)`` (cosine nearest neighbours, scikit-learn) and ``anomaly_scores(...)``.
- ``grid``: ``image_grid(...)`` draws galaxies with captions into one PNG.
"""

from galaxymorph.representations.embed import embed, read_embeddings
from galaxymorph.representations.grid import image_grid
from galaxymorph.representations.search import anomaly_scores, similar

__all__ = ["anomaly_scores", "embed", "image_grid", "read_embeddings", "similar"]
