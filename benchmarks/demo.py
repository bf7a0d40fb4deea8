"""The demo's settings side by side: time per step and the three numbers it reports, one run after another.

    python -m benchmarks demo [--variants previous,current]

``previous`` is the demo before issue #17 (efficientnet_b0, 12 epochs, one torch
thread); ``current`` is ``DemoSettings()`` (threads timed at start-up). Each
variant runs the whole demo into its own folder in the work folder. ``--tiny`` runs the
current one at toy size (150 galaxies, one epoch).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time

from benchmarks._harness import Result
from galaxymorph.demo import DemoSettings, run_demo

VARIANTS = {
    "previous": DemoSettings(arch="efficientnet_b0", epochs=12, threads=1),
    "current": DemoSettings(),
}
TOY = dict(galaxies=150, image_px=24, model_px=16, epochs=1, samples=2, batch_size=32, workers=1)
TINY = {"toy": True, "variants": "current"}  # the variants differ only in settings: one checks the code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variants", default="previous,current")
    parser.add_argument("--toy", action="store_true", help=f"every variant at toy size: {TOY}")


def measure(args: argparse.Namespace, result: Result) -> None:
    for name in args.variants.split(","):
        settings = dataclasses.replace(VARIANTS[name], **TOY) if args.toy else VARIANTS[name]
        out = args.work / name
        shutil.rmtree(out, ignore_errors=True)  # this benchmark's own folder
        start = time.perf_counter()
        summary = run_demo(out, settings, progress=False)
        wall = time.perf_counter() - start
        result.arm(name, wall_s=wall, settings=json.loads((out / "demo_summary.json").read_text())["settings"],
                   **{k: v for k, v in summary.items() if k != "paths"})
        print(f"{name}: {wall:.0f} s", flush=True)
    result.table(["variant", "arch, epochs, threads", "demo wall s", "train s", "MAE vs truth (constant, noise floor)",
                  "MAE vs votes (constant)", "90% coverage"],
                 [[name, f"{r['settings']['arch']}, {r['settings']['epochs']}, {r['settings']['threads']}",
                   f"{r['wall_s']:.0f}", f"{r['seconds']['train']:.0f}",
                   f"{r['mae_truth']:.3f} ({r['mae_truth_constant']:.3f}, {r['mae_truth_noise_floor']:.3f})",
                   f"{r['mae_votes']:.3f} ({r['mae_votes_constant']:.3f})", f"{r['coverage_90']:.1%}"]
                  for name, r in result.arms.items()], arms=list(result.arms))
