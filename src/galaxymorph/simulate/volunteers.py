"""Simulated Galaxy Zoo volunteers: true answer probabilities, then walks through the tree.

For each galaxy and question, :func:`true_probabilities` gives the probability of each
answer *given that the question is asked*, from the true parameters and how visible
they are (size against seeing, signal-to-noise, inclination). :func:`simulate_votes`
then lets each volunteer answer the first question and follow only the questions
their answers lead to, so downstream questions get fewer votes and unvisited ones 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit, softmax

from galaxymorph.schema import Schema

__all__ = ["visibility", "true_probabilities", "volunteer_counts", "simulate_votes"]


def visibility(params: pd.DataFrame) -> np.ndarray:
    """How well details can be seen, in [0, 1]: resolved (size over seeing) and bright (S/N)."""
    resolution = params["half_light"].to_numpy() / params["psf_fwhm"].to_numpy()
    resolved = 1.0 - np.exp(-((resolution / 2.0) ** 1.5))
    bright = 1.0 - np.exp(-params["snr"].to_numpy() / 150.0)
    return resolved * bright


def _ordinal(latent: np.ndarray, cuts: list[float], scale: np.ndarray | float) -> np.ndarray:
    """Probabilities (G, len(cuts)+1) of ordered categories, low to high, around ``latent``."""
    below = expit((np.asarray(cuts)[None, :] - latent[:, None]) / np.asarray(scale).reshape(-1, 1))
    cumulative = np.concatenate([np.zeros((len(latent), 1)), below, np.ones((len(latent), 1))], axis=1)
    return np.diff(cumulative, axis=1)


def _onehot_logits(index: np.ndarray, n: int, strength: np.ndarray, neighbour: float = 0.0) -> np.ndarray:
    """Logits favouring category ``index`` by ``strength`` and its neighbours by ``neighbour``."""
    cats = np.arange(n)[None, :]
    distance = np.abs(cats - index[:, None])
    return np.where(distance == 0, strength[:, None], np.where(distance == 1, neighbour, 0.0))


def _answers(p: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per question, (G, answers) probabilities in the gz_decals_dr5 answer order."""
    vis = visibility(p)
    kind, artifact = p["kind"].to_numpy(), p["artifact"].to_numpy()
    disk, art = kind == "disk", kind == "artifact"
    incl = p["inclination"].to_numpy()
    cos_i = np.cos(np.radians(incl))
    q_disk = np.sqrt(cos_i**2 + (p["disk_thickness"].to_numpy() * np.sin(np.radians(incl))) ** 2)
    axis_ratio = np.where(disk, q_disk, p["bulge_q"].to_numpy())
    bt = p["bulge_fraction"].to_numpy()
    arms = p["arm_count"].to_numpy()
    arm_strength = p["arm_strength"].to_numpy()
    bar_level = p["bar"].map({"none": 0.0, "weak": 1.0, "strong": 2.0}).to_numpy(dtype=float)
    interaction = p["interaction"].map({"none": 0, "minor": 1, "major": 2, "merger": 3}).to_numpy(dtype=int)
    out: dict[str, np.ndarray] = {}

    # Smooth, featured or artifact.
    features = np.where(
        disk,
        (1 - 0.7 * bt) * (0.45 + 0.7 * arm_strength + 0.15 * bar_level) + 0.5 * np.sin(np.radians(incl)) ** 8,
        0.05,
    ) + 0.15 * interaction
    featured = np.where(art, -1.0, 6.0 * (features * vis - 0.4))
    artifact_logit = np.where(art, 1.0 + 3.0 * p["artifact_strength"].to_numpy(), -4.5 + 2.5 * (1 - vis))
    smooth_logit = np.where(art & (artifact == "empty"), 0.5, 0.0)
    out["smooth-or-featured"] = softmax(np.stack([smooth_logit, featured, artifact_logit], 1), axis=1)

    # Edge-on disk? Thin disks above ~80 degrees; very elongated smooth ones sometimes.
    edge = np.where(disk, 0.4 * (incl - 79.0) * (0.5 + 0.5 * vis), 6.0 * (0.42 - axis_ratio))
    out["disk-edge-on"] = np.stack([expit(edge), 1 - expit(edge)], 1)

    # Spiral arms: need arms, a view not too inclined, and visibility.
    seen_arms = arm_strength * vis * np.sqrt(cos_i) * (1 - 0.5 * bt)
    spiral = np.where(arms > 0, 9.0 * (seen_arms - 0.15), -2.5 + 2.0 * p["clumpiness"].to_numpy() * vis)
    out["has-spiral-arms"] = np.stack([expit(spiral), 1 - expit(spiral)], 1)

    # Bar (ordinal none < weak < strong), harder to see inclined or small.
    bar_seen = bar_level * (0.3 + 0.7 * vis * cos_i**0.7)
    out["bar"] = _ordinal(bar_seen, [0.55, 1.45], 0.25)[:, ::-1]

    # Bulge size (ordinal none < small < moderate < large < dominant) from B/T.
    out["bulge-size"] = _ordinal(bt, [0.04, 0.14, 0.32, 0.58], 0.03 + 0.05 * (1 - vis))[:, ::-1]

    # How rounded (ordinal cigar < in-between < round) from the projected axis ratio.
    out["how-rounded"] = _ordinal(axis_ratio, [0.45, 0.78], 0.05 + 0.05 * (1 - vis))[:, ::-1]

    # Edge-on bulge: boxy, none, rounded.
    shape = p["bulge_shape"].map({"boxy": 0, "none": 1, "rounded": 2}).to_numpy(dtype=int)
    shape = np.where(bt < 0.04, 1, shape)
    out["edge-on-bulge"] = softmax(_onehot_logits(shape, 3, 0.5 + 2.0 * vis, 0.2), axis=1)

    # Winding (ordinal tight < medium < loose) from the pitch angle.
    pitch = np.where(arms > 0, p["arm_pitch"].to_numpy(), 20.0)
    out["spiral-winding"] = _ordinal(pitch, [16.0, 26.0], 2.0 + 4.0 * (1 - vis))

    # Arm count: 1, 2, 3, 4, more-than-4, cant-tell.
    count_index = np.clip(arms, 1, 5) - 1
    count = _onehot_logits(count_index, 5, np.where(arms > 0, 0.5 + 3.5 * vis * arm_strength, 0.0), 0.6)
    cant_tell = 1.8 * (1 - vis) + 0.4 * (arms >= 4) + np.where(arms > 0, -0.5, 2.0)
    out["spiral-arm-count"] = softmax(np.concatenate([count, cant_tell[:, None]], 1), axis=1)

    # Merging: none, minor, major disturbance, merger.
    merging = _onehot_logits(interaction, 4, 0.8 + 2.5 * vis, 0.6)
    merging[:, 0] += np.where(interaction == 0, 1.5, 0.0)
    out["merging"] = softmax(merging, axis=1)
    return out


