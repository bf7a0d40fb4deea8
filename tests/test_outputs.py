"""No command writes into, or deletes from, a folder or file holding another command's work."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from support import ToyDataModule, make_catalogue, toy_config

from galaxymorph.data.shards import write_shards
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.outputs import OutputInUse, claim_file, claim_folder, claim_table
from galaxymorph.report import build_report
from galaxymorph.training import ConfigError, train


def _files(folder) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_claim_folder_tells_free_own_and_foreign_folders_apart(tmp_path):
    assert claim_folder(tmp_path / "new", "train_config.yaml") is False
    (tmp_path / "empty").mkdir()
    assert claim_folder(tmp_path / "empty", "train_config.yaml") is False
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train_config.yaml").write_text("epochs: 1\n")
    assert claim_folder(tmp_path / "run", "train_config.yaml") is True
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "images").mkdir()
    assert claim_folder(tmp_path / "partial", "simulation.json", own_files=("images",)) is True
    with pytest.raises(OutputInUse, match=r"holds a training run \(galaxymorph train\)"):
        claim_folder(tmp_path / "run", "finetune_config.yaml")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("chapter 1")
    with pytest.raises(OutputInUse, match=r"already holds files this command did not write \(thesis.tex\)"):
        claim_folder(tmp_path / "mine", "plan.json")
    with pytest.raises(OutputInUse, match="is a file, not a folder"):
        claim_folder(tmp_path / "mine" / "thesis.tex", "plan.json")
    with pytest.raises(OutputInUse, match="exists and was not written by this command"):
        claim_file(tmp_path / "mine" / "thesis.tex", is_own=False)
    with pytest.raises(OutputInUse, match="is a folder; give a file name"):
        claim_file(tmp_path / "mine", is_own=True)


def test_training_into_another_commands_folder_or_with_other_settings_is_refused(tmp_path):
    (tmp_path / "ft").mkdir()
    (tmp_path / "ft" / "finetune_config.yaml").write_text("task: classification\n")
    with pytest.raises(OutputInUse, match=r"holds a fine-tuning run \(galaxymorph finetune\)"):
        train(toy_config(tmp_path / "ft", epochs=1), datamodule=ToyDataModule(n=8))
    (tmp_path / "run" / "logs").mkdir(parents=True)  # killed in its first epoch, before any checkpoint
    earlier = {**toy_config(tmp_path / "run", epochs=1).to_dict(), "lr": 0.5}
    (tmp_path / "run" / "train_config.yaml").write_text(yaml.safe_dump(earlier))
    with pytest.raises(ConfigError, match="started with lr=0.5, not 0.003"):
        train(toy_config(tmp_path / "run", epochs=1), datamodule=ToyDataModule(n=8))


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_settings_of_a_run_that_never_started_do_not_bind_the_next_one(tmp_path, command):
    """A refused or killed-at-once run leaves only its settings file: the corrected command then runs."""
    from galaxymorph.training import FinetuneConfig
    from galaxymorph.training.config import claim_run

    run = tmp_path / "run"
    if command == "train":
        config, marker = toy_config(run, epochs=1), "train_config.yaml"
    else:
        config, marker = FinetuneConfig("ckpt", "cat.csv", str(run), label_col="y"), "finetune_config.yaml"
    run.mkdir()
    (run / marker).write_text(yaml.safe_dump({**config.to_dict(), "lr": 0.5}))
    claim_run(config, marker)  # nothing trained: the earlier settings bind nobody
    (run / "checkpoints").mkdir()
    with pytest.raises(ConfigError, match="started with lr=0.5"):
        claim_run(config, marker)


def test_rebuilding_shards_deletes_only_the_shards(tmp_path):
    make_catalogue(tmp_path, n=10).to_csv(tmp_path / "cat.csv", index=False)
    prep = Preprocessing(stored_size=16, image_size=8)
    write_shards(tmp_path / "cat.csv", "gz2", tmp_path / "s", prep, workers=1, progress=False, shard_size=4)
    (tmp_path / "s" / "notes-2026.json").write_text('{"observing": "run 3"}')
    write_shards(tmp_path / "cat.csv", "gz2", tmp_path / "s", prep, seed=5, workers=1, progress=False, overwrite=True)
    assert (tmp_path / "s" / "notes-2026.json").read_text() == '{"observing": "run 3"}'


def test_sharding_into_a_training_run_is_refused(tmp_path):
    make_catalogue(tmp_path, n=4).to_csv(tmp_path / "cat.csv", index=False)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train_config.yaml").write_text("epochs: 1\n")
    before = _files(tmp_path / "run")
    with pytest.raises(OutputInUse, match="holds a training run"):
        write_shards(tmp_path / "cat.csv", "gz2", tmp_path / "run", workers=1, progress=False)
    assert _files(tmp_path / "run") == before


def test_a_report_replaces_only_an_earlier_report(tmp_path):
    import functools

    from support import TinyModel, pixel_records

    from galaxymorph.prediction import predict_records

    predict_records(TinyModel(), functools.partial(pixel_records, 3), tmp_path / "p.parquet", progress=False)
    notes = tmp_path / "notes.html"
    notes.write_text("<html><title>my notes</title></html>")
    with pytest.raises(OutputInUse, match="notes.html exists and was not written by this command"):
        build_report(tmp_path / "p.parquet", notes, gallery=0)
    assert notes.read_text() == "<html><title>my notes</title></html>"
    build_report(tmp_path / "p.parquet", tmp_path / "r.html", gallery=0)
    build_report(tmp_path / "p.parquet", tmp_path / "r.html", gallery=0)  # its own report: rewritten


def test_convert_kaggle_does_not_overwrite_a_catalogue_it_did_not_write(tmp_path):
    from galaxymorph.data.kaggle_gz2 import kaggle_to_catalogue

    pd.DataFrame({"id_str": ["a"], "file_loc": ["a.png"]}).to_csv(tmp_path / "mine.csv", index=False)
    before = (tmp_path / "mine.csv").read_bytes()
    with pytest.raises(OutputInUse, match="mine.csv exists and was not written"):
        kaggle_to_catalogue(tmp_path / "labels.csv", tmp_path, out=tmp_path / "mine.csv")
    assert (tmp_path / "mine.csv").read_bytes() == before


def test_simulate_never_writes_into_a_folder_of_someone_elses_images(tmp_path):
    from galaxymorph.simulate import simulate_catalogue

    (tmp_path / "survey" / "images").mkdir(parents=True)
    (tmp_path / "survey" / "images" / "J1234.png").write_bytes(b"a real cutout")
    with pytest.raises(OutputInUse, match="already holds files this command did not write"):
        simulate_catalogue(4, 16, tmp_path / "survey", workers=1, progress=False)
    assert [p.name for p in (tmp_path / "survey" / "images").iterdir()] == ["J1234.png"]


def test_tables_and_pictures_are_rewritten_only_when_galaxymorph_wrote_them(tmp_path):
    from galaxymorph.representations import image_grid

    notes = tmp_path / "queue.csv"
    notes.write_text("id_str,comment\nJ1,look again\n")
    with pytest.raises(OutputInUse, match="queue.csv exists and was not written by this command"):
        claim_table(notes, ["rank", "id_str", "score"])
    (tmp_path / "ours.csv").write_text("rank,id_str,score\n0,a,1.0\n")
    claim_table(tmp_path / "ours.csv", ["rank", "id_str", "score"])
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "photo.png")
    with pytest.raises(OutputInUse, match="photo.png exists and was not written"):
        image_grid([], [], tmp_path / "photo.png")
    image_grid([], [], tmp_path / "grid.png")
    image_grid([], [], tmp_path / "grid.png")  # its own picture: drawn again


def test_a_rebuild_and_a_merge_delete_only_files_of_their_own_naming(tmp_path):
    import functools

    from support import TinyModel, pixel_records

    from galaxymorph.prediction import parts_dir, predict_records

    make_catalogue(tmp_path, n=10).to_csv(tmp_path / "cat.csv", index=False)
    prep = Preprocessing(stored_size=16, image_size=8)
    write_shards(tmp_path / "cat.csv", "gz2", tmp_path / "s", prep, workers=1, progress=False, shard_size=4)
    for name in ("train-2026-notes.json", "val-000001-draft.tar", "mine.tmp"):
        (tmp_path / "s" / name).write_text("a person's file")
    write_shards(tmp_path / "cat.csv", "gz2", tmp_path / "s", prep, seed=5, workers=1, progress=False, overwrite=True)
    for name in ("train-2026-notes.json", "val-000001-draft.tar", "mine.tmp"):
        assert (tmp_path / "s" / name).read_text() == "a person's file"

    out = tmp_path / "preds.parquet"
    parts_dir(out).mkdir()
    (parts_dir(out) / "README.txt").write_text("what these parts are")
    predict_records(TinyModel(), functools.partial(pixel_records, 4), out, progress=False)
    assert (parts_dir(out) / "README.txt").read_text() == "what these parts are"
    assert sorted(p.name for p in parts_dir(out).iterdir()) == ["README.txt"]  # every part merged and removed
    (tmp_path / "p.errors.csv").write_text("id_str,comment\nJ1,seen\n")
    with pytest.raises(OutputInUse, match="p.errors.csv exists and was not written"):
        predict_records(TinyModel(), functools.partial(pixel_records, 4), tmp_path / "p.parquet", progress=False)
    assert (tmp_path / "p.errors.csv").read_text() == "id_str,comment\nJ1,seen\n"
