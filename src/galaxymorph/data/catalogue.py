"""Read a catalogue and check it once, at the edge, against a schema.

A catalogue is a CSV/Parquet file (or DataFrame) with ``id_str``, ``file_loc``
(relative paths are relative to the catalogue's folder) and one vote-count
column per schema answer. A question whose columns are *all* NaN for a galaxy
was not provided (valid: it costs nothing in the loss); a question only partly
NaN is invalid. Every problem becomes one line ``row, id_str, reason`` in a CSV
report; the caller chooses to fail (:class:`CatalogueError`) or to skip the bad
rows (they stay listed in the report and in a warning, never dropped silently).
"""

from __future__ import annotations

import difflib
import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from galaxymorph.data.images import check_image
from galaxymorph.schema import Schema, get_schema

__all__ = [
    "CatalogueError", "CatalogueWarning", "check_votes", "image_files", "read_catalogue", "read_table", "resolve_paths",
    "unique_ids", "vote_columns",
]

REQUIRED = ("id_str", "file_loc")


class CatalogueError(ValueError):
    """The catalogue has problems; the message counts them, shows the first few and names the report."""


class CatalogueWarning(UserWarning):
    """Rows were skipped (``on_error="skip"``); the report file lists each one."""


def vote_columns(schema: Schema) -> list[str]:
    """The catalogue's vote-count columns, in model output order."""
    return list(schema.answers)


def read_table(catalogue: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, Path | None]:
    """The table of a CSV/Parquet file (and its path; None for a DataFrame, copied), unvalidated.

    The one reader of catalogue-like files, so that a folder, an empty or corrupt
    file is refused the same way everywhere, naming the file.
    """
    if isinstance(catalogue, pd.DataFrame):
        return catalogue.copy(), None
    path = Path(catalogue)
    if path.is_dir():
        raise CatalogueError(f"{path} is a folder; give a catalogue file (.csv or .parquet)")
    if not path.is_file():
        raise CatalogueError(f"catalogue file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv", ".gz", ".txt"):
        raise CatalogueError(f"{path}: unknown catalogue format {path.suffix!r}; use .csv or .parquet")
    try:
        if suffix in (".parquet", ".pq"):
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path, dtype={"id_str": str, "file_loc": str}, keep_default_na=True)
    except ValueError as err:  # pandas' ParserError and EmptyDataError, pyarrow's ArrowInvalid
        kind = "Parquet" if "parquet" in suffix or suffix == ".pq" else "CSV"
        raise CatalogueError(f"{path}: cannot read it as a {kind} table ({str(err).strip()})") from None
    _check_delimiter(table, path)
    if table.empty:
        raise CatalogueError(f"{path} has no galaxies (column names but no rows); give a catalogue with at least one row")
    return table, path


def _check_delimiter(table: pd.DataFrame, path: Path) -> None:
    """A CSV saved with ``;`` or tabs reads as one column whose name holds all the others: say so, not "no column"."""
    if len(table.columns) != 1:
        return
    header = str(table.columns[0])
    separator = next((name for sign, name in ((";", "';'"), ("\t", "tabs")) if sign in header), None)
    if separator:
        raise CatalogueError(f"{path}: its columns are separated by {separator}, not commas (one column "
                             f"{header[:40]!r}...); save it as comma-separated CSV, or as Parquet")


def unique_ids(df: pd.DataFrame, name: str) -> pd.Series:
    """``id_str`` as text; a missing column, an empty or a repeated id is refused naming the row."""
    _check_columns(df, ["id_str"], name)
    ids = df["id_str"].reset_index(drop=True).map(lambda v: v if pd.isna(v) else str(v))
    _refuse(_id_problems(ids), ids, name, "ids must be unique and non-empty")
    return ids


def check_votes(df: pd.DataFrame, schema: Schema, name: str) -> None:
    """Refuse votes that would make the loss or the metrics NaN (see :func:`read_catalogue`), naming row and column."""
    df = df.reset_index(drop=True)
    _refuse(_vote_problems(df, schema), df["id_str"], name, "votes are whole numbers >= 0, NaN for a whole question")


