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

    PYTHONPATH=src .venv/bin/python benchmarks/bench_neighbours.py --n 1000000 --dim 64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from galaxymorph.predict import META_KEY
from galaxymorph.representations import NeighbourIndex


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--decay", type=float, default=1.5)
    parser.add_argument("--spectrum-from", type=Path)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128])
    args = parser.parse_args()
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    flags = sorted({f for f in ("avx2", "avx512f") if f in cpu})
    vectors = draw(args.n, args.dim, args.decay, args.spectrum_from)
    queries = vectors[np.random.default_rng(1).choice(len(vectors), args.queries, replace=False)]
    print(f"{args.n} vectors, {vectors.shape[1]} dims, {args.queries} queries; CPU {model}, {', '.join(flags) or 'no AVX2'}")
    exact = NeighbourIndex.build(vectors, approximate=False)
    (_, truth), brute = timed(exact.search, queries, 10)
    _, brute_one = timed(exact.search, queries[:1], 10)
    before = rss_mb()
    index, build = timed(NeighbourIndex.build, vectors, True)
    grown = rss_mb() - before
    with tempfile.TemporaryDirectory() as tmp:
        import faiss

        faiss.write_index(index.hnsw, f"{tmp}/index")
        size = Path(f"{tmp}/index").stat().st_size / 2**20
    print(f"build {build:.0f} s, index file {size:.0f} MiB, process memory +{grown:.0f} MiB "
          f"(vectors {vectors.nbytes / 2**20:.0f} MiB)")
    print("| search | recall@10 | queries/s | x brute force | one query ms |\n|---|---:|---:|---:|---:|")
    print(f"| exact (brute force) | 1.000 | {args.queries / brute:.0f} | 1 | {1000 * brute_one:.1f} |")
    for ef in args.ef:
        index.hnsw.hnsw.efSearch = ef
        (_, found), seconds = timed(index.search, queries, 10)
        one = min(timed(index.search, queries[i:i + 1], 10)[1] for i in range(50))
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)])
        print(f"| HNSW efSearch {ef} | {recall:.3f} | {args.queries / seconds:.0f} | "
              f"{brute / seconds:.0f} | {1000 * one:.2f} |", flush=True)


if __name__ == "__main__":
    main()
