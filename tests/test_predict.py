"""Predictions: layout, streaming with flat memory, resume after a crash, bad images, two processes."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from support import TINY, TinyModel, pixel_records

from galaxymorph.data.transforms import Preprocessing
from galaxymorph.models import GalaxyModel
from galaxymorph.models.head import galaxy_keys, keyed_dropout, subkeys
from galaxymorph.prediction import (
    errors_path,
    parts_dir,
    predict,
    predict_records,
    read_concentrations,
    read_predictions,
)


def _ids(path: Path) -> list[str]:
    return pq.read_table(path, columns=["id_str"]).column("id_str").to_pylist()


def test_layout_summaries_and_encoder_once(tmp_path):
    model = TinyModel()
    out = tmp_path / "preds.parquet"
    counts = predict_records(model, functools.partial(pixel_records, 10), out, samples=4, batch_size=5, progress=False)
    assert counts == {"rows": 10, "new": 10, "errors": 0, "parts": 1}
    assert model.feature_calls == 2  # one encoder pass per batch, not per sample
    frame, schema, meta = read_predictions(out)
    assert schema == TINY and meta["samples"] == 4
    conc = read_concentrations(frame, schema)
    assert conc.shape == (10, 4, 4) and (conc > 1).all()
    # samples differ (MC dropout), summaries are consistent with the concentrations
    assert conc.std(axis=2).max() > 0
    shape = conc[:, 0:2] / conc[:, 0:2].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(frame["shape_round_fraction"], shape[:, 0].mean(axis=1), rtol=1e-5)
    assert (frame["shape_round_q05"] <= frame["shape_round_fraction"]).all()
    assert (frame["shape_round_fraction"] <= frame["shape_round_q95"]).all()
    np.testing.assert_allclose(frame["shape_asked"], 1.0)
    np.testing.assert_allclose(frame["bar_asked"], shape[:, 1].mean(axis=1), rtol=1e-5)
    # plain pandas reads it without our package
    plain = pd.read_parquet(out)
    assert len(plain["conc:bar_yes"].iloc[0]) == 4


def test_one_sample_is_the_deterministic_head(tmp_path):
    out = tmp_path / "p.parquet"
    predict_records(TinyModel(), functools.partial(pixel_records, 3), out, samples=1, progress=False)
    again = tmp_path / "q.parquet"
    predict_records(TinyModel(), functools.partial(pixel_records, 3), again, samples=1, progress=False)
    np.testing.assert_array_equal(read_concentrations(read_predictions(out)[0], TINY),
                                  read_concentrations(read_predictions(again)[0], TINY))


def test_streams_100k_galaxies_in_batches_with_flat_memory(tmp_path):
    rss: list[float] = []
    out = tmp_path / "big.parquet"
    records = functools.partial(pixel_records, 100_000, rss=rss)
    counts = predict_records(TinyModel(), records, out, samples=2, batch_size=2_000, rows_per_part=20_000, progress=False)
    assert counts["rows"] == 100_000 and counts["parts"] == 5
    meta = pq.ParquetFile(out).metadata
    assert meta.num_rows == 100_000 and meta.num_row_groups == 50  # one row group per batch
    ids = _ids(out)
    assert len(set(ids)) == 100_000
    # memory after 10k galaxies and after 90k differ by little: nothing accumulates
    assert max(rss[1:]) - rss[1] < 40, rss


def test_resume_after_a_crash_writes_every_id_once(tmp_path):
    out = tmp_path / "preds.parquet"
    crashing = functools.partial(pixel_records, 100, fail_after=70)
    with pytest.raises(RuntimeError, match="simulated crash"):
        predict_records(TinyModel(), crashing, out, batch_size=8, rows_per_part=16, progress=False)
    committed = [p for p in parts_dir(out).glob("*.parquet")]
    assert committed and not out.exists()
    done = sum(pq.ParquetFile(p).metadata.num_rows for p in committed)
    assert done % 16 == 0 and 0 < done < 70  # complete parts only; the unfinished one is not trusted
    counts = predict_records(TinyModel(), functools.partial(pixel_records, 100), out, batch_size=8,
                             rows_per_part=16, progress=False)
    assert counts["new"] == 100 - done
    ids = _ids(out)
    assert sorted(ids) == [f"g{i:06d}" for i in range(100)]
    assert not parts_dir(out).exists()
    # a third run finds nothing to do and leaves the file as it is
    assert predict_records(TinyModel(), functools.partial(pixel_records, 100), out, progress=False)["new"] == 0
    assert sorted(_ids(out)) == sorted(ids)


def _write_images(folder: Path, n: int, size: int = 4) -> pd.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size * 2, size * 2, 3), dtype=np.uint8)).save(folder / f"gal{i}.png")
        rows.append({"id_str": f"gal{i}", "file_loc": f"images/gal{i}.png"})
    return pd.DataFrame(rows)


def test_bad_images_go_to_the_side_file_and_the_rest_goes_on(tmp_path):
    catalogue = _write_images(tmp_path / "images", 6)
    (tmp_path / "images" / "gal2.png").write_bytes(b"not a png at all")
    (tmp_path / "images" / "gal4.png").unlink()
    catalogue.to_csv(tmp_path / "catalogue.csv", index=False)
    out = tmp_path / "out" / "preds.parquet"
    counts = predict(TinyModel(), out, catalogue=tmp_path / "catalogue.csv", batch_size=4, progress=False)
    assert counts["rows"] == 4 and counts["errors"] == 2
    assert sorted(_ids(out)) == ["gal0", "gal1", "gal3", "gal5"]
    errors = pd.read_csv(errors_path(out)).set_index("id_str")
    assert sorted(errors.index) == ["gal2", "gal4"]
    assert "not found" in errors.loc["gal4", "reason"] and "gal4.png" in errors.loc["gal4", "reason"]
    assert "decode" in errors.loc["gal2", "reason"]
    # the file_loc of each prediction is the absolute image path, so a report can show it
    assert Path(read_predictions(out)[0]["file_loc"].iloc[0]).is_file()


def test_image_folder_input_and_duplicate_ids_are_refused(tmp_path):
    _write_images(tmp_path / "images", 3)
    out = tmp_path / "preds.parquet"
    assert predict(TinyModel(), out, images_dir=tmp_path / "images", workers=2, batch_size=2, progress=False)["rows"] == 3
    assert sorted(_ids(out)) == ["gal0", "gal1", "gal2"]  # two loader workers share the files, each once
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "gal1.jpg")
    with pytest.raises(ValueError, match="gal1"):
        predict(TinyModel(), tmp_path / "again.parquet", images_dir=tmp_path / "images", progress=False)
    with pytest.raises(ValueError, match="exactly one input"):
        predict(TinyModel(), out, progress=False)


@pytest.mark.slow
def test_two_processes_split_the_work_and_merge_without_duplicates(tmp_path):
    from galaxymorph.models import GalaxyModel, save_model

    prep = Preprocessing(stored_size=16, image_size=16, train_zoom=(1.0, 1.0))
    model = GalaxyModel(TINY, arch="resnet10t", image_size=16, preprocessing=prep.to_dict())
    save_model(model, tmp_path / "run" / "best")
    catalogue = _write_images(tmp_path / "images", 21, size=8)
    catalogue.to_csv(tmp_path / "catalogue.csv", index=False)
    out = tmp_path / "preds.parquet"
    counts = predict(tmp_path / "run", out, catalogue=tmp_path / "catalogue.csv", devices=2, batch_size=4,
                     samples=3, progress=False)
    assert counts["parts"] == 2  # each process wrote its own part
    ids = _ids(out)
    assert sorted(ids) == sorted(catalogue["id_str"]) and len(ids) == 21


@pytest.mark.slow
def test_sigkill_half_way_then_rerun_gives_every_id_once(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "preds.parquet"
    script = (
        "import functools, sys; sys.path.insert(0, sys.argv[1]);"
        "from support import TinyModel, slow_records; from galaxymorph.prediction import predict_records;"
        "predict_records(TinyModel(), functools.partial(slow_records, 3000, 0.002), sys.argv[2],"
        " batch_size=50, rows_per_part=200, progress=False)"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(Path(__file__).parent), str(out)])
    deadline = time.time() + 120
    while len(list(parts_dir(out).glob("*.parquet"))) < 2 and child.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL and not out.exists()
    done = sum(pq.ParquetFile(p).metadata.num_rows for p in parts_dir(out).glob("*.parquet"))
    assert 0 < done < 3000
    counts = predict_records(TinyModel(), functools.partial(pixel_records, 3000), out, batch_size=500, progress=False)
    assert counts["new"] == 3000 - done
    ids = _ids(out)
    assert len(ids) == len(set(ids)) == 3000


@pytest.fixture(scope="module")
def finetuned_runs(tmp_path_factory):
    """Fine-tuned classification and regression models (random heads on a tiny encoder), saved as runs."""
    from galaxymorph.models import GalaxyModel, load_encoder, save_model
    from galaxymorph.models.finetune_model import FinetunedModel

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("finetuned")
    prep = Preprocessing(stored_size=20, image_size=16, train_zoom=(1.0, 1.0))
    save_model(GalaxyModel(TINY, arch="test_resnet", preprocessing=prep.to_dict()), root / "base" / "best")
    encoder = load_encoder(root / "base")
    save_model(FinetunedModel.create(encoder, "classification", classes=["ring", "lens", "none"]), root / "cls" / "best")
    save_model(FinetunedModel.create(encoder, "regression", target="bar_length", bounded=True), root / "reg" / "best")
    _write_images(root / "images", 7, size=10)
    return root


def test_fine_tuned_classifier_predicts_class_probabilities_with_bounds(finetuned_runs, tmp_path):
    out = tmp_path / "classes.parquet"
    counts = predict(finetuned_runs / "cls", out, images_dir=finetuned_runs / "images", samples=4, batch_size=3,
                     progress=False)
    assert counts == {"rows": 7, "new": 7, "errors": 0, "parts": 1}
    frame = pd.read_parquet(out)
    assert sorted(frame["id_str"]) == [f"gal{i}" for i in range(7)]  # one row per galaxy
    classes = ["ring", "lens", "none"]
    probs = frame[[f"{c}_probability" for c in classes]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    for c in classes:
        assert (frame[f"{c}_q05"] <= frame[f"{c}_probability"] + 1e-6).all()
        assert (frame[f"{c}_probability"] <= frame[f"{c}_q95"] + 1e-6).all()
        assert all(len(s) == 4 for s in frame[f"sample:{c}"])
    assert (frame["ring_q95"] - frame["ring_q05"]).max() > 0  # MC dropout: the samples differ
    assert list(frame["predicted_class"]) == [classes[i] for i in probs.argmax(axis=1)]
    assert predict(finetuned_runs / "cls", out, images_dir=finetuned_runs / "images", samples=4,
                   progress=False)["new"] == 0
    with pytest.raises(ValueError, match="holds rows made with samples=4 .* not samples=5"):
        predict(finetuned_runs / "cls", out, images_dir=finetuned_runs / "images", samples=5, progress=False)
    with pytest.raises(ValueError, match="fine-tuned classification model .* pandas"):
        read_predictions(out)


@pytest.mark.parametrize("run, columns", [("cls", ["ring_probability", "lens_q05", "predicted_class"]),
                                          ("reg", ["bar_length", "bar_length_std", "bar_length_q05", "bar_length_q95"])])
def test_cli_predicts_fine_tuned_models(finetuned_runs, tmp_path, run, columns):
    from typer.testing import CliRunner

    from galaxymorph.cli import app

    out = tmp_path / "preds.parquet"
    args = ["predict", "--checkpoint", str(finetuned_runs / run / "best"), "--out", str(out),
            "--images", str(finetuned_runs / "images"), "--samples", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert len(frame) == frame["id_str"].nunique() == 7
    assert set(columns) <= set(frame.columns) and frame[columns].notna().all().all()
    if run == "reg":  # a bounded target: the value and its bounds stay in [0, 1]
        assert frame["bar_length"].between(0, 1).all()
        assert (frame["bar_length_q05"] <= frame["bar_length"] + 1e-6).all()


# ------------------------------------------------- nothing mixed: other models, other jobs, other nodes
def _saved_model(folder: Path, seed: int, size: int = 16) -> Path:
    from galaxymorph.models import GalaxyModel, save_model

    torch.manual_seed(seed)
    prep = Preprocessing(stored_size=size, image_size=size, train_zoom=(1.0, 1.0))
    return save_model(GalaxyModel(TINY, arch="test_resnet", image_size=size, preprocessing=prep.to_dict()), folder)


def test_resuming_with_another_model_or_settings_is_refused_and_the_output_names_its_model(tmp_path):
    catalogue = _write_images(tmp_path / "images", 5, size=8)
    catalogue.to_csv(tmp_path / "catalogue.csv", index=False)
    first, second = _saved_model(tmp_path / "a" / "best", 0), _saved_model(tmp_path / "b" / "best", 1)
    out = tmp_path / "preds.parquet"
    predict(tmp_path / "a", out, catalogue=tmp_path / "catalogue.csv", samples=2, progress=False)
    made_by = read_predictions(out)[2]["made_by"]
    assert made_by["checkpoint"] == str(tmp_path / "a") and made_by["samples"] == 2 and len(made_by["model_sha256"]) == 64
    assert made_by["dropout_masks"]  # which masks the samples drew
    predict(tmp_path / "a", tmp_path / "one.parquet", catalogue=tmp_path / "catalogue.csv", samples=1, progress=False)
    assert "dropout_masks" not in read_predictions(tmp_path / "one.parquet")[2]["made_by"]  # one sample draws none
    before = out.read_bytes()
    with pytest.raises(ValueError, match=r"holds rows made with weights sha256 \w{12} .* not weights sha256"):
        predict(second, out, catalogue=tmp_path / "catalogue.csv", samples=2, progress=False)
    with pytest.raises(ValueError, match="holds rows made with samples=2 .* not samples=3"):
        predict(first, out, catalogue=tmp_path / "catalogue.csv", samples=3, progress=False)
    assert out.read_bytes() == before
    assert predict(first.parent, out, catalogue=tmp_path / "catalogue.csv", samples=2, progress=False)["new"] == 0


def test_predictions_record_the_calibration_scales_their_concentrations_carry(tmp_path):
    from galaxymorph.models import Ensemble

    scales = {"shape": 0.5, "bar": 2.0}

    def model(calibration):
        torch.manual_seed(0)
        prep = Preprocessing(stored_size=16, image_size=16, train_zoom=(1.0, 1.0))
        made = GalaxyModel(TINY, arch="test_resnet", image_size=16, preprocessing=prep.to_dict())
        made.set_calibration(calibration)
        return made

    outputs = {"raw": model(None), "calibrated": model(scales), "same": Ensemble([model(scales), model(scales)]),
               "mixed": Ensemble([model(scales), model(None)])}
    metas, conc = {}, {}
    for name, predictor in outputs.items():
        predict_records(predictor, functools.partial(pixel_records, 3, size=16), tmp_path / f"{name}.parquet",
                        samples=2, progress=False)
        frame, _, metas[name] = read_predictions(tmp_path / f"{name}.parquet")
        conc[name] = read_concentrations(frame, TINY)
    assert metas["calibrated"]["calibration"] == scales and "calibration" not in metas["calibrated"]["made_by"]
    np.testing.assert_allclose(conc["calibrated"], conc["raw"] * np.array([0.5, 0.5, 2.0, 2.0])[:, None], rtol=1e-6)
    assert metas["same"]["calibration"] == scales  # every sample carries the same scales
    assert "calibration" not in metas["raw"] and "calibration" not in metas["mixed"]  # nothing to undo, or not one


def test_an_output_that_is_not_galaxymorph_predictions_is_left_alone(tmp_path):
    catalogue = _write_images(tmp_path / "images", 3)
    catalogue.to_parquet(tmp_path / "catalogue.parquet")
    before = (tmp_path / "catalogue.parquet").read_bytes()
    with pytest.raises(ValueError, match="not written by this version of galaxymorph"):
        predict(TinyModel(), tmp_path / "catalogue.parquet", catalogue=tmp_path / "catalogue.parquet", progress=False)
    assert (tmp_path / "catalogue.parquet").read_bytes() == before


def test_a_second_job_on_the_same_output_stops_without_touching_the_first_ones_parts(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "preds.parquet"
    unfinished = parts_dir(out) / "rank0000-aaaa-00000.parquet.tmp"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, pathlib; from galaxymorph.prediction.parts import resumable_output;\n"
         "with resumable_output(pathlib.Path(sys.argv[1]), {}):\n    print('locked', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        unfinished.write_bytes(b"the first job is writing this part")
        with pytest.raises(ValueError, match="another galaxymorph job is writing .*preds.parquet"):
            predict_records(TinyModel(), functools.partial(pixel_records, 4), out, progress=False)
        assert unfinished.read_bytes() == b"the first job is writing this part"
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_two_nodes_merge_only_after_both_wrote_every_galaxy(tmp_path):
    """Two "nodes" on this machine (gloo); node 1 is slow, so a merge that does not wait would lose its rows."""
    import os
    import socket
    import subprocess
    import sys
    import time

    _saved_model(tmp_path / "run" / "best", 0)
    catalogue = _write_images(tmp_path / "images", 24, size=8)
    catalogue.to_csv(tmp_path / "catalogue.csv", index=False)
    out = tmp_path / "preds.parquet"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    slow = ("import time, galaxymorph.prediction.parts as p; write = p.PartWriter.write_table;"
            "p.PartWriter.write_table = lambda self, t: (time.sleep(1.0), write(self, t));"
            "from galaxymorph.cli import app; app()")
    args = ["predict", "--checkpoint", str(tmp_path / "run"), "--out", str(out), "--catalog",
            str(tmp_path / "catalogue.csv"), "--num-nodes", "2", "--batch-size", "4", "--samples", "2"]
    nodes = []
    for node in (0, 1):
        env = {**os.environ, "NODE_RANK": str(node), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        code = slow if node == 1 else "from galaxymorph.cli import app; app()"
        nodes.append(subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    deadline = time.monotonic() + 300
    while any(n.poll() is None for n in nodes) and time.monotonic() < deadline:
        if any(n.poll() not in (None, 0) for n in nodes):  # a node that died leaves the other waiting for it
            break
        time.sleep(0.2)
    for n in nodes:
        if n.poll() is None:
            n.kill()
    outputs = [n.communicate()[0] for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], outputs
    ids = _ids(out)
    assert sorted(ids) == sorted(catalogue["id_str"]) and len(ids) == 24
    assert not parts_dir(out).exists()


def test_predicting_from_shards_made_with_other_pixels_than_the_model_is_refused(tmp_path):
    from galaxymorph.data.shards import write_shards

    catalogue = _write_images(tmp_path / "images", 4, size=8)
    for answer in TINY.answers:
        catalogue[answer] = 3.0
    catalogue.to_csv(tmp_path / "catalogue.csv", index=False)
    write_shards(tmp_path / "catalogue.csv", TINY, tmp_path / "shards", Preprocessing(stored_size=12, image_size=12),
                 workers=1, progress=False)
    model = _saved_model(tmp_path / "run" / "best", 0, size=16)
    with pytest.raises(ValueError, match="hold images with stored_size=12, but the model was trained on stored_size=16"):
        predict(model, tmp_path / "p.parquet", shards=tmp_path / "shards", progress=False)


def test_only_the_jobs_first_process_cleans_up_what_an_interrupted_run_left(tmp_path, monkeypatch):
    from galaxymorph.prediction.parts import resumable_output

    out = tmp_path / "preds.parquet"
    parts_dir(out).mkdir()
    unfinished = parts_dir(out) / "rank0001-bbbb-00000.parquet.tmp"
    unfinished.write_bytes(b"another process of this job may be writing this")
    monkeypatch.setenv("LOCAL_RANK", "1")  # a further local rank of a DDP job: reads, never deletes
    with resumable_output(out, {}) as done:
        assert done == set()
    assert unfinished.exists()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("NODE_RANK", "1")  # another node's launcher: the same
    with resumable_output(out, {}):
        pass
    assert unfinished.exists()
    monkeypatch.setenv("NODE_RANK", "0")  # the job's first process removes the leftovers of a killed run
    with resumable_output(out, {}):
        pass
    assert not unfinished.exists()


def test_embed_does_not_resume_into_a_predictions_file(tmp_path):
    from galaxymorph.representations import embed

    catalogue = _write_images(tmp_path / "images", 3, size=8)
    catalogue.to_csv(tmp_path / "catalogue.csv", index=False)
    model = _saved_model(tmp_path / "run" / "best", 0)
    predict(model, tmp_path / "p.parquet", catalogue=tmp_path / "catalogue.csv", samples=2, progress=False)
    with pytest.raises(ValueError, match="holds rows made with command='predict' .* not command='embed'"):
        embed(model, tmp_path / "p.parquet", catalogue=tmp_path / "catalogue.csv", progress=False)


def test_a_killed_and_resumed_run_gives_the_uninterrupted_run_s_values(tmp_path):
    """Each galaxy's dropout masks come from its id_str: not from the batch it lands in, nor the resume."""
    prep = Preprocessing(stored_size=16, image_size=16)
    torch.manual_seed(0)
    model = GalaxyModel("gz2", arch="test_resnet", preprocessing=prep.to_dict()).eval()
    records = functools.partial(pixel_records, 40, 16)
    whole, resumed = tmp_path / "whole.parquet", tmp_path / "resumed.parquet"
    predict_records(model, records, whole, samples=4, batch_size=8, progress=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        predict_records(model, functools.partial(pixel_records, 40, 16, fail_after=23), resumed, samples=4,
                        batch_size=5, rows_per_part=10, progress=False)
    assert 0 < predict_records(model, records, resumed, samples=4, batch_size=5, rows_per_part=10, progress=False)["new"] < 40
    (a, schema, _), (b, _, _) = read_predictions(whole), read_predictions(resumed)
    b = b.set_index("id_str").loc[a["id_str"]].reset_index()
    first, second = read_concentrations(a, schema), read_concentrations(b, schema)
    assert first.std(axis=2).mean() > 1e-3  # the samples differ, so equal files mean equal masks
    np.testing.assert_allclose(second, first, rtol=1e-5)


def test_keyed_dropout_masks_depend_on_the_galaxy_alone():
    features = torch.ones(3, 4000)
    keys = galaxy_keys(["a", "b", "c"])
    masked = keyed_dropout(features, 2, 0.25, keys).view(2, 3, -1)
    assert torch.allclose(masked[masked > 0], torch.tensor(4 / 3))  # kept features scaled as F.dropout does
    assert abs((masked == 0).float().mean().item() - 0.25) < 0.01
    alone = keyed_dropout(features[1:2], 2, 0.25, keys[1:2]).view(2, 1, -1)
    assert torch.equal(alone[:, 0], masked[:, 1])  # the same masks whatever else is in the batch
    assert not torch.equal(masked[0, 0], masked[0, 1]) and not torch.equal(masked[0, 0], masked[1, 0])
    assert not torch.equal(subkeys(keys, 0), keys) and not torch.equal(subkeys(keys, 0), subkeys(keys, 1))
