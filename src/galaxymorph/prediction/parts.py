"""Streaming and resuming an output: part files, the record of what made them, one job per output.

Each process appends batches (row groups) to part files in ``<out>.parts/``; a part
is written as ``.tmp`` and renamed when complete, so a killed run loses at most one
unfinished part. A re-run skips every id already in a complete part (or in ``<out>``),
then the parts are merged into ``<out>`` without duplicates. Every part and the output
record what made them (metadata ``made_by``: the checkpoint, the sha256 of its weights
and config, the samples, the preprocessing), and a re-run with another model or
settings is refused instead of mixing two posteriors in one file. Images that cannot
be read go to ``<out stem>.errors.csv`` (``id_str, file_loc, reason``) and are retried
by the next run. Predict and embed both write through here.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
import warnings
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout
from torch import nn

from galaxymorph.files import TMP_SUFFIX, atomic_path
from galaxymorph.models.checkpoint import fingerprint
from galaxymorph.models.ensemble import Ensemble
from galaxymorph.models.loading import Checkpoints
from galaxymorph.outputs import check_suffix, claim_file, claim_table
from galaxymorph.prediction.layout import META_KEY

__all__ = ["ErrorLog", "PartWriter", "check_output_file", "completed_ids", "errors_path", "resumable_output",
           "made_by", "merge_parts", "parts_dir", "unreadable_summary"]

ERROR_FIELDS = ("id_str", "file_loc", "reason")
# The names this module writes in <out>.parts/ (PartWriter's prefix "rank0000-<uuid>"): all it ever deletes there.
PART, ERRORS, LOCK = "rank[0-9][0-9][0-9][0-9]-*.parquet", "errors-rank[0-9][0-9][0-9][0-9]-*.csv", ".lock"


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def errors_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".parquet") + ".errors.csv")


def unreadable_summary(out: Path) -> str | None:
    """One line on the images of ``out`` that could not be read (how many, the first with its reason, the list's
    path), or None when there are none: a refused file (a FITS of another band count) is named where people look."""
    errors = errors_path(out)
    if not errors.is_file():
        return None
    listed = pd.read_csv(errors, dtype=str, keep_default_na=False)
    if listed.empty:
        return None
    first = listed.iloc[0]
    return (f"{len(listed)} image(s) could not be read, so they have no row: id_str={first['id_str']}: "
            f"{first['reason']}; all listed in {errors}")


class PartWriter:
    """Streams Arrow tables (batches in ``layout``) into Parquet parts of at most ``rows_per_part`` rows.

    One row group per table. A part is written as ``.tmp`` and renamed only when
    closed, so every visible part is complete; memory holds one batch at a time.
    Predict and embed both write through it, each building its own tables.
    """

    def __init__(self, directory: Path, layout: pa.Schema, rank: int = 0, rows_per_part: int = 50_000):
        self.directory, self.layout = Path(directory), layout
        self.prefix = f"rank{rank:04d}-{uuid.uuid4().hex[:8]}"
        self.rows_per_part = rows_per_part
        self.directory.mkdir(parents=True, exist_ok=True)
        self._writer: pq.ParquetWriter | None = None
        self._rows = 0
        self._parts = 0
        self.rows_written = 0

    def write_table(self, table: pa.Table) -> None:
        if not len(table):
            return
        if self._writer is None:
            self._part = ExitStack()  # holds the part's atomic_path open until it is committed
            tmp = self._part.enter_context(atomic_path(self.directory / f"{self.prefix}-{self._parts:05d}.parquet"))
            self._writer = pq.ParquetWriter(tmp, self.layout)
        self._writer.write_table(table)
        self._rows += len(table)
        self.rows_written += len(table)
        if self._rows >= self.rows_per_part:
            self._commit()

    def _commit(self) -> None:
        assert self._writer is not None
        self._writer.close()
        self._part.close()
        self._writer, self._rows = None, 0
        self._parts += 1

    def close(self) -> None:
        if self._writer is not None:
            self._commit()


class ErrorLog:
    """Appends unreadable images to a per-process CSV, flushed at once so nothing is lost on a kill."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "w", newline="")
        self._csv = csv.writer(self._file)
        self._csv.writerow(ERROR_FIELDS)
        self.count = 0

    def write(self, rows: Iterable[tuple[str, str, str]]) -> None:
        for row in rows:
            self._csv.writerow(row)
            self.count += 1
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def made_by(model: nn.Module, checkpoint: Checkpoints, command: str, **settings: Any) -> dict[str, Any]:
    """What makes an output's rows: recorded in its metadata, compared on every resume (path excepted).

    ``command`` (predict or embed) keeps one from resuming into the other's file. An
    :class:`Ensemble` lists every model's path and sha256, in order.
    """
    members = list(model.models) if isinstance(model, Ensemble) else [model]
    given = list(checkpoint) if isinstance(checkpoint, (list, tuple)) else [checkpoint] * len(members)
    paths = [None if isinstance(c, nn.Module) else str(c) for c in given]
    shas = [fingerprint(m) for m in members]
    single = len(members) == 1
    return {"checkpoint": paths[0] if single else paths, "model_sha256": shas[0] if single else shas,
            "command": command, "preprocessing": model.config["preprocessing"], **settings}


def _setting(key: str, value: Any) -> str:
    if value is None:  # recorded only when not the default (precision)
        return f"the default {key}"
    return f"weights sha256 {str(value)[:12]}" if key == "model_sha256" else f"{key}={value!r}"


