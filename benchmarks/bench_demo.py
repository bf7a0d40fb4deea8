"""The demo's settings side by side: time per step and the three numbers it reports, one run after another.

    .venv/bin/python benchmarks/bench_demo.py [--variants previous,current]

``previous`` is the demo before issue #17 (efficientnet_b0, 12 epochs, one torch
thread); ``current`` is ``DemoSettings()`` (threads timed at start-up). Each
variant runs the whole demo into its own folder under benchmarks/_work/demo/.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import time
from pathlib import Path

from galaxymorph.demo import DemoSettings, run_demo
from galaxymorph.training.threads import available_cores

WORK = Path(__file__).resolve().parent / "_work" / "demo"
VARIANTS = {
    "previous": DemoSettings(arch="efficientnet_b0", epochs=12, threads=1),
    "current": DemoSettings(),
}


def cpu() -> str:
    """lscpu's model name and whether AVX-512 is there: a time means nothing without the machine."""
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout if shutil.which("lscpu") else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")),
                 platform.processor())
    return f"{model}, {'AVX-512' if 'avx512f' in text else 'AVX2, no AVX-512' if 'avx2' in text else 'no AVX2'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="previous,current")
    args = parser.parse_args()
    rows = []
    for name in args.variants.split(","):
        out = WORK / name
        shutil.rmtree(out, ignore_errors=True)  # benchmark folders are this script's own
        start = time.perf_counter()
        result = run_demo(out, VARIANTS[name], progress=False)
        wall = time.perf_counter() - start
        settings = json.loads((out / "demo_summary.json").read_text())["settings"]
        rows.append((name, settings, wall, result))
        print(f"{name}: {wall:.0f} s", flush=True)
    print(f"\nCPU: {cpu()}, {available_cores()} cores\n")
    print("| variant | arch, epochs, threads | demo wall s | train s | MAE vs truth (constant, noise floor) "
          "| MAE vs votes (constant) | 90% coverage |")
    print("|---|---|---|---|---|---|---|")
    for name, s, wall, r in rows:
        print(f"| {name} | {s['arch']}, {s['epochs']}, {s['threads']} | {wall:.0f} | {r['seconds']['train']:.0f} | "
              f"{r['mae_truth']:.3f} ({r['mae_truth_constant']:.3f}, {r['mae_truth_noise_floor']:.3f}) | "
              f"{r['mae_votes']:.3f} ({r['mae_votes_constant']:.3f}) | {r['coverage_90']:.1%} |")


if __name__ == "__main__":
    main()