def _refuse(problems: dict[int, list[str]], ids: pd.Series, name: str, rule: str) -> None:
    if problems:
        rows = sorted(problems)
        row, shown = rows[0], ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
        more = f" ({len(rows)} rows in all: {shown})" if len(rows) > 1 else ""
        raise CatalogueError(f"{name}: row {row} id_str={ids[row]}: {problems[row][0]}{more}; {rule}")


def _check_columns(df: pd.DataFrame, wanted: list[str], name: str, report_path: Path | None = None) -> None:
    """Refuse missing columns in one line: the first, with the closest existing names; every one in ``report_path``."""
    missing = [c for c in wanted if c not in df.columns]
    if not missing:
        return
    have = [str(c) for c in df.columns]
    hints = []
    for col in missing:
        close = difflib.get_close_matches(col, have, n=3, cutoff=0.5)
        hints.append(f"{col}: " + (f"closest existing {close}" if close else "no similar column"))
    more = ""
    if len(missing) > 1:
        more = f" (and {len(missing) - 1} more"
        if report_path is not None:
            write_report([("", "", f"missing column {hint}") for hint in hints], report_path)
            more += f", all listed in {report_path}"
        more += ")"
    raise CatalogueError(
        f"catalogue {name} lacks {len(missing)} required column(s): {hints[0]}{more}; rename the columns "
        "(vote columns are '<question>_<answer>', see `galaxymorph schemas show`)"
    )


def resolve_paths(file_loc: pd.Series, root: Path) -> pd.Series:
    """Absolute image paths (None for blank ones); relative ``file_loc`` values are relative to ``root``
    (the catalogue's folder).

    Absolute, so that outputs recording them (predictions, embeddings) find the images
    from whichever folder they are read later.
    """
    return file_loc.map(lambda p: None if pd.isna(p) or not str(p).strip() else os.path.abspath(root / str(p)))


def image_files(frame: pd.DataFrame, root: Path, name: str) -> list[tuple[str, str]]:
    """(id_str, absolute image path) per row of a table with both columns; an empty or repeated id, or an
    empty ``file_loc``, is refused naming the row."""
    frame = frame.reset_index(drop=True)
    ids = unique_ids(frame, name)
    paths = resolve_paths(frame["file_loc"], root)
    _refuse({i: ["file_loc is empty"] for i in np.flatnonzero(paths.isna())}, ids, name,
            "every galaxy needs the path of its image file")
    return list(zip(ids, paths))


def _vote_problems(df: pd.DataFrame, schema: Schema) -> dict[int, list[str]]:
    """Row position -> reasons, for non-numeric, partly NaN, infinite, negative or non-integer votes."""
    problems: dict[int, list[str]] = {}
    raw = df[vote_columns(schema)]
    numeric = raw.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    not_number = raw.notna().to_numpy() & np.isnan(numeric)
    for question, cols in zip(schema.questions, schema.slices):
        block = numeric[:, cols]
        nan = np.isnan(block)
        partial = nan.any(axis=1) & ~nan.all(axis=1) & ~not_number[:, cols].any(axis=1)
        names = np.array(question.columns)
        for i in np.flatnonzero(partial):
            problems.setdefault(i, []).append(
                f"question {question.name} partly NaN ({', '.join(names[nan[i]])}); give all its answers or none"
            )
    for i, j in zip(*np.nonzero(not_number)):
        problems.setdefault(i, []).append(f"{raw.columns[j]} is not a number ({raw.iat[i, j]!r})")
    with np.errstate(invalid="ignore"):
        infinite = np.isinf(numeric)
        negative = (numeric < 0) & ~infinite
        fractional = np.abs(numeric - np.round(numeric)) > 1e-6
    checks = (("infinite", infinite), ("negative", negative), ("not a whole number of votes", fractional))
    for kind, mask in checks:
        for i, j in zip(*np.nonzero(mask)):
            problems.setdefault(i, []).append(f"{raw.columns[j]} = {numeric[i, j]:g} is {kind}")
    return problems


