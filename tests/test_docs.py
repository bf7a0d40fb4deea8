"""The user guide's worked example stays runnable: jupytext makes it a notebook, nbclient executes it at toy size."""

import json
from pathlib import Path

import jupytext
import pandas as pd
import pytest
from nbclient import NotebookClient

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "catalogue_to_predictions.py"
TOY_SIZE = "GALAXIES, IMAGE_PX, MODEL_PX, EPOCHS = 300, 32, 24, 1"


@pytest.mark.slow
@pytest.mark.parametrize("source", ["simulated", pytest.param("gz2", marks=pytest.mark.real_data)])
def test_worked_example_goes_from_catalogue_to_plots(source, request, tmp_path):
    notebook = jupytext.read(EXAMPLE)
    parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1
    parameters[0].source += f"\n{TOY_SIZE}"  # the kernel inherits this process's environment (PYTHONPATH too)
    if source == "gz2":
        parameters[0].source += f"\nGZ2_KAGGLE = {str(request.getfixturevalue('gz2_dir'))!r}"

    NotebookClient(notebook, timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()

    work = tmp_path / "example_output"
    manifest = json.loads((work / "shards" / "manifest.json").read_text())
    assert manifest["schema"]["name"] == {"simulated": "gz_decals_dr5", "gz2": "gz2"}[source]
    test_split = manifest["splits"]["test"]["count"]
    predictions = pd.read_parquet(work / "predictions.parquet")
    assert len(predictions) == test_split > 0 and predictions["id_str"].is_unique
    plots = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs
             if "image/png" in out.get("data", {})]
    assert len(plots) == 2  # predicted against observed, and the gallery
