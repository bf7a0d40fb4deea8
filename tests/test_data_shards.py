"""Catalogue -> shards -> batches, resumable sharding, the DataModule, and the real GZ2 data."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import webdataset as wds
from PIL import Image
from support import SHARDED_PREP as PREP
from support import make_catalogue
from typer.testing import CliRunner

from galaxymorph.cli import app
from galaxymorph.data.catalogue import CatalogueError
from galaxymorph.data.datamodule import (
    GalaxyDataModule,
)
from galaxymorph.data.kaggle_gz2 import kaggle_to_catalogue
from galaxymorph.data.shards import assign_splits, read_manifest, write_shards
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.schema import get_schema

SCHEMA = get_schema("gz2")


def _votes_by_id(cat: pd.DataFrame) -> dict[str, np.ndarray]:
    return {i: v for i, v in zip(cat["id_str"], cat[list(SCHEMA.answers)].to_numpy(np.float32))}


def _collect(loader) -> dict[str, np.ndarray]:
    seen: dict[str, np.ndarray] = {}
    for batch in loader:
        assert batch["image"].dtype == torch.uint8 and batch["image"].shape[1:] == (3, 16, 16)
        for ident, votes in zip(batch["id_str"], batch["votes"].numpy()):
            assert ident not in seen, f"{ident} read twice"
            seen[ident] = votes
    return seen


@pytest.mark.parametrize("workers", [0, 2])
def test_round_trip_keeps_every_galaxy_once_with_its_votes(sharded, workers):
    cat, folder, manifest = sharded
    dm = GalaxyDataModule(folder / "shards", batch_size=4, num_workers=workers)
    assert dm.schema == SCHEMA and dm.preprocessing.stored_size == 16
    seen = {}
    for split, loader in [("train", dm.train_dataloader()), ("val", dm.val_dataloader()), ("test", dm.test_dataloader())]:
        got = _collect(loader)
        assert len(got) == manifest["splits"][split]["count"]
        assert not set(got) & set(seen), "a galaxy is in two splits"
        seen.update(got)
    expected = _votes_by_id(cat)
    assert set(seen) == set(expected)
    for ident, votes in seen.items():
        np.testing.assert_array_equal(votes, expected[ident])  # NaN (not provided) kept as NaN


def test_manifest_checksums_splits_and_plain_webdataset(sharded):
    cat, folder, _ = sharded
    manifest = read_manifest(folder / "shards")
    assert manifest["preprocessing"] == PREP.to_dict() and manifest["schema"] == SCHEMA.to_dict()
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            assert hashlib.sha256((folder / "shards" / shard["name"]).read_bytes()).hexdigest() == shard["sha256"]
    url = str(folder / "shards" / manifest["splits"]["train"]["shards"][0]["name"])
    sample = next(iter(wds.WebDataset(url, shardshuffle=False).decode()))
    assert sample["image.npy"].dtype == np.uint8 and sample["image.npy"].shape == (16, 16, 3)
    assert sample["votes.npy"].shape == (SCHEMA.n_answers,) and isinstance(sample["id.txt"], str)


def test_split_is_a_stable_function_of_seed_and_id():
    ids = [f"galaxy-{i}" for i in range(2000)]
    split = assign_splits(ids, seed=5, val_fraction=0.1, test_fraction=0.2)
    shuffled = assign_splits(ids[::-1], seed=5, val_fraction=0.1, test_fraction=0.2)[::-1]
    assert np.array_equal(split, shuffled)
    assert abs((split == "test").mean() - 0.2) < 0.03 and abs((split == "val").mean() - 0.1) < 0.03
    assert not np.array_equal(split, assign_splits(ids, seed=6, val_fraction=0.1, test_fraction=0.2))


def test_resume_after_a_kill_redoes_only_missing_shards(tmp_path):
    make_catalogue(tmp_path, n=30).to_csv(tmp_path / "cat.csv", index=False)
    out = tmp_path / "shards"
    args = dict(schema="gz2", out_dir=out, preprocessing=PREP, shard_size=4, workers=1, progress=False)
    first = write_shards(tmp_path / "cat.csv", **args)
    # simulate a kill: the last shard never got renamed into place, a temp file is left, no manifest
    last = first["splits"]["train"]["shards"][-1]["name"]
    (out / last).rename(out / (last + ".tmp"))
    (out / "manifest.json").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    second = write_shards(tmp_path / "cat.csv", **args)
    assert second == first
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar") if p.name in kept} == kept
    assert not list(out.glob("*.tmp"))
    ids = _collect(GalaxyDataModule(out, batch_size=7).train_dataloader())
    assert len(ids) == first["splits"]["train"]["count"]


def test_resume_refuses_other_data_unless_overwrite(tmp_path):
    make_catalogue(tmp_path, n=10).to_csv(tmp_path / "cat.csv", index=False)
    write_shards(tmp_path / "cat.csv", "gz2", tmp_path / "s", PREP, workers=1, progress=False)
    make_catalogue(tmp_path, n=12).to_csv(tmp_path / "cat.csv", index=False)
    with pytest.raises(ValueError, match="different catalogue or settings"):
        write_shards(tmp_path / "cat.csv", "gz2", tmp_path / "s", PREP, workers=1, progress=False)
    manifest = write_shards(tmp_path / "cat.csv", "gz2", tmp_path / "s", PREP, workers=1, progress=False, overwrite=True)
    assert sum(s["count"] for s in manifest["splits"].values()) == 12


def test_images_that_fail_to_decode_raise_or_are_listed(tmp_path):
    cat = make_catalogue(tmp_path, n=8)
    good = (tmp_path / "images" / "g0.png").read_bytes()
    (tmp_path / "images" / "g0.png").write_bytes(good[: len(good) // 2])  # header fine, data truncated
    cat.to_csv(tmp_path / "cat.csv", index=False)
    with pytest.raises(CatalogueError, match=r"id_str=J000\.5\+1: .*g0\.png"):
        write_shards(tmp_path / "cat.csv", "gz2", tmp_path / "s", PREP, workers=1, progress=False)
    manifest = write_shards(tmp_path / "cat.csv", "gz2", tmp_path / "s", PREP, workers=1, progress=False, on_error="skip")
    assert [s["id_str"] for s in manifest["skipped"]] == ["J000.5+1"]
    assert sum(s["count"] for s in manifest["splits"].values()) == 7
    assert "J000.5+1" in (tmp_path / "s" / "skipped.csv").read_text()


def _jpeg(path, seed: int, truncated: bool) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2] if truncated else data)


def test_raise_mode_lists_every_undecodable_image_at_once_and_keeps_the_shards_without_them(tmp_path):
    cat = make_catalogue(tmp_path, n=12)
    for row in (2, 9):  # truncated JPEGs: their headers parse, so only decoding finds them
        _jpeg(tmp_path / "images" / f"g{row}.jpg", row, truncated=True)
        cat.loc[row, "file_loc"] = f"images/g{row}.jpg"
    cat.to_csv(tmp_path / "cat.csv", index=False)
    args = dict(schema="gz2", out_dir=tmp_path / "s", preprocessing=PREP, shard_size=2, workers=1, progress=False)
    with pytest.raises(CatalogueError) as err:
        write_shards(tmp_path / "cat.csv", **args)
    report = tmp_path / "s" / "catalogue.problems.csv"
    assert f"(2 image(s) could not be decoded, all listed in {report})" in str(err.value) and "\n" not in str(err.value)
    assert sorted(pd.read_csv(report)["row"]) == [2, 9]
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s").glob("*.tar")}
    assert 0 < len(kept) < 6  # 6 shards of 2 in all: those holding a bad image are not written
    for row in (2, 9):
        _jpeg(tmp_path / "images" / f"g{row}.jpg", row, truncated=False)
    manifest = write_shards(tmp_path / "cat.csv", **args)
    assert sum(s["count"] for s in manifest["splits"].values()) == 12
    assert {name: (tmp_path / "s" / name).stat().st_mtime_ns for name in kept} == kept


def test_catalogue_datamodule_and_transform_by_stage(tmp_path):
    cat = make_catalogue(tmp_path, n=20)
    cat.to_csv(tmp_path / "cat.csv", index=False)
    dm = GalaxyDataModule(tmp_path / "cat.csv", schema="gz2", preprocessing=PREP, batch_size=6, val_fraction=0.2, test_fraction=0.2)
    seen = {}
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        seen.update(_collect(loader))
    assert set(seen) == set(cat["id_str"])
    batch = next(iter(dm.val_dataloader()))
    out = dm.on_after_batch_transfer(batch, 0)  # no trainer: deterministic transform
    assert out["image"].shape == (len(batch["id_str"]), 3, 8, 8) and out["image"].dtype == torch.float32
    assert torch.equal(out["image"], dm.on_after_batch_transfer(batch, 0)["image"])
    with pytest.raises(ValueError, match="needs a schema"):
        GalaxyDataModule(tmp_path / "cat.csv")


def test_prediction_inputs_report_failures_instead_of_stopping(tmp_path):
    from torch.utils.data import DataLoader

    from galaxymorph.data.inputs import (
        GalaxyStream,
        collate_galaxies,
        directory_records,
    )

    make_catalogue(tmp_path, n=5, not_provided=0)
    (tmp_path / "images" / "g4.png").write_bytes(b"broken")
    records = directory_records(tmp_path / "images")
    batches = list(DataLoader(GalaxyStream(lambda: records, PREP.to_dict()), batch_size=3, collate_fn=collate_galaxies))
    ids = [i for b in batches for i in b["id_str"]]
    errors = [e for b in batches for e in b["errors"]]
    assert ids == ["g0", "g1", "g2", "g3"] and [e[0] for e in errors] == ["g4"] and "g4.png" in errors[0][2]
    assert batches[0]["image"].shape == (3, 3, 16, 16) and batches[0]["image"].dtype == torch.uint8


@pytest.mark.real_data
def test_real_gz2_converts_and_a_subset_shards(gz2_dir, tmp_path):
    cat = kaggle_to_catalogue(gz2_dir / "labels.csv", gz2_dir / "images", volunteers=40)
    assert len(cat) == 9728 and cat["id_str"].is_unique
    votes = cat[list(SCHEMA.answers)].to_numpy()
    provided = ~np.isnan(votes)
    assert (provided.sum(axis=1) == 37).sum() == 5728 and (provided.sum(axis=1) == 17).sum() == 4000
    first = votes[:, SCHEMA.slices[0]].sum(axis=1)
    assert np.all(np.abs(first - 40) <= 1)  # everyone answers question 1 (rounding: within a vote)
    assert np.nanmin(votes) >= 0 and np.all(votes[provided] == np.round(votes[provided]))
    subset = cat.iloc[:200].assign(file_loc=lambda d: [str(gz2_dir / "images" / f"{i}.jpg") for i in d["id_str"]])
    subset.to_parquet(tmp_path / "gz2.parquet")
    result = CliRunner().invoke(app, [
        "shard", "--catalog", str(tmp_path / "gz2.parquet"), "--schema", "gz2", "--out", str(tmp_path / "shards"),
        "--size", "32", "--crop", "0.6", "--workers", "2", "--shard-size", "64",
    ])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(tmp_path / "shards")
    assert sum(s["count"] for s in manifest["splits"].values()) == 200 and not manifest["skipped"]
    batch = next(iter(GalaxyDataModule(tmp_path / "shards", batch_size=16, image_size=24).train_dataloader()))
    assert batch["image"].shape == (16, 3, 32, 32)


def test_cli_reports_catalogue_errors_in_one_line_per_problem(tmp_path):
    cat = make_catalogue(tmp_path, n=4)
    cat.loc[1, "bar_yes"] = -3
    cat.to_csv(tmp_path / "cat.csv", index=False)
    result = CliRunner().invoke(app, ["shard", "--catalog", str(tmp_path / "cat.csv"), "--schema", "gz2", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    assert "row 1 id_str=J001.5+1: " in result.output and str(tmp_path / "s" / "catalogue.problems.csv") in result.output
    assert "bar_yes = -3 is negative" in (tmp_path / "s" / "catalogue.problems.csv").read_text()


def test_training_order_is_reproducible_and_changes_every_epoch(sharded):
    _, folder, _ = sharded
    dm = GalaxyDataModule(folder / "shards", batch_size=4, shuffle_buffer=8)
    loader = dm.train_dataloader()
    epochs = []
    for epoch in range(2):  # the stream's position is the run's optimiser step
        dm.trainer = SimpleNamespace(global_step=epoch * dm.train_batches_per_epoch(), world_size=1, global_rank=0)
        epochs.append([i for b in loader for i in b["id_str"]])
    again = [i for b in GalaxyDataModule(folder / "shards", batch_size=4, shuffle_buffer=8).train_dataloader() for i in b["id_str"]]
    assert sorted(epochs[0]) == sorted(epochs[1]) and epochs[0] != epochs[1] and again == epochs[0]


def test_ddp_training_stream_gives_equal_batches_per_rank_reproducibly(sharded):
    _, folder, manifest = sharded
    per_rank = {}
    for rank in (0, 1):
        dm = GalaxyDataModule(folder / "shards", batch_size=3)
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank, global_step=0, training=True)
        batches = list(dm.train_dataloader())
        assert len(batches) == manifest["splits"]["train"]["count"] // (2 * 3)
        assert all(len(b["id_str"]) == 3 for b in batches)
        assert [b["id_str"] for b in dm.train_dataloader()] == [b["id_str"] for b in batches]  # seeded, not per process
        per_rank[rank] = [i for b in batches for i in b["id_str"]]
    assert dm.on_after_batch_transfer(batches[0], 0)["image"].shape == (3, 3, 8, 8)
    assert per_rank[0] != per_rank[1]


def test_ddp_evaluation_with_fewer_shards_than_ranks_says_how_to_fix_it(sharded):
    _, folder, manifest = sharded
    dm = GalaxyDataModule(folder / "shards", batch_size=3)
    val_shards = len([s for s in manifest["splits"]["val"]["shards"] if s["count"]])
    dm.trainer = SimpleNamespace(world_size=val_shards + 1, global_rank=0, training=False)
    with pytest.raises(ValueError, match=rf"val split has {val_shards} shard\(s\) for {val_shards + 1} processes.*--shard-size"):
        dm.val_dataloader()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request lines in the test output
        pass


@pytest.fixture
def served_shards(sharded):
    """The shard folder behind a local HTTP server, as object storage would serve it."""
    _, folder, _ = sharded
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_shards_stream_by_url_and_by_pipe_template_as_from_the_folder(sharded, served_shards):
    _, folder, manifest = sharded
    local = {split: _collect(getattr(GalaxyDataModule(folder / "shards", batch_size=4), f"{split}_dataloader")())
             for split in ("train", "val")}
    for source in (f"{served_shards}/shards/", f"pipe:cat {folder / 'shards'}/{{name}}"):
        dm = GalaxyDataModule(source, batch_size=4)
        assert dm.is_shards and dm.schema == SCHEMA and dm.split_size("val") == manifest["splits"]["val"]["count"]
        for split, expected in local.items():
            got = _collect(getattr(dm, f"{split}_dataloader")())
            assert set(got) == set(expected)
            for ident, votes in got.items():
                np.testing.assert_array_equal(votes, expected[ident])


def test_a_url_without_shards_names_the_manifest_it_could_not_read(served_shards):
    with pytest.raises(FileNotFoundError, match=rf"could not read {served_shards}/nothing/manifest.json"):
        read_manifest(f"{served_shards}/nothing")


def test_sigkilled_sharding_resumes_without_duplicates(tmp_path):
    make_catalogue(tmp_path, n=300, size=16).to_csv(tmp_path / "cat.csv", index=False)
    out = tmp_path / "shards"
    call = (f"write_shards({str(tmp_path / 'cat.csv')!r}, 'gz2', {str(out)!r}, Preprocessing(stored_size=16, image_size=8), "
            "shard_size=3, workers=1, progress=False)")
    code = f"from galaxymorph.data.shards import write_shards\nfrom galaxymorph.data.transforms import Preprocessing\n{call}"
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while not list(out.glob("*.tar")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(out.glob("*.tar")))
    manifest = write_shards(tmp_path / "cat.csv", "gz2", out, Preprocessing(stored_size=16, image_size=8), shard_size=3,
                            workers=1, progress=False)
    dm = GalaxyDataModule(out, batch_size=50)
    seen = {}
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        seen.update(_collect(loader))
    assert len(seen) == 300 and sum(s["count"] for s in manifest["splits"].values()) == 300
    assert 0 < done_before < len(list(out.glob("*.tar"))), "the kill should land mid-run (machine too fast?)"


def test_the_fits_stretch_travels_with_the_preprocessing_from_shards_to_prediction(tmp_path):
    from galaxymorph.data.images import FitsStretch
    from galaxymorph.data.inputs import GalaxyStream
    from galaxymorph.simulate import simulate_catalogue

    cat = simulate_catalogue(6, 16, tmp_path / "sim", seed=0, image_format="fits", workers=1)
    prep = Preprocessing(stored_size=16, image_size=8, stretch=FitsStretch("percentile"))
    manifest = write_shards(tmp_path / "sim" / "catalogue.parquet", "gz_decals_dr5", tmp_path / "shards", prep,
                            0.0, 0.0, workers=1, progress=False)
    recorded = Preprocessing.from_dict(manifest["preprocessing"])  # what a model trained on these shards keeps
    assert recorded.stretch == FitsStretch("percentile")
    stored = {s["id.txt"].decode(): np.load(io.BytesIO(s["image.npy"])) for s in wds.WebDataset(
        str(tmp_path / "shards" / "train-000000.tar"), shardshuffle=False, empty_check=False)}
    path = tmp_path / "sim" / cat["file_loc"].iloc[0]
    read = GalaxyStream(lambda: [], recorded.to_dict())._load(cat["id_str"].iloc[0], str(path))["image"]
    np.testing.assert_array_equal(read.permute(1, 2, 0).numpy(), stored[cat["id_str"].iloc[0]])
    assert not np.array_equal(Preprocessing(stored_size=16).read(path), stored[cat["id_str"].iloc[0]])  # arcsinh differs