def true_probabilities(params: pd.DataFrame, schema: Schema) -> np.ndarray:
    """(G, A) probability of each answer given its question is asked; each question sums to 1.

    ``schema`` must have the gz_decals_dr5 questions (campaign suffixes allowed).
    """
    per_question = _answers(params)
    columns = []
    for question in schema.questions:
        known = [k for k in per_question if question.name == k or question.name.startswith(k + "-")]
        if not known:
            raise KeyError(f"the simulator has no volunteers' model for question {question.name!r}; use gz_decals_dr5")
        columns.append(per_question[max(known, key=len)])
    return np.concatenate(columns, axis=1)


def volunteer_counts(n: int, mean: float, rng: np.random.Generator, spread: float = 0.35) -> np.ndarray:
    """Volunteers per galaxy: about ``mean`` on average, varying (gamma-Poisson), at least 1.

    ``spread`` is the coefficient of variation of the galaxies' popularity; 0 gives
    exactly ``round(mean)`` volunteers to every galaxy.
    """
    if mean <= 0:
        raise ValueError(f"volunteers must be positive, got {mean}")
    if spread <= 0:
        return np.full(n, max(round(mean), 1), dtype=np.int64)
    rate = mean * rng.gamma(1.0 / spread**2, spread**2, n)
    return np.maximum(rng.poisson(rate), 1).astype(np.int64)


def simulate_votes(
    probabilities: np.ndarray, n_volunteers: np.ndarray, schema: Schema, rng: np.random.Generator
) -> np.ndarray:
    """Vote counts (G, A): every volunteer walks the tree, answering what their answers lead to.

    Volunteers are simulated one by one (vectorised over galaxies and volunteers), so a
    question reached by several answers is asked once per volunteer who reaches it.
    """
    g, most = len(n_volunteers), int(np.max(n_volunteers, initial=0))
    exists = np.arange(most)[None, :] < np.asarray(n_volunteers)[:, None]  # (G, V)
    chosen: dict[int, np.ndarray] = {}
    reached: dict[int, np.ndarray] = {}
    counts = np.zeros((g, schema.n_answers), dtype=np.int64)
    for q in schema.topological_order:
        s = schema.slices[q]
        cdf = np.cumsum(probabilities[:, s], axis=1)
        draw = rng.random((g, most))
        answer = (draw[:, :, None] > cdf[:, None, :-1]).sum(axis=2)  # (G, V) local answer index
        if schema.questions[q].is_root:
            here = exists
        else:
            here = np.zeros_like(exists)
            for parent in schema.parent_answers[q]:
                pq = int(schema.question_index[parent])
                here |= reached[pq] & (chosen[pq] == parent - schema.slices[pq].start)
        chosen[q], reached[q] = answer, here
        for k in range(s.stop - s.start):
            counts[:, s.start + k] = ((answer == k) & here).sum(axis=1)
    return counts
