"""Help texts and messages shared by several commands, so the same option or outcome reads the same everywhere."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rich.console import Console

CATALOGUE_HELP = ("A catalogue (id_str, file_loc) naming the images of galaxies predicted or embedded from shards, "
                  "which carry no file_loc: for the grid and the CSV.")


def warn_unreadable(out: Path) -> None:
    """predict and embed: one line on stderr for the images of ``out`` that could not be read, if any."""
    from galaxymorph.prediction.parts import unreadable_summary

    if summary := unreadable_summary(out):
        _warning_line(summary)


@contextmanager
def warnings_as_lines(*categories: type[Warning]) -> Iterator[None]:
    """Within: each warning of ``categories`` printed as one ``warning:`` line on stderr, every time; others as ever."""
    with warnings.catch_warnings():
        for category in categories:
            warnings.simplefilter("always", category)
        others = warnings.showwarning

        def show(message, category, *args, **kwargs) -> None:
            if issubclass(category, categories):
                _warning_line(str(message))
            else:
                others(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


def _warning_line(text: str) -> None:
    """``warning: text`` on stderr as one line (never wrapped, no markup read into it)."""
    Console(stderr=True).print(f"warning: {text}", style="yellow", markup=False, highlight=False, soft_wrap=True)
