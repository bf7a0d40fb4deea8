"""Whose work a folder or file holds, so that no command writes into, or deletes from, another's.

Each command that writes a folder keeps a marker in it (its settings file). A
folder is free when it is absent or empty; it belongs to a command when it holds
that command's marker, or only files that command writes; anything else is
refused with what it holds and the fix. Every command goes through
:func:`claim_folder` or :func:`claim_file` before writing, and a file whose name
says another format than the one written (``--out q.parquet`` for a CSV) is refused
by :func:`check_suffix` instead of holding, say, CSV text under a Parquet name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

__all__ = ["SOFTWARE", "OutputInUse", "check_suffix", "claim_file", "claim_folder", "claim_picture", "claim_table"]

SOFTWARE = "galaxymorph"  # the Software text chunk of every PNG galaxymorph draws, so it knows its own pictures

# marker file -> what a folder holding it is
MARKERS = {
    "train_config.yaml": "a training run (galaxymorph train)",
    "finetune_config.yaml": "a fine-tuning run (galaxymorph finetune)",
    "plan.json": "shards (galaxymorph shard)",
    "manifest.json": "shards (galaxymorph shard)",
    "simulation.json": "a simulated data set (galaxymorph simulate)",
    "evaluation.json": "an evaluation (galaxymorph evaluate)",
    "fetch.json": "files of a Zenodo record (galaxymorph fetch)",
}


class OutputInUse(ValueError):
    """The output named holds work this command did not write; the message says what and the fix."""


def claim_folder(folder: str | Path, marker: str, own_files: Iterable[str] = ()) -> bool:
    """May this command write ``folder``? True: it holds this command's earlier work (resume); False: it is free.

    Args:
        folder: the output folder (``--out``).
        marker: the file that marks this command's folders (e.g. ``train_config.yaml``).
        own_files: further names this command writes, so a folder holding only those is its own
            (a run interrupted before its marker was written).

    Raises:
        OutputInUse: the folder is a file, or holds anything else.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputInUse(f"--out {folder} is a file, not a folder; choose a folder")
    if (folder / marker).is_file():
        return True
    entries = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    if set(entries) <= {marker, *own_files}:
        return bool(entries)
    held = next((what for name, what in MARKERS.items() if name in entries), None)
    if held:
        raise OutputInUse(f"--out {folder} holds {held}; choose a new --out (nothing there is overwritten)")
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    raise OutputInUse(
        f"--out {folder} already holds files this command did not write ({shown}); choose a new or empty --out"
    )


def check_suffix(path: str | Path, suffixes: tuple[str, ...], kind: str, option: str = "--out") -> None:
    """Refuse a file name whose suffix is not one of ``suffixes`` (lower case), the format ``kind`` that is written."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"{option} {path}: the output is {kind}; name it {' or '.join(suffixes)}")


def claim_file(path: str | Path, is_own: bool, option: str = "--out") -> None:
    """Refuse to replace an existing ``path`` that this command did not write (``is_own`` says whether it did)."""
    path = Path(path)
    if path.is_dir():
        raise OutputInUse(f"{option} {path} is a folder; give a file name")
    if path.exists() and not is_own:
        raise OutputInUse(f"{option} {path} exists and was not written by this command; choose another name or move it")


def claim_table(path: str | Path, columns: Iterable[str], option: str = "--out") -> None:
    """Like :func:`claim_file` for a CSV this command writes: its own if the header holds all of ``columns``."""
    path = Path(path)
    check_suffix(path, (".csv",), "CSV", option)
    try:
        header = path.open().readline().strip().split(",") if path.is_file() else []
    except (OSError, UnicodeDecodeError):
        header = []
    claim_file(path, is_own=bool(header) and set(columns) <= set(header), option=option)


def claim_picture(path: str | Path, option: str = "--grid") -> None:
    """Like :func:`claim_file` for a PNG: its own if galaxymorph drew it (``SOFTWARE`` in its metadata)."""
    from PIL import Image

    path = Path(path)
    check_suffix(path, (".png",), "a PNG picture", option)
    own = False
    if path.is_file():
        try:
            with Image.open(path) as image:
                own = image.info.get("Software") == SOFTWARE
        except OSError:
            own = False
    claim_file(path, is_own=own, option=option)