def _id_problems(ids: pd.Series) -> dict[int, list[str]]:
    problems: dict[int, list[str]] = {}
    first_seen: dict[str, int] = {}
    for i, value in enumerate(ids):
        if pd.isna(value) or str(value).strip() == "":
            problems.setdefault(i, []).append("id_str is empty")
            continue
        if value in first_seen:
            problems.setdefault(i, []).append(f"duplicate id_str (first on row {first_seen[value]})")
        else:
            first_seen[value] = i
    return problems


def _image_problems(paths: pd.Series) -> dict[int, list[str]]:
    problems: dict[int, list[str]] = {}
    for i, path in enumerate(paths):
        reason = check_image(path) if isinstance(path, str) and path.strip() else "file_loc is empty"
        if reason:
            problems.setdefault(i, []).append(reason)
    return problems


def write_report(problems: list[tuple[int, str, str]], path: Path) -> None:
    """One CSV line per problem: ``row`` (0-based data row, empty if unknown), ``id_str``, ``reason``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(problems, columns=["row", "id_str", "reason"]).to_csv(path, index=False)


def read_catalogue(
    catalogue: str | Path | pd.DataFrame,
    schema: Schema | str,
    on_error: Literal["raise", "skip"] = "raise",
    report_path: str | Path | None = None,
    check_images: bool = True,
    root: str | Path | None = None,
) -> pd.DataFrame:
    """Read and validate a catalogue; returns it with absolute ``file_loc`` and float votes.

    Args:
        catalogue: CSV/Parquet path, or a DataFrame.
        schema: the decision tree whose answers name the vote columns.
        on_error: ``"raise"`` a :class:`CatalogueError`, or ``"skip"`` bad rows (with a
            :class:`CatalogueWarning`); either way every problem is in the report.
        report_path: CSV of problems; default ``<catalogue>.problems.csv`` beside the
            file (``catalogue.problems.csv`` in ``root``/the working folder for DataFrames).
        check_images: check each image exists and its header parses (cheap, no decode).
        root: folder that relative ``file_loc`` are relative to (default: the catalogue's).

    Example:
        >>> df = read_catalogue("catalogue.parquet", "gz_decals_dr5", on_error="skip")  # doctest: +SKIP
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    schema = get_schema(schema) if isinstance(schema, str) else schema
    df, path = read_table(catalogue)
    name = str(path) if path else "(DataFrame)"
    root = Path(root) if root is not None else (path.parent if path else Path.cwd())
    if report_path is None:
        report_path = path.with_name(path.stem + ".problems.csv") if path else root / "catalogue.problems.csv"
    report_path = Path(report_path)
    _check_columns(df, [*REQUIRED, *vote_columns(schema)], name, report_path)

    df = df.reset_index(drop=True)
    df["id_str"] = df["id_str"].map(lambda v: v if pd.isna(v) else str(v))
    df["file_loc"] = resolve_paths(df["file_loc"], root)

    found: dict[int, list[str]] = {}
    checks = [_id_problems(df["id_str"]), _vote_problems(df, schema)]
    if check_images:
        checks.append(_image_problems(df["file_loc"]))
    for check in checks:
        for i, reasons in check.items():
            found.setdefault(i, []).extend(reasons)

    if found:
        lines = [(i, str(df.at[i, "id_str"]), reason) for i in sorted(found) for reason in found[i]]
        write_report(lines, report_path)
        first, ident, reason = lines[0]
        summary = (f"catalogue {name}: row {first} id_str={ident}: {reason} ({len(lines)} problem(s) in "
                   f"{len(found)} of {len(df)} rows, all listed in {report_path})")
        if on_error == "raise":
            raise CatalogueError(f"{summary}; fix those rows, or skip them with on_error='skip' (--on-error skip), "
                                 "which keeps them listed")
        warnings.warn(f"skipped {len(found)} rows: {summary}", CatalogueWarning, stacklevel=2)
        df = df.drop(index=sorted(found)).reset_index(drop=True)
        df.attrs["skipped"] = [{"row": i, "id_str": ident, "reason": reason} for i, ident, reason in lines]

    votes = vote_columns(schema)
    df[votes] = df[votes].apply(pd.to_numeric).astype(np.float32)
    df.attrs["report_path"] = str(report_path) if found else None
    return df