def _check_made_by(path: Path, expected: dict[str, Any], out: Path) -> None:
    meta = json.loads((pq.read_schema(path).metadata or {}).get(META_KEY, b"{}"))
    if "made_by" not in meta:
        raise ValueError(f"{path} was not written by this version of galaxymorph predict or embed (no made_by "
                         f"metadata); choose a new --out instead of {out}")
    saved_by = meta["made_by"]
    # both ways: a setting recorded only when it changes the numbers (precision) is absent from the other side
    for key in dict.fromkeys([*expected, *saved_by]):
        saved, value = saved_by.get(key), expected.get(key)
        if key != "checkpoint" and saved != value:
            raise ValueError(
                f"{out} holds rows made with {_setting(key, saved)} (model {meta['made_by'].get('checkpoint')}), "
                f"not {_setting(key, value)}; re-run with the same model and settings to resume, or choose a new --out"
            )


def completed_ids(out: Path, expected: dict[str, Any]) -> set[str]:
    """Ids already in ``out`` or in a complete part, all made as ``expected`` (anything else is refused)."""
    done: set[str] = set()
    sources = ([out] if out.exists() else []) + sorted(parts_dir(out).glob(PART))
    for path in sources:
        _check_made_by(path, expected, out)
        done.update(pq.read_table(path, columns=["id_str"]).column("id_str").to_pylist())
    return done


def check_output_file(out: Path) -> None:
    """``--out`` of predict and embed: a Parquet file name, not a folder (whose rows a file holds, completed_ids checks)."""
    claim_file(out, is_own=True)
    check_suffix(out, (".parquet", ".pq"), "Parquet")


def _node_rank() -> tuple[str, bool]:
    """This node's rank and whether this process launched it (not a further local rank of a DDP job)."""
    node = os.environ.get("NODE_RANK") or os.environ.get("GROUP_RANK") or os.environ.get("SLURM_NODEID") or "0"
    local = os.environ.get("LOCAL_RANK") or os.environ.get("SLURM_LOCALID") or "0"
    return node, local == "0"


@contextmanager
def resumable_output(out: Path, expected: dict[str, Any]) -> Iterator[set[str]]:
    """Claim ``out`` for this job and give the ids it already holds (made as ``expected``).

    The job's first process (node 0's launcher) takes the output's lock, released when
    the process ends however it ends, and only it removes what an interrupted run left
    (unfinished ``.tmp`` parts; the last run's error lists, whose images are retried).
    Every other process of the job (other nodes, further local ranks) only reads, so a
    second job on the same ``out`` stops at the lock before touching anything.
    """
    node, launcher = _node_rank()
    lock = None
    if launcher and node == "0":
        parts_dir(out).mkdir(parents=True, exist_ok=True)
        lock = FileLock(parts_dir(out) / LOCK, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise ValueError(f"another galaxymorph job is writing {out} (lock {lock.lock_file}); wait for it to "
                             "finish, or choose another --out") from None
        except NotImplementedError:  # a file system without flock (e.g. Lustre mounted without it)
            warnings.warn(f"{out}: this file system cannot lock files, so nothing stops a second job from writing "
                          "the same --out; run one job at a time there", stacklevel=3)
            lock = None
        claim_table(errors_path(out), ERROR_FIELDS)  # merged over at the end: it must be this command's too
        for leftover in [*parts_dir(out).glob(PART + TMP_SUFFIX), *parts_dir(out).glob(ERRORS)]:
            leftover.unlink()
    try:
        yield completed_ids(out, expected)
    finally:
        if lock is not None:
            lock.release()


def _merge_rows(sources: list[Path], out: Path, seen: set[str]) -> None:
    """Write every id of ``sources`` once into ``out`` (through a temporary file); ``seen`` collects the ids."""
    layout = pq.read_schema(sources[-1])
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, layout) as writer:
        for path in sources:
            reader = pq.ParquetFile(path)
            for group in range(reader.num_row_groups):
                table = reader.read_row_group(group).cast(layout)
                ids = table.column("id_str").to_pylist()
                keep = [i not in seen and not seen.add(i) for i in ids]  # type: ignore[func-returns-value]
                if not all(keep):
                    table = table.filter(pa.array(keep))
                writer.write_table(table)


def merge_parts(out: Path) -> tuple[int, int]:
    """Fold the parts (and an existing ``out``) into ``out``, each id once; returns (rows, parts merged)."""
    parts = sorted(parts_dir(out).glob(PART))
    sources = ([out] if out.exists() else []) + parts
    seen: set[str] = set()
    if sources:  # none when every image was unreadable: then only the error lists are merged
        _merge_rows(sources, out, seen)
    # every image of the last run's list was retried: what failed again is in this run's lists
    errors = sorted(parts_dir(out).glob(ERRORS))
    failed = [pd.read_csv(e, dtype=str, keep_default_na=False) for e in errors]
    merged = pd.concat(failed, ignore_index=True) if failed else pd.DataFrame(columns=list(ERROR_FIELDS))
    merged = merged[~merged["id_str"].isin(seen)].drop_duplicates("id_str")
    if len(merged):
        merged.to_csv(errors_path(out), index=False)
    elif errors_path(out).exists():
        errors_path(out).unlink()
    for merged_file in [*parts, *errors, parts_dir(out) / LOCK]:
        merged_file.unlink(missing_ok=True)
    try:
        parts_dir(out).rmdir()  # only when it holds nothing but what this command wrote
    except OSError:
        pass
    return len(seen), len(parts)


