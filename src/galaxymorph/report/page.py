"""What every report page shares: inline images, the package's page resources, the evaluation it
shows (refused unless made from the same predictions), and writing the page without replacing
a file that is not a galaxymorph report.
"""

from __future__ import annotations

import base64
import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from galaxymorph.outputs import claim_file
from galaxymorph.prediction.layout import predictions_identity

__all__ = ["TITLE", "png_data_uri", "read_evaluation", "resource", "write_page"]

TITLE = "<title>galaxymorph report: "  # in every report's first lines: a file holding it may be rewritten


def resource(name: str) -> str:
    """A file of this package's report folder (the template, the style, the script) as text."""
    return (resources.files("galaxymorph.report") / name).read_text()


def png_data_uri(pixels: np.ndarray) -> str:
    """uint8 pixels (H, W, 1 or 3) as an inline PNG."""
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def read_evaluation(evaluation: str | Path, predictions: str | Path) -> dict[str, Any]:
    """The ``evaluation.json`` in ``evaluation``, refused unless it was made from ``predictions``."""
    directory = Path(evaluation)
    result = json.loads((directory / "evaluation.json").read_text())
    _check_made_from(directory, result, predictions)
    return result


def _check_made_from(evaluation: Path, result: dict[str, Any], predictions: str | Path) -> None:
    """Refuse an evaluation of other predictions than the report's (its metrics beside another gallery)."""
    these = predictions_identity(predictions)
    made_from = result.get("made_from", {}).get("predictions")
    if made_from is not None and made_from["sha256"] == these["sha256"]:
        return
    catalogue = result.get("made_from", {}).get("catalogue") or "CATALOGUE"
    fix = (f"evaluate these predictions (galaxymorph evaluate --predictions {predictions} --catalog {catalogue} "
           "--out NEW_FOLDER) and pass --evaluation NEW_FOLDER")
    if made_from is None:
        raise ValueError(f"--evaluation {evaluation}: its evaluation.json does not record which predictions it was "
                         f"made from (written before evaluations recorded it); {fix}")

    def named(identity: dict[str, Any]) -> str:
        return f"{identity['path']} ({identity['rows']} rows, sha256 {identity['sha256'][:12]})"

    raise ValueError(f"--evaluation {evaluation} was made from {named(made_from)}, not from --predictions "
                     f"{named(these)}; {fix}, or report the predictions it was made from")


def write_page(out: str | Path, page: str) -> Path:
    """Write a report's HTML to ``out``, refusing a file that is not a galaxymorph report (:data:`TITLE` at its top)."""
    out = Path(out)
    claim_file(out, is_own=out.is_file() and TITLE in out.read_text(encoding="utf-8", errors="replace")[:500])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
