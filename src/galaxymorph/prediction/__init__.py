"""Bayesian predictions (``galaxymorph predict``): posterior vote fractions with credible intervals, streamed to Parquet.

:func:`predict` is the entry point; :func:`read_predictions` reads the output back.
The layout is in :mod:`galaxymorph.prediction.layout`, streaming and resuming in
:mod:`galaxymorph.prediction.parts`, the MC-dropout loop in :mod:`galaxymorph.prediction.predictor`,
what runs the encoder (``--backend``) in :mod:`galaxymorph.prediction.backends`.
"""

from galaxymorph.prediction.layout import (
           META_KEY,
           OOD_SCORE,
           read_concentrations,
           read_predictions,
)
from galaxymorph.prediction.parts import errors_path, parts_dir
from galaxymorph.prediction.predictor import OODWarning, predict, predict_records

__all__ = ["META_KEY", "OOD_SCORE", "OODWarning", "errors_path", "parts_dir", "predict", "predict_records",
           "read_concentrations", "read_predictions"]
