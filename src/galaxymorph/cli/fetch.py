"""``galaxymorph fetch``: a Galaxy Zoo release (or any Zenodo record) downloaded, verified, unpacked and catalogued."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.filesize import decimal

console = Console(stderr=True)

__all__ = ["fetch"]


def fetch(
    release: str = typer.Argument(None, help="gz_decals_dr5 (Zenodo 4196267: GZD-5 votes and images) or gz2 "
                                             "(Zenodo 3565489: GZ2 images); or give --record."),
    out: Path = typer.Option(..., "--out", help="Folder for the files, their unpacked archives and the catalogue "
                                                "(re-run to resume)."),
    record: int = typer.Option(None, "--record", min=1, help="Any Zenodo record by number, or another version of "
                                                             "the release's record."),
    files: list[str] = typer.Option(None, "--files", help="Only the record's files matching this pattern "
                                                          "(repeatable; default: the release's, else all)."),
    server: str = typer.Option(None, "--server", help="The archive's base address, for mirrors and caches "
                                                      "(default: $GALAXYMORPH_ZENODO_URL, else https://zenodo.org)."),
    unpack: bool = typer.Option(True, "--unpack/--no-unpack", help="Unpack .zip/.tar files into folders named "
                                                                   "after them."),
) -> None:
    """Download a Zenodo record's files with resumable, verified transfers; make GZD-5's votes a catalogue."""
    from galaxymorph.archive import fetch as fetch_record
    from galaxymorph.archive.gz_decals import missing_images_path

    fetched = fetch_record(release, out, record=record, files=files or (), server=server, unpack_archives=unpack)
    size = sum(p.stat().st_size for p in fetched.files)
    console.print(f"{out}: {len(fetched.files)} file(s) of Zenodo record {fetched.record.id} ({decimal(size)}), "
                  "md5 verified")
    path = fetched.catalogue_path
    if path is not None:
        missing = fetched.catalogue.attrs.get("missing_images", 0)
        console.print(f"catalogue: {path} ({len(fetched.catalogue)} galaxies"
                      + (f"; {missing} without an image are listed in {missing_images_path(path)}" if missing else "")
                      + ")")
        console.print(f"next: galaxymorph shard --catalog {path} --schema gz_decals_dr5 --out shards/gz_decals_dr5")
    if fetched.note:
        console.print(f"note: {fetched.note}")
