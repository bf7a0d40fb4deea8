"""Every benchmark runs at ``--tiny`` through the harness, so a renamed function breaks a test here, not a
benchmark someone runs months later; and the harness keeps its promises (one result file with the command,
commit and machine; no comparison called side by side across runs; BENCHMARKS.md generated, not typed)."""

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks import _harness, _render
from galaxymorph.prediction.backends import installed

# The arms each benchmark measures at --tiny, and the zoobot arms it skips there (no zoobot environment).
ARMS = {
    "active_learning": {f"{loop}, {strategy}" for loop in ("gz2", "sim")
                        for strategy in ("random", "bald", "cluster-bald", "batch-bald")},
    "calibration": {"raw", "calibrated"},
    "cpu_backends": {f"test_resnet 16 px, 1 thread, {b}" for b in ("eager", "onnx", "int8-onnx")}
    | {f"predict, {source}, eager, 2 samples" for source in ("JPEG catalogue", "shards")},
    "data_loading": {"files, 0 workers", "files, 2 workers", "shards, 0 workers", "shards, 2 workers"},
    "demo": {"current"},
    "ensemble": {"one model", "ensemble of 2"},
    "evaluate_memory": {"src, evaluate", "src, report"},
    "finetune": {f"{arm}, n=8, seed=0" for arm in ("scratch", "head", "finetune", "probe")},
    "gpu": {"galaxymorph, test_efficientnet", "galaxymorph, test_convnext"},
    "gz2_shift": {"standard", "size-crop", "size-crop+photometry", "wide-zoom"},
    "loss": {"ours, gz_decals_dr5", "ours, gz2"},
    "micro": {f"{case}, this tree" for case in ("loss", "mc_prediction", "loading", "simulate", "neighbours", "evaluate")},
    "neighbours": {"exact (brute force)", "HNSW efSearch 16"},
    "predict": {"encoder once + head x N", "N full forward passes"},
    "predict_shards": {"before: every worker reads all", "after: each its own shards"},
    "predict_zoobot": {"galaxymorph predict"},
    "segmentation": {"pretrained, n=8", "scratch, n=8", "segmentation, 32 px", "classification, 32 px"},
    "simulate": {"16 px", "32 px"},
    "train_gz2": {"galaxymorph, single view", "galaxymorph, 8-view TTA"},
    "train_per_epoch": {"today", "ema"},
    "train_simulated": {"single view", "8-view TTA"},
    "train_throughput": {f"{data}, {layout}" for data in ("random tensors", "pipeline")
                         for layout in ("channels_last", "default format")},
    "train_zoobot": {"galaxymorph, single view", "galaxymorph, 8-view TTA"},
    "zoobot_parity": {"local/published", "local/exported"},
}
SKIPPED_AT_TINY = {"finetune": {"zoobot"}, "loss": {"pyro loop", "zoobot 2.9"}, "predict_zoobot": {"zoobot 2.9"},
                   "train_zoobot": {"zoobot 2.9"}, "zoobot_parity": {"zoobot 2.9"}}
if not installed("onnx"):  # the onnx extra (in the test extra): without it its arms are skipped
    ARMS["cpu_backends"] -= {f"test_resnet 16 px, 1 thread, {b}" for b in ("onnx", "int8-onnx")}
    SKIPPED_AT_TINY["cpu_backends"] = {"every onnx arm", "every int8-onnx arm"}
if importlib.util.find_spec("zoobot") is None:  # the GPU benchmark imports zoobot from this environment when it can
    SKIPPED_AT_TINY["gpu"] = {"zoobot 2.9"}
else:
    ARMS["gpu"] |= {"zoobot 2.9, test_efficientnet", "zoobot 2.9, test_convnext"}


@pytest.fixture(scope="module")
def work_root(tmp_path_factory):
    """One per test process: the GZ2 stand-in and the shards that benchmarks share are made once."""
    return tmp_path_factory.mktemp("benchmarks")


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core machine more threads spin against each other
    yield
    torch.set_num_threads(before)


def tiny(name, work_root, *options):
    path, _ = _harness.run(name, ["--tiny", "--work-root", str(work_root), *options])
    assert path.parent == work_root / name  # a tiny result never lands among the committed ones
    return path, json.loads(path.read_text())


def test_the_arms_listed_here_are_every_benchmark():
    assert set(_harness.names()) == set(ARMS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ARMS))
