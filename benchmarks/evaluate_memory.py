"""Peak memory and time of ``evaluate`` and ``report`` on 1e6 prediction rows, for one or more source trees.

Each variant runs in its own subprocess (``PYTHONPATH=<src>``), so peak RSS is that run's
alone; the table gives peak RSS, the RSS after imports (torch, pandas, pyarrow), and
their difference, which is what the data cost. Compare the code before a change with
the code after in one run:

    git archive <old-commit> src | tar -x -C /tmp/before
    python -m benchmarks evaluate_memory --rows 1000000 --src /tmp/before/src --src src
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._harness import ROOT, Result, portable
from benchmarks._shared import write_catalogue, write_predictions

TINY = {"rows": 2000}

CHILD = """
import json, resource, sys, time
import galaxymorph.evaluation, galaxymorph.report
def rss_mb():
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS')) / 1024
base = rss_mb()
preds, catalogue, out, task = sys.argv[1:5]
start = time.perf_counter()
if task == 'evaluate':
    galaxymorph.evaluation.evaluate(preds, catalogue, out=out)
else:
    galaxymorph.report.build_report(preds, out + '/report.html', evaluation=out)
seconds = time.perf_counter() - start
print(json.dumps({'task': task, 'seconds': seconds, 'base_mb': base,
                  'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  'module': galaxymorph.evaluation.__file__}))
"""


def run(src: str, task: str, preds: Path, catalogue: Path, out: Path) -> dict:
    """One task in a fresh interpreter importing galaxymorph from ``src``."""
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
    done = subprocess.run([sys.executable, "-c", CHILD, str(preds), str(catalogue), str(out), task],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{task} with {src} failed:\n{done.stderr[-3000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    if not measured["module"].startswith(str(Path(src).resolve())):  # e.g. an editable install came first
        raise SystemExit(f"asked for {src}, imported {measured['module']}")
    return measured


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--src", type=Path, action="append",
                        help="a source tree to import galaxymorph from (repeat to compare; default: this tree's src)")


def measure(args: argparse.Namespace, result: Result) -> None:
    sources = args.src or [ROOT / "src"]
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        preds = write_predictions(Path(tmp) / "preds.parquet", args.rows, samples=args.samples)
        catalogue = write_catalogue(Path(tmp) / "catalogue.parquet", args.rows)
        result.figures["predictions_mib"] = preds.stat().st_size / 2**20
        rows = []
        for i, src in enumerate(sources):
            for task in ("evaluate", "report"):
                r = run(str(src), task, preds, catalogue, Path(tmp) / f"eval-{i}")
                result.arm(f"{portable(src)}, {task}", seconds=r["seconds"], peak_mib=r["peak_mb"], after_imports_mib=r["base_mb"])
                rows.append([portable(src), task, f"{r['seconds']:.1f}", f"{r['peak_mb']:.0f}", f"{r['base_mb']:.0f}",
                             f"{r['peak_mb'] - r['base_mb']:.0f}"])
                print(f"{src} {task}: {r['seconds']:.1f} s, peak {r['peak_mb']:.0f} MiB", flush=True)
    result.note(f"{args.rows} rows, {args.samples} samples, 4 answers: {result.figures['predictions_mib']:.0f} MiB "
                "of predictions")
    result.table(["source", "task", "seconds", "peak RSS MiB", "after imports MiB", "data MiB"], rows,
                 arms=list(result.arms), align=["---", "---", "---:", "---:", "---:", "---:"])
