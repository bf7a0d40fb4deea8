"""``benchmarks/bench_gpu.py --tiny`` runs anywhere: the GPU benchmark stays runnable until a GPU runs it."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench_gpu(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # bench_gpu imports bench_train_common beside it
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core machine more threads spin against each other
    import bench_gpu

    yield bench_gpu
    torch.set_num_threads(before)
    sys.modules.pop("bench_gpu", None)


def test_tiny_gpu_benchmark_measures_both_architectures_on_cpu(bench_gpu, tmp_path):
    out = tmp_path / "bench_gpu.json"
    results = bench_gpu.main(["--tiny", "--accelerator", "cpu", "--out", str(out)])
    assert json.loads(out.read_text())["rows"] == results["rows"]
    assert results["settings"]["size"] == 32 and results["device"].startswith("cpu")
    has_zoobot = importlib.util.find_spec("zoobot") is not None
    libraries = ["galaxymorph", "zoobot 2.9"] if has_zoobot else ["galaxymorph"]
    assert [(r["arch"], r["library"]) for r in results["rows"]] == [
        (arch, library) for arch in ("efficientnet_b0", "convnext_nano") for library in libraries]
    if not has_zoobot:
        assert results["zoobot"].startswith("not importable")
    for row in results["rows"]:
        for key in ("train_images_per_s", "predict_galaxies_per_s"):
            assert math.isfinite(row[key]) and row[key] > 0, (row, key)


@pytest.mark.slow
def test_tiny_zoobot_parity_benchmark_embeds_both_encoders_by_hub_name(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_zoobot_parity

    results = bench_zoobot_parity.main(["--tiny", "--skip-zoobot", "--work", str(tmp_path)])
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert results["galaxies"] == 4 and results["zoobot"].startswith("not run")
    assert results["encoders"] == {"local/published": {"n_features": 64}, "local/exported": {"n_features": 64}}