def test_every_benchmark_runs_at_tiny_size_and_writes_one_result_file(name, work_root, one_thread):
    _, result = tiny(name, work_root)
    assert result["benchmark"] == name and result["tiny"] and result["measured"]
    assert result["command"] == f"python -m benchmarks {name} --tiny --work-root {work_root}"
    assert result["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", result["commit"])
    machine = result["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["memory_gib"] > 0 and machine["torch"]
    assert len(machine["load_average_start"]) == len(machine["load_average_end"]) == 3
    assert set(result["arms"]) | set(result["borrowed"]) == ARMS[name]
    assert set(result["skipped"]) == SKIPPED_AT_TINY.get(name, set())
    tables = [b for b in result["blocks"] if "table" in b]
    assert tables and all(len(row) == len(b["table"]["columns"]) for b in tables for row in b["table"]["rows"])
    assert not any(isinstance(v, float) and math.isinf(v) for arm in result["arms"].values() for v in arm.values())


@pytest.mark.slow
def test_the_segmentation_benchmark_scores_real_face_on_disks_against_their_votes_and_draws_them(work_root, one_thread):
    _, result = tiny("segmentation", work_root)
    labels = pd.read_csv(work_root / "shared" / "fake_gz2" / "labels.csv")
    face_on = int((labels["Class2.2"] >= 0.5).sum())  # the stand-in has every question's votes
    real = result["figures"]["real_gz2"]
    assert 0.05 <= real["crop"] <= 1.0
    assert real["bar"]["galaxies"] == real["spiral"]["galaxies"] == face_on > 0
    for name in ("bar", "spiral"):
        counted = real[name]["galaxies_votes_over_half"] + real[name]["galaxies_votes_under_fifth"]
        assert counted <= face_on
    (grid,) = result["figures"]["plots"]
    assert Path(grid).name == "segmentation_gz2.png" and Path(grid).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name, argv, option", [
    ("segmentation", ["--plots", "{file}"], "--plots"),
    ("active_learning", ["--plots", "{file}"], "--plots"),
    ("finetune", ["--results", "{file}"], "--results"),
    ("simulate", ["--work-root", "{file}"], "--work-root"),
    ("segmentation", ["--sizes", "50", "0"], "--sizes"),
    ("segmentation", ["--samples", "five"], "--samples"),
])
def test_a_file_where_a_folder_is_written_or_a_count_below_one_is_refused_before_anything_runs(
        name, argv, option, tmp_path, capsys):
    file = tmp_path / "a_file"
    file.write_text("kept")
    parser = _harness.parser_for(name, importlib.import_module(f"benchmarks.{name}"))
    with pytest.raises(SystemExit) as refused:
        parser.parse_args([arg.format(file=file) for arg in argv])
    assert refused.value.code == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert f"argument {option}:" in line and ("not a folder" in line or "at least 1" in line)
    assert file.read_text() == "kept"


def saved_result(folder, tiny=True):
    """A result of two arms side by side, saved as a run would save it."""
    result = _harness.Result("simulate", ["--sizes", "16", "32"], {"sizes": [16, 32]}, tiny=tiny)
    result.arm("16 px", galaxies_per_cpu_s=8.0)
    result.arm("32 px", galaxies_per_cpu_s=2.0)
    result.table(["size px", "galaxies per CPU-second", "CPU cost vs first"],
                 [["16", "8.0", "1.00x"], ["32", "2.0", f"{result.ratio('16 px', '32 px', 'galaxies_per_cpu_s'):.2f}x"]],
                 arms=["16 px", "32 px"])
    return result.save(folder), result.data


def test_a_result_file_holds_the_command_commit_machine_and_figures(tmp_path):
    path, data = saved_result(tmp_path)
    saved = json.loads(path.read_text())
    assert saved == json.loads(json.dumps(data)) and path.name.endswith(f"_{(data['commit'] or 'nogit')[:7]}.json")
    assert saved["command"] == "python -m benchmarks simulate --sizes 16 32"
    assert saved["dirty"] in (True, False) and saved["date"].endswith("+00:00")
    assert {"cpu", "flags", "cores", "memory_gib", "load_average_start", "load_average_end", "torch", "galaxymorph",
            "gpu"} <= set(saved["machine"])
    assert saved["arms"]["32 px"] == {"galaxies_per_cpu_s": 2.0} and saved["blocks"][0]["table"]["rows"][1][2] == "4.00x"


def test_a_result_saved_in_the_same_second_as_another_is_kept_beside_it(tmp_path):
    result = _harness.Result("simulate", [], {}, tiny=True)
    paths = [result.save(tmp_path) for _ in range(3)]  # one Result: the same date, so the same second
    assert len(set(paths)) == 3 and paths[1].name == paths[0].name.replace(".json", "_2.json")
    assert all(json.loads(p.read_text())["date"] == result.data["date"] for p in paths)


