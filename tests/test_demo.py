"""The demo end to end at toy size: every artefact is written and the numbers are consistent."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from galaxymorph.demo import DemoSettings, run_demo


@pytest.mark.slow
def test_demo_runs_end_to_end_at_toy_size(tmp_path):
    settings = DemoSettings(galaxies=150, image_px=24, model_px=16, arch="resnet10t", epochs=1, samples=2,
                            batch_size=32, workers=1)
    result = run_demo(tmp_path, settings, progress=False)
    paths = {k: tmp_path / v.split(str(tmp_path) + "/", 1)[1] for k, v in result["paths"].items()}
    predictions = pd.read_parquet(paths["predictions"])
    manifest = json.loads((paths["shards"] / "manifest.json").read_text())
    # exactly the held-out galaxies, each once, and nothing from the training split
    assert len(predictions) == manifest["splits"]["test"]["count"] == result["test_galaxies"]
    assert predictions["id_str"].is_unique
    assert len(predictions["conc:bar_strong"].iloc[0]) == 2
    evaluation = json.loads((paths["evaluation"] / "evaluation.json").read_text())
    assert evaluation["overall"]["truth"]["model"]["mae"] == pytest.approx(result["mae_truth"])
    assert 0 <= result["coverage_90"] <= 1
    page = paths["report"].read_text()
    assert page.count('"image": "data:image/png;base64,') == len(predictions)  # every test galaxy has its image
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert summary["settings"]["galaxies"] == 150
    assert summary["settings"]["threads"] >= 1  # timed at start-up, recorded with the other settings


def test_the_thread_count_is_timed_on_this_machine_and_torch_is_left_as_it_was():
    import torch

    from galaxymorph.schema import get_schema
    from galaxymorph.training.threads import available_cores, fastest_thread_count

    before = torch.get_num_threads()
    threads = fastest_thread_count(get_schema("gz_decals_dr5"), "test_resnet", 16, 4)
    assert threads in {1, available_cores()} and torch.get_num_threads() == before
