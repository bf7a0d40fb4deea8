"""``galaxymorph demo``: the whole pipeline on simulated galaxies, in minutes."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["demo"]


def demo(
    out: Path = typer.Option(Path("demo_output"), help="Folder for everything the demo writes."),
    galaxies: int = typer.Option(None, min=10, help="Galaxies to simulate. (default 3000)"),
    epochs: int = typer.Option(None, min=1, help="Training epochs. (default 16)"),
    threads: int = typer.Option(None, min=1, help="Torch threads. (default: 1 or all cores, whichever trains faster when the demo starts)"),
) -> None:
    """Simulate galaxies, shard, train, predict held-out galaxies, evaluate against truth, write the report."""
    from galaxymorph.demo import DemoSettings, run_demo

    overrides = {k: v for k, v in {"galaxies": galaxies, "epochs": epochs, "threads": threads}.items() if v is not None}
    run_demo(out, DemoSettings(**overrides))
