"""Micro-benchmarks (loss, MC prediction, loading, simulate, neighbours, evaluate) on pytest-benchmark:
this tree's library and, with ``--against COMMIT``, that commit's, side by side in one run.

    python -m benchmarks micro                      # this tree
    python -m benchmarks micro --against main       # main's library, then this tree's: ratios per case
    python -m benchmarks micro --against HEAD~5 -k "loss or evaluate"

The cases are ``benchmarks/_micro.py`` (this tree's, for both sides, as asv runs one suite
against many commits). The other commit's ``src/`` is exported with ``git archive`` into the
work folder and put first on ``PYTHONPATH``; each case records the library it imported, and a
case that ran against the wrong one stops the run. pytest-benchmark's own JSON for each side
is kept in the work folder, so ``pytest-benchmark compare`` works on them too.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from benchmarks._harness import PACKAGE, ROOT, Result, git

TINY: dict = {}  # the cases shrink themselves (GALAXYMORPH_BENCH_TINY, set for --tiny)
QUICK_TIMING = ["--benchmark-min-rounds=1", "--benchmark-max-time=0", "--benchmark-warmup=off"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--against", metavar="COMMIT", help="also time this commit's library (any git revision)")
    parser.add_argument("-k", dest="select", help="only the cases this pytest -k expression selects")


def export_src(revision: str, folder: Path) -> tuple[str, Path]:
    """``revision``'s ``src/`` unpacked under ``folder`` (once per commit); (its full commit, the src path)."""
    commit = git("rev-parse", "--verify", f"{revision}^{{commit}}")
    if commit.returncode:
        raise SystemExit(f"--against {revision}: not a commit of this repository ({commit.stderr.strip()})")
    commit_id = commit.stdout.strip()
    target = folder / f"src-{commit_id[:12]}"
    if not (target / "src" / "galaxymorph").is_dir():
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit_id, "src"], capture_output=True, check=True)
        staging = folder / f".src-{commit_id[:12]}-partial"
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(staging, filter="data")
        staging.rename(target)
    return commit_id, target / "src"


def time_cases(src: Path, out: Path, args: argparse.Namespace) -> list[dict]:
    """pytest-benchmark over the cases with ``src``'s galaxymorph; its benchmarks, checked to be from ``src``."""
    inherited = {k: v for k, v in os.environ.items()  # a test worker's xdist marks would turn the timing off
                 if not k.startswith(("PYTEST_XDIST_", "PYTEST_CURRENT_TEST"))}
    env = {**inherited, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)]),
           "GALAXYMORPH_BENCH_TINY": "1" if args.tiny else "0"}
    command = [sys.executable, "-m", "pytest", str(PACKAGE / "_micro.py"), "-q", "-p", "no:cacheprovider",
               f"--benchmark-json={out}", *(["-k", args.select] if args.select else []), *(QUICK_TIMING if args.tiny else [])]
    done = subprocess.run(command, cwd=ROOT, env=env)
    if not out.is_file():
        raise SystemExit(f"the micro-benchmarks against {src} wrote no results (exit {done.returncode})")
    benchmarks = json.loads(out.read_text())["benchmarks"]
    wrong = [b["name"] for b in benchmarks if not b["extra_info"]["galaxymorph"].startswith(str(src.resolve()))]
    if wrong:
        raise SystemExit(f"{wrong} imported galaxymorph from elsewhere than {src} (an editable install first on the path?)")
    return benchmarks


def measure(args: argparse.Namespace, result: Result) -> None:
    sides = {"this tree": ROOT / "src"}
    if args.against:
        commit, src = export_src(args.against, args.work)
        sides = {f"{args.against} ({commit[:7]})": src, **sides}  # the other commit first, then this tree
    cases: dict[str, dict[str, dict]] = {}
    for side, src in sides.items():
        out = args.work / f"pytest-benchmark_{'tree' if src == ROOT / 'src' else src.parent.name}.json"
        for case in time_cases(src, out, args):
            stats = case["stats"]
            name = case["name"].removeprefix("test_")
            result.arm(f"{name}, {side}", median_s=stats["median"], mean_s=stats["mean"], iqr_s=stats["iqr"],
                       rounds=stats["rounds"], extra_info={k: v for k, v in case["extra_info"].items() if k != "galaxymorph"},
                       pytest_benchmark_json=out)
            cases.setdefault(name, {})[side] = result.arms[f"{name}, {side}"]
    names = list(sides)
    rows = []
    for name, by_side in cases.items():
        row = [name, *(f"{1e3 * by_side[s]['median_s']:.3f}" if s in by_side else "failed" for s in names)]
        if len(names) == 2:
            both = all(s in by_side for s in names)
            row.append(f"{result.ratio(f'{name}, {names[1]}', f'{name}, {names[0]}', 'median_s'):.2f}" if both else "")
        rows.append(row)
    result.table(["case", *(f"{s}: median ms" for s in names), *(["this tree / other"] if len(names) == 2 else [])],
                 rows, arms=list(result.arms), align=["---", *["---:"] * (len(names) + (len(names) == 2))])
    traced = [(name, s, by_side[s]["extra_info"]["peak_traced_mib"]) for name, by_side in cases.items()
              for s in by_side if "peak_traced_mib" in by_side[s]["extra_info"]]
    for name, side, mib in traced:
        result.note(f"{name}, {side}: peak traced memory {mib:.1f} MiB (Python and numpy allocations; Arrow's not)")
