"""The evaluation's figures: calibration curves (overall and per question), confusion matrices, scatter plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from galaxymorph.schema import Schema  # noqa: E402

__all__ = ["plot_evaluation"]


def _grid(n: int, size: float = 3.0) -> tuple[plt.Figure, np.ndarray]:
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def _short(answer: str) -> str:
    return answer.split("_", 1)[1]


def plot_calibration(result: dict[str, Any], path: Path) -> None:
    """Observed share inside each central predictive interval against its nominal level."""
    levels = result["levels"]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":", label="perfect")
    for name, entry in result["questions"].items():
        if entry["galaxies"]:
            ax.plot(levels, [entry["coverage"][str(lv)] for lv in levels], lw=1, alpha=0.6, label=name)
    ax.plot(levels, [result["overall"]["coverage"][str(lv)] for lv in levels], color="black", lw=2.5, label="all (votes)")
    if "truth" in next(iter(result["questions"].values())):
        truth = [np.nanmean([e["truth"]["coverage"][str(lv)] for e in result["questions"].values() if e["galaxies"]])
                 for lv in levels]
        ax.plot(levels, truth, color="tab:red", lw=2.5, ls="--", label="true p in credible interval")
    ax.set(xlabel="nominal level of the central interval", ylabel="observed coverage", xlim=(0, 1), ylim=(0, 1),
           title="Calibration")
    ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_reliability(result: dict[str, Any], path: Path) -> None:
    """Per question, observed coverage of each central predictive interval after calibration and, if known, before."""
    levels, before = result["levels"], result.get("uncalibrated")
    scales = result.get("calibration_scales", {})
    answered = {name: entry for name, entry in result["questions"].items() if entry["galaxies"]}
    fig, axes = _grid(max(len(answered), 1))
    for ax, (name, entry) in zip(axes, answered.items()):
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":")
        ax.plot(levels, [entry["coverage"][str(lv)] for lv in levels], color="black", lw=1.5,
                label="calibrated" if before is not None else "model")
        if before is not None:
            ax.plot(levels, [before["questions"][name]["coverage"][str(lv)] for lv in levels], color="black", lw=1.5,
                    ls="--", label="uncalibrated")
        ax.set(xlim=(0, 1), ylim=(0, 1), title=f"{name}, scale {scales[name]:.2f}" if name in scales else name)
        ax.title.set_fontsize(8)
        ax.set_xlabel("nominal level", fontsize=7)
        ax.set_ylabel("observed coverage", fontsize=7)
        ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_confusion(result: dict[str, Any], path: Path) -> None:
    """Per question: most-voted answer (rows) against most-predicted (columns), confident galaxies only."""
    entries = [(n, e["confident"]) for n, e in result["questions"].items()]
    fig, axes = _grid(len(entries), 3.2)
    for ax, (name, conf) in zip(axes, entries):
        matrix = np.asarray(conf["confusion"], dtype=float)
        shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(shares, vmin=0, vmax=1, cmap="Blues")
        labels = [_short(a)[:12] for a in conf["answers"]]
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, int(v), ha="center", va="center", fontsize=6, color="white" if shares[i, j] > 0.5 else "black")
        acc = conf["accuracy"]
        ax.set_title(f"{name}\nacc {acc:.2f} (n={conf['galaxies']})" if conf["galaxies"] else f"{name}\n(no confident)",
                     fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_scatter(schema: Schema, predicted: np.ndarray, reference: np.ndarray, path: Path, label: str) -> None:
    """Per question, predicted fraction against ``reference`` (observed or true) for every answer."""
    fig, axes = _grid(schema.n_questions)
    for ax, name, sl in zip(axes, schema.question_names, schema.slices):
        for i in range(sl.start, sl.stop):
            keep = np.isfinite(reference[:, i])
            ax.scatter(reference[keep, i], predicted[keep, i], s=3, alpha=0.4, label=_short(schema.answers[i])[:14])
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":")
        ax.set(xlim=(0, 1), ylim=(0, 1), title=name)
        ax.title.set_fontsize(8)
        ax.set_xlabel(label, fontsize=7)
        ax.set_ylabel("predicted fraction", fontsize=7)
        ax.legend(fontsize=5, markerscale=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


PLOT_FILES = ("calibration.png", "reliability.png", "confusion.png", "predicted_vs_observed.png",
              "predicted_vs_truth.png")


def plot_evaluation(
    result: dict[str, Any], schema: Schema, predicted: np.ndarray, observed: np.ndarray,
    truth: np.ndarray | None, out: Path,
) -> list[str]:
    """Write every figure into ``out``; returns their file names."""
    out = Path(out)
    calibration, reliability, confusion, versus_observed, versus_truth = PLOT_FILES
    plot_calibration(result, out / calibration)
    plot_reliability(result, out / reliability)
    plot_confusion(result, out / confusion)
    plot_scatter(schema, predicted, observed, out / versus_observed, "observed vote fraction")
    names = [calibration, reliability, confusion, versus_observed]
    if truth is not None:
        plot_scatter(schema, predicted, truth, out / versus_truth, "true probability")
        names.append(versus_truth)
    return names
