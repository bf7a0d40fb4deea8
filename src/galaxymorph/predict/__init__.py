"""Bayesian predictions (``galaxymorph predict``): posterior vote fractions with credible intervals, streamed to Parquet.

:func:`predict` is the entry point; :func:`read_predictions` reads the output back.
The layout is in :mod:`galaxymorph.predict.layout`, streaming and resuming in
:mod:`galaxymorph.predict.parts`, the MC-dropout loop in :mod:`galaxymorph.predict.predictor`,
what runs the encoder (``--backend``) in :mod:`galaxymorph.predict.backends`.
"""

from galaxymorph.predict.layout import (
           META_KEY,
           OOD_SCORE,
           read_concentrations,
           read_predictions,
)
from galaxymorph.predict.parts import errors_path, parts_dir
from galaxymorph.predict.predictor import OODWarning, predict, predict_records

__all__ = ["META_KEY", "OOD_SCORE", "OODWarning", "errors_path", "parts_dir", "predict", "predict_records",
           "read_concentrations", "read_predictions"]