def test_a_comparison_with_an_arm_of_another_run_is_never_called_side_by_side(tmp_path):
    first, _ = saved_result(tmp_path)
    result = _harness.Result("simulate", ["--sizes", "16"], {}, tiny=True)
    result.arm("16 px", galaxies_per_cpu_s=4.0)
    assert result.borrow_from_result(first, "32 px") == {"galaxies_per_cpu_s": 2.0}
    with pytest.raises(ValueError, match="ran in another run"):
        result.ratio("16 px", "32 px", "galaxies_per_cpu_s")
    result.table(["size", "galaxies per CPU-second"], [["16", "4.0"], ["32", "2.0"]], arms=["16 px", "32 px"])
    result.table(["size", "galaxies per CPU-second"], [["16", "4.0"]], arms=["16 px"])
    across, alone = (b for b in result.data["blocks"] if "table" in b)
    assert not across["side_by_side"] and across["borrowed"] == ["32 px"]
    caption = _render.side_by_side(across, result.data)
    assert "Not side by side" in caption and first.name in caption
    assert _render.side_by_side(alone, result.data) == ""
    with pytest.raises(ValueError, match="neither measured nor borrowed"):
        result.table(["size"], [["64"]], arms=["64 px"])


def test_arms_borrowed_from_one_earlier_run_are_named_by_that_run_once():
    result = _harness.Result("finetune", [], {}, tiny=True)
    earlier = {"from": "results.jsonl", "commit": "09980f6" + "0" * 33, "date": "2026-12-03T23:00"}
    arms = [f"head, n={n}" for n in (50, 200, 1000, 5000)]
    for arm in arms:
        result.borrow(arm, {"auc": 0.8}, earlier)
    result.borrow("zoobot, n=50", {"auc": 0.7}, {"from": "zoobot.json"})
    result.arm("head, n=9", auc=0.9)
    result.table(["arm", "auc"], [[arm, "0.8"] for arm in arms] + [["zoobot, n=50", "0.7"], ["head, n=9", "0.9"]],
                 arms=[*arms, "zoobot, n=50", "head, n=9"])
    caption = _render.side_by_side(result.data["blocks"][-1], result.data)
    assert caption == (" **Not side by side**: 4 of its arms from `results.jsonl` (09980f6, 2026-12-03); "
                       "zoobot, n=50 from `zoobot.json`.")

def test_zoobot_beside_ours_from_an_earlier_result_file_says_it_is_not_side_by_side(work_root, one_thread):
    ours, _ = tiny("train_gz2", work_root)  # the run is reused when this process ran train_gz2 already
    _, result = tiny("train_zoobot", work_root, "--ours-from", str(ours))
    assert not result["arms"] and set(result["borrowed"]) == ARMS["train_zoobot"]
    (table,) = [b for b in result["blocks"] if "table" in b]
    assert not table["side_by_side"] and set(table["borrowed"]) == ARMS["train_zoobot"]


def test_every_table_of_benchmarks_md_names_its_result_file_commit_and_machine(tmp_path):
    path, result = saved_result(tmp_path / "results" / "simulate", tiny=False)
    text = _render.directive_markdown("benchmark", "simulate", tmp_path / "results")
    caption = next(line for line in text.splitlines() if line.startswith("*From"))
    assert path.name in caption and result["machine"]["cpu"] in caption
    assert result["commit"] is None or result["commit"][:7] in caption
    assert "side by side in this one run" in caption
    assert "`python -m benchmarks simulate`" in text and "| 32 | 2.0 | 4.00x |" in text


def test_a_tiny_result_is_refused_among_the_results(tmp_path):
    saved_result(tmp_path / "results" / "simulate", tiny=True)
    with pytest.raises(ValueError, match="--tiny result"):
        _render.directive_markdown("results", "simulate", tmp_path / "results")


def test_benchmarks_md_is_what_the_template_and_the_result_files_make():
    assert _render.OUTPUT.read_text() == _render.render(), "run `python -m benchmarks render`"


def test_the_template_types_no_table_and_every_section_comes_from_a_benchmark_or_result_files():
    template = _render.TEMPLATE.read_text()
    assert not re.search(r"^\|", template, re.M), "tables come from result files only"
    named = {m.group(2) for m in _render.DIRECTIVE.finditer(template)}
    assert set(_harness.names()) <= named  # every benchmark has its section
    assert {folder.name for folder in _harness.RESULTS.iterdir()} <= named  # and no result file is left out
    assert all((_harness.RESULTS / name).is_dir() or name in _harness.names() for name in named)


