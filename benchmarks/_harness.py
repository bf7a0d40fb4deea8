"""The harness every benchmark runs through: work folders, the commit and machine, one result file per run.

A run is one ``python -m benchmarks NAME ...``. Its result file holds the command, the
commit (and whether the tree differed from it), the machine, the date, the settings and
what was measured: the arms (the things compared), other figures, and the tables and
notes printed at the end. Arms measured in the run are side by side; an arm taken from
another run's result file is *borrowed*, and every table and ratio that uses it says so
or refuses (:meth:`Result.ratio`).

Only the standard library is imported at module level: the loss benchmark's zoobot worker
imports this package inside zoobot's own environment, where galaxymorph is absent.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import pkgutil
import platform
import shlex
import subprocess
from pathlib import Path
from typing import Any, Sequence

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
RESULTS = PACKAGE / "results"
WORK_ROOT = Path(os.environ.get("GALAXYMORPH_BENCH_WORK", PACKAGE / "_work"))
FORMAT = 1  # of the result files; bumped when a key changes meaning


def names() -> list[str]:
    """Every benchmark: the package's public modules (helpers start with ``_``)."""
    return sorted(m.name for m in pkgutil.iter_modules([str(PACKAGE)]) if not m.ispkg and not m.name.startswith("_"))


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def source() -> dict[str, Any]:
    """The commit the code ran at and whether the tree differed from it (result files and BENCHMARKS.md aside)."""
    head = git("rev-parse", "HEAD")
    if head.returncode:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--", ".", f":!{RESULTS.relative_to(ROOT)}", ":!BENCHMARKS.md")
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def machine() -> dict[str, Any]:
    """What a figure means nothing without: CPU model and flags, cores, memory, load, library versions, GPU."""
    import cpuinfo  # comes with pytest-benchmark (the test extras), which describes its machine the same way
    import torch

    import galaxymorph

    cpu = cpuinfo.get_cpu_info()
    return {
        "cpu": cpu.get("brand_raw") or platform.processor() or platform.machine(),
        "flags": sorted(cpu.get("flags", [])),
        "cores": os.cpu_count(),
        "available_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_start": list(os.getloadavg()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "galaxymorph": galaxymorph.__version__,
        "platform": platform.platform(),
    }


def portable(value: Any) -> Any:
    """Settings as JSON, with paths beside the project written relative to it (no paths of one machine)."""
    if isinstance(value, Path):
        value = value.resolve()
        return os.path.relpath(value, ROOT) if ROOT.parent in value.parents else str(value)
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    return value


def _json(value: Any) -> Any:
    """What ``json`` cannot write by itself: paths (portable) and numpy scalars and arrays."""
    if isinstance(value, Path):
        return portable(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"a result holds a {type(value).__name__}, which JSON cannot hold: {value!r}")


class Result:
    """What one run measured, saved as one JSON file (the format is in the module docstring)."""

    def __init__(self, benchmark: str, argv: list[str], settings: dict[str, Any], tiny: bool) -> None:
        self.data: dict[str, Any] = {
            "format": FORMAT,
            "benchmark": benchmark,
            "command": shlex.join(["python", "-m", "benchmarks", benchmark, *argv]),
            "tiny": tiny,
            "measured": True,
            **source(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(),
            "settings": portable(settings),
            "arms": {},
            "skipped": {},
            "borrowed": {},
            "figures": {},
            "blocks": [],
        }

    @property
    def arms(self) -> dict[str, dict[str, Any]]:
        return self.data["arms"]

    @property
    def figures(self) -> dict[str, Any]:
        """Figures of the run that belong to no one arm (sizes, counts, checks)."""
        return self.data["figures"]

    def arm(self, name: str, **figures: Any) -> dict[str, Any]:
        """Record (or add to) an arm measured in this run; returns its figures."""
        if name in self.data["borrowed"]:
            raise ValueError(f"arm {name!r} is borrowed from another run; measure it here or borrow it, not both")
        self.arms.setdefault(name, {}).update(portable(figures))
        return self.arms[name]

    def skip(self, name: str, why: str) -> None:
        """An arm the benchmark has but did not measure in this run, and why (e.g. zoobot not installed)."""
        self.data["skipped"][name] = why

    def borrow(self, name: str, figures: dict[str, Any], source: dict[str, Any]) -> None:
        """An arm measured in another run: usable in tables, never side by side; ``source`` says where it ran
        (``from``, and ``commit``, ``date``, ``cpu`` where known)."""
        if name in self.arms:
            raise ValueError(f"arm {name!r} was measured in this run; borrow it under another name")
        self.data["borrowed"][name] = {**portable(source), "figures": portable(figures)}

    def borrow_from_result(self, path: Path, name: str) -> dict[str, Any]:
        """Arm ``name`` of another run's result file, borrowed; returns its figures."""
        other = json.loads(Path(path).read_text())
        if name not in other["arms"]:
            raise ValueError(f"{path}: no arm {name!r} (it has {sorted(other['arms'])})")
        self.borrow(name, other["arms"][name], {"from": Path(path), "commit": other["commit"], "date": other["date"],
                                                "cpu": other["machine"].get("cpu")})
        return other["arms"][name]

    def figures_of(self, arm: str) -> dict[str, Any]:
        """An arm's figures, measured here or borrowed."""
        return self.arms[arm] if arm in self.arms else self.data["borrowed"][arm]["figures"]

    def ratio(self, numerator: str, denominator: str, key: str) -> float:
        """``numerator``'s figure over ``denominator``'s: only for two arms measured side by side in this run."""
        for name in (numerator, denominator):
            if name in self.data["borrowed"]:
                raise ValueError(f"no ratio with arm {name!r}: it ran in another run "
                                 f"({self.data['borrowed'][name]['from']}), and ratios are measured side by side")
            if name not in self.arms:
                raise ValueError(f"no arm {name!r} in this run (arms: {sorted(self.arms)})")
        return self.arms[numerator][key] / self.arms[denominator][key]

    def table(self, columns: list[str], rows: list[list[Any]], arms: Sequence[str] = (), title: str | None = None,
              align: list[str] | None = None) -> None:
        """A table of the run's figures (cells as they should print); ``arms``: the arms it compares."""
        unknown = [a for a in arms if a not in self.arms and a not in self.data["borrowed"]]
        if unknown:
            raise ValueError(f"table compares arms this run has neither measured nor borrowed: {unknown}")
        borrowed = [a for a in arms if a in self.data["borrowed"]]
        self.data["blocks"].append({"table": {"title": title, "columns": list(columns),
                                              "rows": [[str(c) for c in row] for row in rows],
                                              "align": align or ["---"] * len(columns)},
                                    "arms": list(arms), "side_by_side": len(arms) > 1 and not borrowed,
                                    "borrowed": borrowed})

    def note(self, text: str) -> None:
        """A line of Markdown printed (and rendered into BENCHMARKS.md) after the tables before it."""
        self.data["blocks"].append({"text": text})

    def save(self, folder: Path) -> Path:
        """Write the result file (never over another); returns its path."""
        self.data["machine"]["load_average_end"] = list(os.getloadavg())
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{self.data['date'][:19].replace(':', '')}_{(self.data['commit'] or 'nogit')[:7]}"
        path, n = folder / f"{stem}.json", 1
        while True:  # "x" and the next free name: a second run in the same second must not overwrite the first
            try:
                file = open(path, "x")
                break
            except FileExistsError:
                n += 1
                path = folder / f"{stem}_{n}.json"
        with file:
            json.dump(self.data, file, indent=1, allow_nan=True, default=_json)
            file.write("\n")
        return path


def output_folder(text: str) -> Path:
    """argparse type of a folder a benchmark writes into: refused at once (one line, exit 2) where a file stands."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder; name a folder (it is made if missing)")
    return path


def positive_count(text: str) -> int:
    """argparse type of a number of things (galaxies, epochs, samples, px): a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def parser_for(name: str, module: Any) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks {name}", description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    harness = parser.add_argument_group("harness")
    harness.add_argument("--tiny", action="store_true",
                         help="seconds, not minutes: checks that the benchmark runs (the tests run this); figures mean nothing")
    harness.add_argument("--work-root", type=output_folder, help=f"work folders: ROOT/{name} and caches in ROOT/shared "
                         f"(default {WORK_ROOT.name}/ beside this file, {WORK_ROOT.name}/tiny with --tiny; "
                         "$GALAXYMORPH_BENCH_WORK overrides)")
    harness.add_argument("--results", type=output_folder, help=f"folder for the result file (default results/{name}/, "
                         "the work folder with --tiny)")
    for preset, defaults in getattr(module, "PRESETS", {}).items():
        parser.add_argument(f"--{preset}", action="store_true", help=f"the {preset} version's defaults: {defaults}")
    module.add_arguments(parser)
    return parser


def run(name: str, argv: list[str]) -> tuple[Path, dict[str, Any]]:
    """``python -m benchmarks NAME ARGV``: measure, print the tables, write the result file; returns (path, result)."""
    module = importlib.import_module(f"benchmarks.{name}")
    parser = parser_for(name, module)
    given = parser.parse_known_args(argv)[0]
    for preset, defaults in [*getattr(module, "PRESETS", {}).items(), ("tiny", module.TINY)]:
        if getattr(given, preset):
            parser.set_defaults(**defaults)  # options given on the command line still win
    args = parser.parse_args(argv)
    root = args.work_root or (WORK_ROOT / "tiny" if args.tiny else WORK_ROOT)
    args.work, args.shared = root / name, root / "shared"
    args.work.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("work_root", "results", "work", "shared")}
    result = Result(name, argv, settings, args.tiny)
    module.measure(args, result)
    path = result.save(args.results or (args.work if args.tiny else RESULTS / name))
    return path, result.data
