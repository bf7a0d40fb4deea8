"""Which galaxies volunteers should see next, and what their votes will bring.

- :mod:`~galaxymorph.acquisition.information`: BALD, the information new volunteers' votes
  would give about the model, for one galaxy or a batch;
- :mod:`~galaxymorph.acquisition.expected_error`: how well a galaxy's vote fractions are
  known now, and are expected to be once its votes arrive;
- :mod:`~galaxymorph.acquisition.selection`: the strategies (random, bald, cluster-bald,
  batch-bald) and the queue of a predictions file (``galaxymorph acquire``).
"""

from galaxymorph.acquisition.expected_error import expected_errors, posterior_variance
from galaxymorph.acquisition.information import (
    acquisition_scores,
    chosen_questions,
    joint_information,
    model_log_likelihoods,
    mutual_information,
)
from galaxymorph.acquisition.selection import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    batch_bald,
    choose,
    cluster_top,
    rank_predictions,
    sample_models,
)

__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "acquisition_scores", "batch_bald", "choose", "chosen_questions",
           "cluster_top", "expected_errors", "joint_information", "model_log_likelihoods", "mutual_information",
           "posterior_variance", "rank_predictions", "sample_models"]
