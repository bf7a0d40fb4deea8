"""Which galaxies to queue for volunteers: the strategies of ``galaxymorph acquire``.

- ``random``: a uniform sample of the pool (seeded), the baseline a strategy has to beat.
- ``bald``: the ``top`` highest BALD scores. One batch of them tends to hold galaxies
  alike in what the model is unsure of, so they teach it the same thing many times.
- ``cluster-bald``: the pool cut into ``top`` clusters of its encoder features by
  k-means (scikit-learn's ``MiniBatchKMeans``), and the highest score of each, so
  the batch spreads over the kinds of galaxy in the pool.
- ``batch-bald``: greedy BatchBALD (Kirsch et al. 2019): each next galaxy is the one
  that adds the most information to the votes of the batch so far, galaxies already
  queued included (:func:`galaxymorph.acquisition.information.joint_information`).
  It needs an ensemble. Candidates are the ``candidates`` highest BALD scores
  (default 10 x ``top``): the greedy search costs top x candidates x draws x models.

``DEFAULT_STRATEGY`` is the one measured to need fewer labels than a random queue
(BENCHMARKS.md, "Active learning"); it stays ``random`` until one does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from galaxymorph.acquisition.expected_error import expected_errors
from galaxymorph.acquisition.information import acquisition_scores, joint_information, model_log_likelihoods
from galaxymorph.schema import Schema

__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "batch_bald", "choose", "cluster_top", "rank_predictions",
           "sample_models"]

STRATEGIES = ("random", "bald", "cluster-bald", "batch-bald")
DEFAULT_STRATEGY = "random"


def choose(strategy: str, scores: np.ndarray, top: int, seed: int = 0, embeddings: np.ndarray | None = None,
           concentrations: np.ndarray | None = None, schema: Schema | None = None, models: np.ndarray | None = None,
           queued: np.ndarray | None = None, volunteers: int = 40, questions: Sequence[str] | None = None,
           candidates: int | None = None) -> pd.DataFrame:
    """The pool rows to queue, in order of choice: column ``row``, and ``cluster`` or ``gain`` where they apply.

    Args:
        strategy: one of :data:`STRATEGIES`.
        scores: each pool galaxy's BALD score (:func:`acquisition_scores`).
        top: how many to choose (at most the pool).
        embeddings: (pool, features) encoder features, for ``cluster-bald``.
        concentrations, schema, models: the pool's posterior samples, its tree and which
            ensemble member made each sample (:func:`sample_models`), for ``batch-bald``.
        queued: concentrations of galaxies already queued (votes pending), for ``batch-bald``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if top < 1:
        raise ValueError(f"--top must be at least 1, got {top}")
    top = min(top, len(scores))
    if strategy == "random":
        return pd.DataFrame({"row": np.random.default_rng(seed).choice(len(scores), top, replace=False)})
    if strategy == "bald":
        return pd.DataFrame({"row": np.argsort(-scores, kind="stable")[:top]})
    if strategy == "cluster-bald":
        if embeddings is None:
            raise ValueError("--strategy cluster-bald needs --embeddings: the pool's encoder features from "
                             "`galaxymorph embed` (same catalogue)")
        rows, clusters = cluster_top(scores, embeddings, top, seed)
        return pd.DataFrame({"row": rows, "cluster": clusters})
    if concentrations is None or schema is None or models is None:
        raise ValueError("batch-bald needs the pool's concentrations, schema and models")
    rows, gains = batch_bald(concentrations, schema, models, scores, top, queued, volunteers, questions, candidates,
                             seed=seed)
    return pd.DataFrame({"row": rows, "gain": gains})


def cluster_top(scores: np.ndarray, embeddings: np.ndarray, top: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rows, their cluster): the highest score of each of ``top`` k-means clusters, highest first.

    A cluster that k-means leaves empty is made up for by the next highest scores.
    """
    from sklearn.cluster import MiniBatchKMeans

    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2 or len(embeddings) != len(scores):
        raise ValueError(f"embeddings must be (galaxies, features) for {len(scores)} galaxies, got {embeddings.shape}")
    top = min(top, len(scores))
    clusters = MiniBatchKMeans(n_clusters=top, random_state=seed, n_init=3,
                               batch_size=max(1024, 3 * top)).fit_predict(embeddings)
    by_score = np.argsort(-scores, kind="stable")
    first_of_cluster = by_score[~pd.Series(clusters[by_score]).duplicated().to_numpy()]
    rest = by_score[~np.isin(by_score, first_of_cluster)][: top - len(first_of_cluster)]
    rows = by_score[np.isin(by_score, np.concatenate([first_of_cluster, rest]))]
    return rows, clusters[rows]


def batch_bald(concentrations: np.ndarray, schema: Schema, models: np.ndarray, scores: np.ndarray, top: int,
               queued: np.ndarray | None = None, volunteers: int = 40, questions: Sequence[str] | None = None,
               candidates: int | None = None, draws: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rows, each one's gain in nats): greedy BatchBALD over the highest-scoring ``candidates``.

    The batch starts from the ``queued`` galaxies, so what is chosen is informative beyond
    the votes already on their way.
    """
    if len(np.unique(models)) < 2:
        raise ValueError("--strategy batch-bald needs the samples of several models (predict --checkpoint A "
                         "--checkpoint B ...): one model's dropout masks differ per galaxy, so its samples are not "
                         "one model across galaxies; use cluster-bald or bald")
    pool = np.argsort(-scores, kind="stable")[: min(len(scores), candidates or 10 * top)]
    log_lik = model_log_likelihoods(concentrations[pool], schema, models, volunteers, questions, draws, seed)
    batch = np.zeros(log_lik.shape[1:])
    if queued is not None and len(queued):
        batch += model_log_likelihoods(queued, schema, models, volunteers, questions, draws, seed + 1).sum(axis=0)
    known = float(joint_information(batch))
    open_ = np.ones(len(pool), dtype=bool)
    rows, gains = [], []
    for _ in range(min(top, len(pool))):
        totals = np.where(open_, joint_information(batch + log_lik), -np.inf)
        best = int(np.argmax(totals))
        rows.append(pool[best])
        gains.append(totals[best] - known)
        known, batch, open_[best] = float(totals[best]), batch + log_lik[best], False
    return np.array(rows, dtype=np.int64), np.array(gains)


