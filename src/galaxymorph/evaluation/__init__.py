"""How good are the predictions: metrics against volunteer votes and, for simulated data, the truth.

Every metric is computed per question over the galaxies that have votes for it,
and compared with a constant prediction (each answer's mean observed fraction
over the same galaxies) so that a number means something on its own.

Calibration uses the posterior predictive of the votes (a mixture over MC samples
of Beta-Binomials for the number of volunteers who answered, :mod:`galaxymorph.likelihood`):
its randomised PIT is uniform when the model is calibrated, so the share of observed
counts inside each central predictive interval should equal the interval's nominal level.

A file from a calibrated model records the scales its concentrations carry
(metadata ``calibration``, see :mod:`galaxymorph.calibration`); its calibration
metrics are then also reported before them (``uncalibrated``), from the same batches.

One module per job: ``references`` (what predictions are compared with, and the
constant baseline), ``metrics`` (the sums every metric is a ratio of, added up batch
by batch; :func:`evaluate_arrays`) and ``files`` (:func:`evaluate`: a predictions file
against a catalogue, read in batches, and ``evaluation.json`` with the plots). A
segmentation model's masks are evaluated by ``masks`` (:func:`galaxymorph.evaluation.masks.evaluate_masks`).
"""

from galaxymorph.evaluation.files import PLOT_GALAXIES, TRUTH_PREFIX, evaluate
from galaxymorph.evaluation.metrics import BATCH_ROWS, LEVELS, evaluate_arrays

__all__ = ["BATCH_ROWS", "LEVELS", "PLOT_GALAXIES", "TRUTH_PREFIX", "evaluate", "evaluate_arrays"]
