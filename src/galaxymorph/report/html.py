"""One self-contained HTML report: metrics, plots, and a filterable gallery of galaxies.

Everything is inlined (images as base64 PNG, the script and style as text), so
the file opens offline and can be mailed around; no CDN, no framework.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from galaxymorph.acquisition import acquisition_scores
from galaxymorph.data.images import load_image, warn_missing_images
from galaxymorph.data.inputs import image_paths
from galaxymorph.outputs import check_suffix
from galaxymorph.prediction import read_concentrations
from galaxymorph.prediction.layout import OOD_SCORE, ood_flagged, read_metadata
from galaxymorph.prediction.masks import is_mask_store
from galaxymorph.report.masks import build_mask_report
from galaxymorph.report.page import png_data_uri, read_evaluation, resource, write_page
from galaxymorph.schema import Schema

__all__ = ["build_report"]


def _thumbnail(path: str | None, size: int) -> str | None:
    """A PNG data URI of the image at ``path`` (any format the data module reads), or None if unreadable."""
    if not isinstance(path, str) or not path:  # null (shard input) reads as NaN in pandas' string columns
        return None
    try:
        return png_data_uri(load_image(path, size=size, channels=3, any_bands=True))
    except (ValueError, OSError):
        return None


def _fmt(x: Any, digits: int = 3) -> str:
    return "&ndash;" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def _coverage(after: dict[str, float], before: dict[str, float] | None, level: str) -> str:
    """One coverage, as "before &rarr; after" when the evaluation knows the uncalibrated one."""
    return _fmt(after.get(level)) if before is None else f"{_fmt(before.get(level))} &rarr; {_fmt(after.get(level))}"


def _metrics_html(evaluation: dict[str, Any]) -> str:
    overall, uncalibrated = evaluation["overall"], evaluation.get("uncalibrated")
    model, constant = overall["model"], overall["constant"]
    lines = [
        "<h2>Metrics</h2>",
        f"<p class='headline'>{evaluation['galaxies']} galaxies, {evaluation['samples']} MC-dropout samples each. "
        f"Vote-fraction MAE {_fmt(model['mae'])} against {_fmt(constant['mae'])} for a constant prediction "
        f"(each answer's mean fraction), RMSE {_fmt(model['rmse'])} against {_fmt(constant['rmse'])}."]
    if "truth" in overall:
        truth = overall["truth"]
        lines.append(
            f" Against the simulator's true probabilities: MAE {_fmt(truth['model']['mae'])}; the volunteers' own "
            f"vote fractions (the noise floor) reach {_fmt(truth['noise_floor']['mae'])}, a constant "
            f"{_fmt(truth['constant']['mae'])}.")
    if "kaggle_rmse" in overall:
        lines.append(f" Kaggle GZ2 RMSE {_fmt(overall['kaggle_rmse']['model'], 4)} "
                     f"(constant {_fmt(overall['kaggle_rmse']['constant'], 4)}).")
    if uncalibrated is not None:
        before = uncalibrated["overall"]["coverage"]
        lines.append(f" Calibration (one scale per question), before &rarr; after: observed votes inside the 90% "
                     f"predictive intervals {_coverage(overall['coverage'], before, '0.9')}, inside the 50% ones "
                     f"{_coverage(overall['coverage'], before, '0.5')}; NLL per galaxy "
                     f"{_fmt(uncalibrated['overall']['nll_per_galaxy'], 2)} &rarr; {_fmt(overall['nll_per_galaxy'], 2)}.")
    lines.append("</p>")
    levels = ("0.5", "0.9") if uncalibrated is not None else ("0.9",)
    has_truth = "truth" in next(iter(evaluation["questions"].values()))
    head = ["question", "galaxies", "NLL", "MAE", "MAE const.", "RMSE", "RMSE const."]
    moved = " (before &rarr; after)" if uncalibrated is not None else ""
    head += [f"{float(lv):.0%} coverage{moved}" for lv in levels]
    head += [f"accuracy (frac &gt; {evaluation['confident_threshold']}, &ge; {evaluation['min_votes']} votes)"]
    if has_truth:
        head += ["MAE vs truth", "noise floor"]
    rows = []
    for name, e in evaluation["questions"].items():
        cells = [html.escape(name), str(e["galaxies"]), _fmt(e["nll"], 2), _fmt(e["model"]["mae"]),
                 _fmt(e["constant"]["mae"]), _fmt(e["model"]["rmse"]), _fmt(e["constant"]["rmse"])]
        before = None if uncalibrated is None else uncalibrated["questions"][name]["coverage"]
        cells += [_coverage(e["coverage"], before, lv) for lv in levels]
        cells += [f"{_fmt(e['confident']['accuracy'])} (n={e['confident']['galaxies']})"]
        if has_truth:
            cells += [_fmt(e["truth"]["model"]["mae"]), _fmt(e["truth"]["noise_floor"]["mae"])]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    lines.append("<table class='metrics'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>")
    return "\n".join(lines)


def _plots_html(directory: Path, names: list[str]) -> str:
    figures = []
    for name in names:
        path = directory / name
        if path.exists():
            uri = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
            caption = html.escape(path.stem.replace("_", " "))
            figures.append(f"<figure><img src='{uri}' alt='{caption}'><figcaption>{caption}</figcaption></figure>")
    return ("<h2>Plots</h2>" + "".join(figures)) if figures else ""


def _gallery_data(frame: pd.DataFrame, schema: Schema, paths: list[str | None], thumb_size: int) -> dict[str, Any]:
    def column(suffix: str) -> np.ndarray:
        return np.round(frame[[f"{a}{suffix}" for a in schema.answers]].to_numpy(np.float64), 3)

    fraction, q05, q95 = column("_fraction"), column("_q05"), column("_q95")
    asked = np.round(frame[[f"{q}_asked" for q in schema.question_names]].to_numpy(np.float64), 3)
    information = acquisition_scores(read_concentrations(frame, schema), schema)["score"].round(4) if len(frame) else []
    ood = frame[OOD_SCORE].round(3).tolist() if OOD_SCORE in frame.columns else [None] * len(frame)
    galaxies = [
        {"id": str(i), "image": _thumbnail(p, thumb_size), "fraction": f.tolist(), "q05": lo.tolist(),
         "q95": hi.tolist(), "asked": a.tolist(), "information": mi, "ood": o}
        for i, p, f, lo, hi, a, mi, o in zip(frame["id_str"], paths, fraction, q05, q95, asked, information, ood)
    ]
    return {
        "answers": list(schema.answers),
        "questions": [{"name": q, "answers": list(range(sl.start, sl.stop))}
                      for q, sl in zip(schema.question_names, schema.slices)],
        "galaxies": galaxies,
    }


def _read_rows(path: str | Path, positions: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """The rows at sorted ``positions`` of a Parquet file, reading only the row groups that hold them."""
    file = pq.ParquetFile(path)
    sizes = np.array([file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)], dtype=np.int64)
    ends = np.cumsum(sizes)
    groups = np.searchsorted(ends, positions, side="right")
    tables = [file.read_row_group(g, columns=columns).take(positions[groups == g] - (ends[g] - sizes[g]))
              for g in np.unique(groups)]
    return pa.concat_tables(tables).to_pandas() if tables else file.schema_arrow.empty_table().select(columns).to_pandas()


def _ood_summary(flagged: int, galaxies: int) -> str:
    share = flagged / galaxies if galaxies else 0.0
    return (f" Out of distribution (ood_score &gt; 1): {share:.1%} ({flagged} of {galaxies}; about 5% expected "
            "for galaxies like the training ones).")


def build_report(
    predictions: str | Path,
    out: str | Path,
    evaluation: str | Path | None = None,
    catalogue: str | Path | None = None,
    gallery: int = 300,
    thumb_size: int = 96,
    seed: int = 0,
) -> Path:
    """Write the HTML report; the gallery shows ``gallery`` galaxies drawn at random (all if fewer).

    Only the gallery's rows are read from ``predictions``, so
    the memory needed does not grow with the file.

    Images come from the predictions' ``file_loc`` column, or from ``catalogue``
    (its ``file_loc``) when given (predictions made from shards have none); a
    :class:`~galaxymorph.data.images.MissingImagesWarning` says how many cannot be found.
    An ``evaluation`` is refused unless it was made from these predictions (its ``made_from``, same sha256).
    A segmentation model's masks get their own report (:func:`galaxymorph.report.masks.build_mask_report`).
    """
    check_suffix(out, (".html", ".htm"), "an HTML page")
    if is_mask_store(predictions):
        return build_mask_report(predictions, out, evaluation, catalogue, gallery, seed)
    schema, meta = read_metadata(predictions)
    rows = pq.ParquetFile(predictions).metadata.num_rows
    positions = np.sort(np.random.default_rng(seed).choice(rows, gallery, replace=False)) if rows > gallery else np.arange(rows)
    columns = ["id_str", "file_loc"] + [f"{a}_{s}" for s in ("fraction", "q05", "q95") for a in schema.answers]
    columns += [f"conc:{a}" for a in schema.answers]  # the gallery's own rows only: the BALD sort needs them
    flagged = ood_flagged(predictions)  # over every row, not only the gallery's
    columns += [OOD_SCORE] if flagged else []
    frame = _read_rows(predictions, positions, columns + [f"{q}_asked" for q in schema.question_names])
    frame = frame.sort_values("id_str", kind="stable").reset_index(drop=True)
    paths = image_paths(frame, catalogue)
    warn_missing_images(paths)
    metrics, plots = "", ""
    if evaluation is not None:
        directory = Path(evaluation)
        result = read_evaluation(directory, predictions)
        metrics = _metrics_html(result)
        plots = _plots_html(directory, result.get("plots", []))
    data = json.dumps(_gallery_data(frame, schema, paths, thumb_size)).replace("</", "<\\/")
    subtitle = (f"Predictions {html.escape(Path(predictions).name)}: schema {html.escape(schema.name)}, "
                f"{meta['samples']} MC-dropout samples per galaxy; gallery of {len(frame)} galaxies."
                + (_ood_summary(*flagged) if flagged else ""))
    page = resource("template.html")
    for key, value in (("__TITLE__", html.escape(Path(predictions).name)), ("__SUBTITLE__", subtitle),
                       ("__STYLE__", resource("style.css")), ("__METRICS__", metrics), ("__PLOTS__", plots),
                       ("__SCRIPT__", resource("gallery.js")), ("__DATA__", data)):
        page = page.replace(key, value, 1)
    return write_page(out, page)