def test_links_into_benchmarks_md_point_at_its_headings():
    headings = {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
                for line in _render.OUTPUT.read_text().splitlines() if line.startswith("#")}
    for page in [_harness.ROOT / "README.md", *(_harness.ROOT / "docs").glob("*.md")]:
        for anchor in re.findall(r"(?:BENCHMARKS|benchmarks)\.md#([\w\-]+)", page.read_text()):
            assert anchor in headings, (page.name, anchor)


def test_the_readme_demo_numbers_come_from_the_demo_run_files(tmp_path):
    summary = {"settings": {"arch": "resnet10t", "model_px": 48, "epochs": 16, "threads": 2},
               "seconds": {"simulate": 10.0, "train": 200.0}, "load_average": [0.5, 1.5], "mae_truth": 0.125,
               "mae_truth_constant": 0.21, "mae_truth_noise_floor": 0.066, "mae_votes": 0.157,
               "mae_votes_constant": 0.234, "coverage_90": 0.914}
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "demo_summary.json").write_text(json.dumps(summary))
    (tmp_path / "evaluation" / "evaluation.json").write_text(json.dumps(
        {"questions": {"bar": {"truth": {"model": {"mae": 0.1}, "constant": {"mae": 0.2}, "noise_floor": {"mae": 0.05}}}}}))
    section = _render.demo_section(tmp_path, wall=283.0)
    assert "**4 min 43 s** in all (simulate 10 s, train 200 s)" in section
    assert "| bar, MAE against truth | 0.100 | 0.200 | 0.050 |" in section
    assert "**40% closer to the truth than a constant**" in section and "**91.4%**" in section


def test_the_fine_tuning_calibration_error_weights_each_bin_by_its_galaxies():
    from benchmarks.finetune import calibration_error

    assert calibration_error(np.full(4, 0.5), np.array([0, 1, 0, 1])) == 0.0  # one bin, P = the share ringed
    assert calibration_error(np.array([0.05, 0.15, 0.85, 0.95]), np.array([0, 0, 1, 1])) == pytest.approx(0.1)
    # three galaxies at 0.9 of which one ringed (gap 0.567), one at 0.1 not ringed (gap 0.1)
    assert calibration_error(np.array([0.9, 0.9, 0.9, 0.1]), np.array([1, 0, 0, 0])) == pytest.approx(
        0.75 * (0.9 - 1 / 3) + 0.25 * 0.1)


@pytest.mark.slow
def test_the_fine_tuning_benchmark_reuses_results_and_its_encoder_only_with_the_same_settings(tmp_path, one_thread):
    tiny("finetune", tmp_path, "--arms", "head")
    _, again = tiny("finetune", tmp_path, "--arms", "head")
    assert set(again["borrowed"]) == {"head, n=8, seed=0"} and not again["arms"]
    _, other_budget = tiny("finetune", tmp_path, "--arms", "head", "--epochs", "3")
    assert set(other_budget["arms"]) == {"head, n=8, seed=0"} and not other_budget["borrowed"]
    with pytest.raises(SystemExit, match="epochs=1, not 2"):
        tiny("finetune", tmp_path, "--arms", "head", "--pretrain-epochs", "2")
    with pytest.raises(SystemExit, match="--pretrain-image-size"):
        tiny("finetune", tmp_path, "--arms", "head", "--pretrain-image-size", "24")
    (tmp_path / "finetune" / "pretrain" / "best" / "config.json").unlink()  # as if interrupted: resumed, not reused
    with pytest.raises(SystemExit, match="other preprocessing"):
        tiny("finetune", tmp_path, "--arms", "head", "--pretrain-image-size", "24")
    with pytest.raises(SystemExit, match="no arm left to run: zoobot is skipped"):
        tiny("finetune", tmp_path, "--arms", "zoobot")


@pytest.mark.slow
def test_the_fine_tuning_benchmark_fine_tunes_at_its_image_size_an_encoder_pretrained_at_another(tmp_path, one_thread):
    tiny("finetune", tmp_path, "--arms", "scratch", "head", "--pretrain-image-size", "24")
    pretrained = json.loads((tmp_path / "finetune" / "pretrain" / "best" / "config.json").read_text())
    arms = [json.loads(p.read_text()) for p in (tmp_path / "finetune" / "runs").glob("*/*/best/config.json")]
    assert pretrained["image_size"] == 24
    assert len(arms) == 2 and all(arm["image_size"] == arm["preprocessing"]["image_size"] == 16 for arm in arms)