def sample_models(made_by: dict[str, Any] | None, samples: int) -> np.ndarray:
    """Which ensemble member made each of a predictions file's samples: rotation views, then members, then passes."""
    made_by = made_by or {}
    shas = made_by.get("model_sha256")
    members = len(shas) if isinstance(shas, list) else 1
    per_member = int(made_by.get("samples", samples // members))
    views = samples // (members * per_member) if per_member else 0
    models = np.tile(np.repeat(np.arange(members), per_member), views)
    if len(models) != samples:
        raise ValueError(f"the predictions' {samples} samples do not split into {members} model(s) x {per_member} "
                         "samples; predict them again with this version")
    return models


def rank_predictions(predictions: str | Path, top: int, volunteers: int = 40, questions: Sequence[str] | None = None,
                     strategy: str = DEFAULT_STRATEGY, embeddings: str | Path | None = None,
                     queued: Sequence[str] = (), seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The queue from a predictions file, and what the votes of the galaxies already ``queued`` are expected to bring.

    Returns:
        ``(queue, queued)``. ``queue``: rank, id_str, file_loc, score (BALD), ``cluster``
        (cluster-bald) or ``gain`` (batch-bald), error_now, error_after
        (:func:`galaxymorph.acquisition.expected_errors`), mi:<question>, for the ``top``
        galaxies chosen by ``strategy`` among those not queued. ``queued``: id_str,
        file_loc, score, error_now, error_after of each queued galaxy.
    """
    from galaxymorph.prediction import read_concentrations, read_predictions

    if top < 1:
        raise ValueError(f"--top must be at least 1, got {top}")
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    frame, schema, meta = read_predictions(predictions)
    ids = frame["id_str"].astype(str)
    waiting = ids.isin(set(map(str, queued))).to_numpy()
    unknown = sorted(set(map(str, queued)) - set(ids))
    if unknown:
        raise ValueError(f"--queued: {len(unknown)} galaxies are not in {predictions}, e.g. {', '.join(unknown[:3])}; "
                         "predict the queued galaxies too (the pool and the queue in one catalogue)")
    if waiting.all():
        raise ValueError(f"every galaxy of {predictions} is already queued; predict a pool with new galaxies")
    conc = read_concentrations(frame, schema)
    if strategy != "random" and conc.shape[2] < 2:  # every score would be 0: a queue in file order, not by information
        raise ValueError(f"{predictions} holds one posterior sample per galaxy, and {strategy} ranks by how samples "
                         "disagree; predict with --samples 5 (or more, or --tta) and rank those")
    pool = frame[~waiting].reset_index(drop=True)
    scores = acquisition_scores(conc[~waiting], schema, volunteers, questions)
    features = _pool_embeddings(embeddings, pool["id_str"]) if strategy == "cluster-bald" else None
    models = sample_models(meta.get("made_by"), conc.shape[2]) if strategy == "batch-bald" else None
    picked = choose(strategy, scores["score"].to_numpy(), top, seed, features, conc[~waiting], schema, models,
                    conc[waiting], volunteers, questions)
    rows = picked.pop("row").to_numpy()
    queue = pd.concat([pool.loc[rows, ["id_str", "file_loc"]].reset_index(drop=True),
                       scores[["score"]].iloc[rows].reset_index(drop=True), picked.reset_index(drop=True),
                       expected_errors(conc[~waiting][rows], schema, volunteers, questions),
                       scores.drop(columns="score").iloc[rows].reset_index(drop=True)], axis=1)
    queue.insert(0, "rank", np.arange(1, len(queue) + 1))
    waiting_conc = conc[waiting]
    report = pd.concat([frame.loc[waiting, ["id_str", "file_loc"]].reset_index(drop=True),
                        acquisition_scores(waiting_conc, schema, volunteers, questions)[["score"]],
                        expected_errors(waiting_conc, schema, volunteers, questions)], axis=1)
    return queue, report


def _pool_embeddings(path: str | Path | None, ids: pd.Series) -> np.ndarray:
    """The pool's rows of an embeddings file, in the pool's order; every galaxy must have one."""
    from galaxymorph.representations import read_embeddings

    if path is None:
        raise ValueError("--strategy cluster-bald needs --embeddings: the pool's encoder features from "
                         "`galaxymorph embed` (same catalogue, e.g. --pca 32)")
    frame, vectors, _ = read_embeddings(path)
    row = pd.Series(np.arange(len(frame)), index=frame["id_str"].astype(str))
    missing = ids[~ids.isin(row.index)]
    if len(missing):
        raise ValueError(f"--embeddings {path} has no row for {len(missing)} galaxies of the pool, e.g. "
                         f"{', '.join(missing.head(3))}; embed the catalogue the predictions were made from")
    return vectors[row.loc[ids].to_numpy()]
