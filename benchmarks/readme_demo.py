"""Write the README's demo numbers from a demo run, so that they are never edited by hand.

    make demo && .venv/bin/python benchmarks/readme_demo.py [--run demo_output] [--wall SECONDS] [--where TEXT]

Replaces the text between ``<!-- demo numbers: start -->`` and ``<!-- demo numbers: end -->``
in README.md with the run's settings, the machine it ran on (lscpu model, AVX-512 or
not, cores, load average), its time per step, and its numbers against the truth,
the votes and the constant prediction, per question as well.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from bench_demo import cpu

from galaxymorph.training.threads import available_cores

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- demo numbers: start -->", "<!-- demo numbers: end -->"


def section(run: Path, wall: float | None, where: str = "") -> str:
    summary = json.loads((run / "demo_summary.json").read_text())
    evaluation = json.loads((run / "evaluation" / "evaluation.json").read_text())
    s, seconds = summary["settings"], summary["seconds"]
    steps = ", ".join(f"{name.replace('_', ' + ')} {value:.0f} s" for name, value in seconds.items())
    total = wall if wall is not None else sum(seconds.values())
    better = 1 - summary["mae_truth"] / summary["mae_truth_constant"]
    start, end = summary["load_average"]
    lines = [
        f"Measured on {cpu()}, {available_cores()} cores (load average {start:.1f} when the demo "
        f"started, {end:.1f} when it ended){where}: **{int(total // 60)} min {round(total % 60)} s** in all "
        f"({steps}), training {s['arch']} at {s['model_px']} px for {s['epochs']} epochs with "
        f"{s['threads']} torch thread(s).",
        "",
        "Held-out galaxies (MAE of the vote fractions over every answer of every question that got votes; "
        "the constant prediction is each answer's mean fraction *on the test set itself*, which flatters it):",
        "",
        "| | model | constant | noise floor |",
        "|---|---|---|---|",
        f"| MAE against the simulator's true probabilities | **{summary['mae_truth']:.3f}** | "
        f"{summary['mae_truth_constant']:.3f} | {summary['mae_truth_noise_floor']:.3f} (the observed vote fractions) |",
        f"| MAE against the observed vote fractions | **{summary['mae_votes']:.3f}** | "
        f"{summary['mae_votes_constant']:.3f} | |",
    ]
    for name, q in evaluation["questions"].items():
        if "truth" in q:
            lines.append(f"| {name}, MAE against truth | {q['truth']['model']['mae']:.3f} | "
                         f"{q['truth']['constant']['mae']:.3f} | {q['truth']['noise_floor']['mae']:.3f} |")
    lines += [
        "",
        f"So the model is **{better:.0%} closer to the truth than a constant** overall; the 90% predictive "
        f"intervals hold **{summary['coverage_90']:.1%}** of the observed votes (nominal 90%).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "demo_output")
    parser.add_argument("--wall", type=float, help="The whole run's wall-clock seconds (default: the steps' sum)")
    parser.add_argument("--where", default="", help="How the run was made, e.g. ', make demo in a fresh clone'")
    args = parser.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme}: no {START} ... {END} markers to write between")
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: f"{START}\n{section(args.run, args.wall, args.where)}\n{END}",
                 text, flags=re.S)
    readme.write_text(new)
    print(section(args.run, args.wall, args.where))


if __name__ == "__main__":
    main()
