"""Simulator throughput: galaxies per second at several image sizes, side by side in one run.

Measures wall-clock rate and CPU-seconds per galaxy (this process and its workers), and
extrapolates the wall time of 10,000 galaxies on 2 dedicated cores from the CPU cost,
since the development machine is shared and wall time depends on the neighbours.

    .venv/bin/python benchmarks/bench_simulate.py --n 512 --sizes 64 128 256 --workers 2
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

from galaxymorph.simulate import simulate_catalogue


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="galaxies per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--format", default="png")
    args = parser.parse_args()
    simulate_catalogue(16, 32, tempfile.mkdtemp(), workers=1, progress=False)  # warm up imports
    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as out:
            wall, cpu = time.perf_counter(), _cpu_seconds()
            simulate_catalogue(args.n, size, out, image_format=args.format, workers=args.workers, progress=False)
            wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
        rows.append((size, args.n / wall, args.n / cpu, 10_000 / (2 * args.n / cpu)))
    base = rows[0][2]
    print(f"n={args.n} per size, workers={args.workers}, format={args.format}")
    print("| size px | galaxies/s (wall) | galaxies per CPU-second | CPU cost vs first | 10,000 on 2 free cores (s, extrapolated) |")
    print("|---|---|---|---|---|")
    for size, wall_rate, cpu_rate, ten_k in rows:
        print(f"| {size} | {wall_rate:.1f} | {cpu_rate:.1f} | {base / cpu_rate:.2f}x | {ten_k:.0f} |")


if __name__ == "__main__":
    main()
