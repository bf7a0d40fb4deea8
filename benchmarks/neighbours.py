"""Nearest neighbours at survey scale: the HNSW index (faiss) against exact brute-force search.

Vectors are drawn to look like ``embed --pca`` output: a Gaussian whose principal
variances fall as a power law (``--decay``; variance of component i ~ i^-decay), or
follow the measured ``explained_variance_ratio`` of a real embeddings file
(``--spectrum-from emb.parquet``, written by ``embed --pca``). Plain random unit
vectors would be a needlessly hard case: real embeddings put most variance in a few
directions. Reports build time, index size and process memory, recall@10 against the
exact neighbours, and queries per second (a batch of queries, both cores) and the
latency of one query, for exact search (scikit-learn brute force, what
``similar``/``anomalies`` did before) and the index at several ``efSearch``.

    python -m benchmarks neighbours --n 1000000 --dim 64
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq

from benchmarks._harness import Result
from galaxymorph.prediction import META_KEY
from galaxymorph.representations import NeighbourIndex

TINY = {"n": 2000, "dim": 8, "queries": 20, "ef": [16]}


def rss_mb() -> float:
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS")) / 1024


def draw(n: int, dim: int, decay: float, spectrum_from: Path | None, seed: int = 0) -> np.ndarray:
    """``n`` vectors with the given principal variances, in a random rotation."""
    if spectrum_from is not None:
        variances = np.asarray(json.loads(pq.read_schema(spectrum_from).metadata[META_KEY])["pca"]["explained_variance_ratio"])
        dim = len(variances)
    else:
        variances = np.arange(1, dim + 1, dtype=np.float64) ** -decay
    rng = np.random.default_rng(seed)
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        rows = min(100_000, n - start)
        vectors[start:start + rows] = (rng.standard_normal((rows, dim)) * np.sqrt(variances)) @ rotation
    return vectors


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--decay", type=float, default=1.5)
    parser.add_argument("--spectrum-from", type=Path)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128])


def measure(args: argparse.Namespace, result: Result) -> None:
    vectors = draw(args.n, args.dim, args.decay, args.spectrum_from)
    queries = vectors[np.random.default_rng(1).choice(len(vectors), args.queries, replace=False)]
    exact = NeighbourIndex.build(vectors, approximate=False)
    (_, truth), brute = timed(exact.search, queries, 10)
    _, brute_one = timed(exact.search, queries[:1], 10)
    result.arm("exact (brute force)", recall_at_10=1.0, queries_per_s=args.queries / brute, one_query_ms=1000 * brute_one)
    before = rss_mb()
    index, build = timed(NeighbourIndex.build, vectors, True)
    grown = rss_mb() - before
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        faiss.write_index(index.hnsw, f"{tmp}/index")
        size = Path(f"{tmp}/index").stat().st_size / 2**20
    result.figures.update(build_s=build, index_mib=size, process_memory_mib=grown, vectors_mib=vectors.nbytes / 2**20)
    for ef in args.ef:
        index.hnsw.hnsw.efSearch = ef
        (_, found), seconds = timed(index.search, queries, 10)
        one = min(timed(index.search, queries[i:i + 1], 10)[1] for i in range(min(50, args.queries)))
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)])
        result.arm(f"HNSW efSearch {ef}", recall_at_10=float(recall), queries_per_s=args.queries / seconds,
                   one_query_ms=1000 * one)
    result.note(f"{args.n} vectors, {vectors.shape[1]} dims, {args.queries} queries; build {build:.0f} s, index file "
                f"{size:.0f} MiB, process memory +{grown:.0f} MiB (vectors {vectors.nbytes / 2**20:.0f} MiB)")
    exact_name = "exact (brute force)"
    result.table(["search", "recall@10", "queries/s", "x brute force", "one query ms"],
                 [[name, f"{a['recall_at_10']:.3f}", f"{a['queries_per_s']:.0f}",
                   f"{result.ratio(name, exact_name, 'queries_per_s'):.0f}", f"{a['one_query_ms']:.2f}"]
                  for name, a in result.arms.items()], arms=list(result.arms),
                 align=["---", "---:", "---:", "---:", "---:"])
