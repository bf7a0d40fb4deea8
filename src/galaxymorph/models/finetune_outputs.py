"""What a fine-tuned model's MC-dropout samples mean, as named per-galaxy columns (for predict).

``FinetunedModel.sample(features, n)`` gives (B, K, n): class probabilities
(classification), values (regression) or Dirichlet concentrations (tree). For
the tree task predict's usual posterior summaries apply unchanged; this module
summarises the other two over the n dropout samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["summarise_samples"]


def summarise_samples(config: dict[str, Any], samples: np.ndarray) -> dict[str, np.ndarray]:
    """Per-galaxy columns from (B, K, n) samples of a classification or regression model.

    classification: ``<class>_probability`` (mean over samples), ``<class>_q05`` / ``_q95``
    (5% / 95% over samples) and ``predicted_class`` (largest mean probability).
    regression: ``<target>`` (mean), ``<target>_std``, ``<target>_q05`` / ``_q95``.
    """
    samples = np.asarray(samples, dtype=np.float64)
    task = config["task"]
    if samples.ndim != 3 or samples.shape[1] != len(config["outputs"]):
        raise ValueError(f"expected samples (galaxies, {len(config['outputs'])}, n), got {samples.shape}")
    low, high = np.quantile(samples, [0.05, 0.95], axis=2)
    mean = samples.mean(axis=2)
    columns: dict[str, np.ndarray] = {}
    if task == "classification":
        for i, name in enumerate(config["classes"]):
            columns[f"{name}_probability"] = mean[:, i]
            columns[f"{name}_q05"], columns[f"{name}_q95"] = low[:, i], high[:, i]
        columns["predicted_class"] = np.asarray(config["classes"], dtype=object)[mean.argmax(axis=1)]
        return columns
    if task == "regression":
        name = config["outputs"][0]
        return {name: mean[:, 0], f"{name}_std": samples[:, 0].std(axis=1), f"{name}_q05": low[:, 0], f"{name}_q95": high[:, 0]}
    raise ValueError(f"task {task!r}: use predict's Dirichlet posterior summaries for the tree task")
