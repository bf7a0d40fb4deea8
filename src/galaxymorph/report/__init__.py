"""The evaluation's plots and the self-contained HTML report."""

from galaxymorph.report.html import build_report
from galaxymorph.report.plots import plot_evaluation

__all__ = ["build_report", "plot_evaluation"]
