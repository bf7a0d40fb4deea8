"""Help texts and messages shared by several commands, so the same option or outcome reads the same everywhere."""

from pathlib import Path

from rich.console import Console

CATALOGUE_HELP = ("A catalogue (id_str, file_loc) naming the images of galaxies predicted or embedded from shards, "
                  "which carry no file_loc: for the grid and the CSV.")


def warn_unreadable(out: Path) -> None:
    """predict and embed: one line on stderr for the images of ``out`` that could not be read, if any."""
    from galaxymorph.predict.parts import unreadable_summary

    if summary := unreadable_summary(out):
        Console(stderr=True).print(f"warning: {summary}", style="yellow", markup=False, highlight=False)
