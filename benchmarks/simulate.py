"""Simulator throughput: galaxies per second at several image sizes, side by side in one run.

Measures wall-clock rate and CPU-seconds per galaxy (this process and its workers), and
extrapolates the wall time of 10,000 galaxies on 2 dedicated cores from the CPU cost,
since the development machine is shared and wall time depends on the neighbours.

    python -m benchmarks simulate --n 512 --sizes 64 128 256 --workers 2
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

from benchmarks._harness import Result
from galaxymorph.simulate import simulate_catalogue

TINY = {"n": 4, "sizes": [16, 32], "workers": 1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=512, help="galaxies per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--format", default="png")


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(args: argparse.Namespace, result: Result) -> None:
    with tempfile.TemporaryDirectory(dir=args.work) as warm:
        simulate_catalogue(4, 16, warm, workers=1, progress=False)  # imports and first-call costs out of the timing
    for size in args.sizes:
        with tempfile.TemporaryDirectory(dir=args.work) as out:
            wall, cpu = time.perf_counter(), _cpu_seconds()
            simulate_catalogue(args.n, size, out, image_format=args.format, workers=args.workers, progress=False)
            wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
        result.arm(f"{size} px", galaxies_per_s=args.n / wall, galaxies_per_cpu_s=args.n / cpu,
                   ten_thousand_on_2_cores_s=10_000 / (2 * args.n / cpu))
    first = f"{args.sizes[0]} px"
    result.note(f"n={args.n} per size, workers={args.workers}, format={args.format}")
    result.table(["size px", "galaxies/s (wall)", "galaxies per CPU-second", "CPU cost vs first",
                  "10,000 on 2 free cores (s, extrapolated)"],
                 [[name.split()[0], f"{a['galaxies_per_s']:.1f}", f"{a['galaxies_per_cpu_s']:.1f}",
                   f"{result.ratio(first, name, 'galaxies_per_cpu_s'):.2f}x", f"{a['ten_thousand_on_2_cores_s']:.0f}"]
                  for name, a in result.arms.items()], arms=list(result.arms))
