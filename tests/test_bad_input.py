"""Bad input to every command: exit code 2, one message naming the culprit, no traceback, nothing lost.

One table of cases run through ``galaxymorph.cli.app`` against small real inputs
built once (a simulated catalogue, its shards, a random tiny model, its
predictions and embeddings) and hand-broken copies of them.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from astropy.io import fits
from PIL import Image
from typer.testing import CliRunner

from galaxymorph.cli import app
from galaxymorph.data.shards import write_shards
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.evaluation import evaluate
from galaxymorph.models import GalaxyModel, save_model
from galaxymorph.prediction import predict
from galaxymorph.representations import embed
from galaxymorph.simulate import simulate_catalogue

SCHEMA = "gz_decals_dr5"
VOTE = "smooth-or-featured_smooth"
PREP = Preprocessing(stored_size=20, image_size=16, channels=3)


def _broken_images(sim: Path, good: pd.DataFrame) -> None:
    """A PNG cut in half, a folder named like an image, FITS files of 1 and 5 bands and one of NaN only."""
    (sim / "corrupt.png").write_text("not a png")
    whole = (sim / good["file_loc"][0]).read_bytes()
    (sim / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (sim / "dir.png").mkdir()
    sky = np.random.default_rng(0).normal(20, 3, (32, 32, 3)).clip(0, 255).astype(np.uint8)
    Image.fromarray(sky).save(sim / "blank.png")  # sky without a galaxy: nothing for a size crop to measure
    plane = np.random.default_rng(0).normal(size=(32, 32)).astype(np.float32)
    (sim / "fits").mkdir()
    for name, data in {"one_band": plane, "five_bands": np.stack([plane] * 5), "three_bands": np.stack([plane] * 3),
                       "all_nan": np.full((3, 32, 32), np.nan, np.float32)}.items():
        fits.PrimaryHDU(data).writeto(sim / "fits" / f"{name}.fits")


def _at(column: str, rows: dict[int, object]):
    """A variant: ``column`` with the given rows replaced."""
    return lambda c: c.assign(**{column: [rows.get(i, v) for i, v in enumerate(c[column])]})


def _catalogue_variants(sim: Path) -> None:
    """Broken copies of the simulated catalogue, beside it so that relative ``file_loc`` still resolve."""
    good = pd.read_parquet(sim / "catalogue.parquet")
    _broken_images(sim, good)
    smooth = [c for c in good.columns if c.startswith("smooth-or-featured_")]
    variants = {
        "inf": lambda c: c.assign(**{VOTE: c[VOTE].where(c.index != 2, float("inf"))}),
        "negative": lambda c: c.assign(**{VOTE: c[VOTE].where(c.index != 1, -4)}),
        "partly_nan": lambda c: c.assign(**{VOTE: c[VOTE].where(c.index != 3)}),
        "duplicate": lambda c: c.assign(id_str=c["id_str"].where(c.index != 4, c["id_str"][0])),
        "no_vote_column": lambda c: c.drop(columns=[VOTE]),
        "no_id": lambda c: c.drop(columns=["id_str"]),
        "no_file_loc": lambda c: c.drop(columns=["file_loc"]),
        "corrupt_image": lambda c: c.assign(file_loc=c["file_loc"].where(c.index != 5, "corrupt.png")),
        "text_votes": lambda c: c.astype({VOTE: object}).assign(**{VOTE: c[VOTE].astype(object).where(c.index != 6, "many")}),
        "blank_loc": _at("file_loc", {3: None}),
        "header_only": lambda c: c.head(0),
        "one_row": lambda c: c.head(1),
        "no_smooth_columns": lambda c: c.drop(columns=smooth),
        "truncated": _at("file_loc", {5: "truncated.png"}),
        "folder_image": _at("file_loc", {7: "dir.png"}),
        "three_bad_rows": lambda c: _at("file_loc", {5: "truncated.png", 7: "dir.png"})(c).assign(
            **{VOTE: c[VOTE].where(c.index != 2, float("inf"))}),
        "fits_bands": _at("file_loc", {0: "fits/one_band.fits", 1: "fits/five_bands.fits", 2: "fits/all_nan.fits"}),
        "blank_images": lambda c: c.assign(file_loc="blank.png"),
    }
    for name, broken in variants.items():
        broken(good.copy()).to_csv(sim / f"{name}.csv", index=False)
    good.to_csv(sim / "semicolon.csv", index=False, sep=";")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(sim / "small_mask.png")
    Image.fromarray(np.full((32, 32), 40, np.uint8)).save(sim / "crowded_mask.png")
    masks = {
        "mask_shape": lambda c: c.assign(mask_spiral=c["mask_spiral"].where(c.index != 1, "small_mask.png")),
        "mask_counts": lambda c: c.assign(mask_bar=c["mask_bar"].where(c.index != 2, "crowded_mask.png")),
        "mask_missing": lambda c: c.assign(mask_bar=c["mask_bar"].where(c.index != 3, "missing_mask.png")),
        "mask_nobody": lambda c: c.assign(mask_volunteers=c["mask_volunteers"].where(c.index != 4, 0)),
    }
    for name, broken in masks.items():
        broken(good.copy()).to_csv(sim / f"{name}.csv", index=False)
    labels = good[["id_str", "file_loc"]].assign(ring=["yes", "no"] * (len(good) // 2), size=1.0)
    labels.to_csv(sim / "labels.csv", index=False)
    labels.assign(size=labels["size"].where(labels.index != 3, float("inf"))).to_csv(sim / "labels_inf.csv", index=False)
    _at("file_loc", {3: None})(labels).to_csv(sim / "labels_blank.csv", index=False)


def _model_variants(w: Path) -> None:
    """Model folders whose config.json lost its preprocessing, is not JSON, is of a later version or another type."""
    for name, edit in {"noprep": lambda c: json.dumps({k: v for k, v in c.items() if k != "preprocessing"}),
                       "badjson": lambda c: "{",
                       "newer": lambda c: json.dumps({**c, "version": 3}),
                       "gan": lambda c: json.dumps({**c, "model_type": "gan"})}.items():
        shutil.copytree(w / "run" / "best", w / name / "best")
        config = w / name / "best" / "config.json"
        config.write_text(edit(json.loads(config.read_text())))


def _timm_folders(w: Path) -> None:
    """A timm folder written by timm, and copies whose pytorch_model.bin is a pickle of an object or a checkpoint."""
    import argparse

    import timm
    from timm.models import save_for_hf

    save_for_hf(timm.create_model("test_resnet", num_classes=0), w / "timm")
    for name, content in {"pickle_bin": argparse.Namespace(weights=1), "ckpt_bin": {"state_dict": {}, "epoch": 3}}.items():
        (w / name).mkdir()
        shutil.copyfile(w / "timm" / "config.json", w / name / "config.json")
        torch.save(content, w / name / "pytorch_model.bin")


def _text_files(w: Path) -> None:
    files = {
        "empty.csv": "",
        "garbage.parquet": "PAR1 this is not parquet",
        "list.yaml": "- lr\n- epochs\n",
        "empty.yaml": "",
        "broken.yaml": "lr: [0.1\n",
        "lr_text.yaml": f"shards: {w / 'shards'}\nout: {w / 'unused'}\nlr: fast\n",
        "max_time.yaml": f"shards: {w / 'shards'}\nout: {w / 'unused'}\nmax_time: 1:30:00\n",
        "unknown.yaml": f"shards: {w / 'shards'}\nout: {w / 'unused'}\nepoch: 3\n",
        "ft_lr.yaml": f"checkpoint: {w / 'run'}\ncatalogue: {w / 'sim' / 'labels.csv'}\nlabel_col: ring\nlr: fast\n",
        "ft_epochs.yaml": "epochs: many\n",
        "yes.toml": 'name = "rings"\n[[questions]]\nname = "ring"\nanswers = "yes"\n',
        "broken.toml": "name = \n",
        "blocker": "a regular file where a folder is expected",
        "kaggle_labels.csv": "id,Class1.1\n1,0.5\n",
        "workers.yaml": f"shards: {w / 'shards'}\nout: {w / 'unused'}\nworkers: -3\n",
        "photo.png": "a picture of the user's own, not drawn by galaxymorph",
        "ragged.csv": "id_str,file_loc\na,a.png\nb,b.png,3,4\n",
        "queued_unknown.csv": "id_str\nnot_in_the_pool\n",
    }
    for name, text in files.items():
        (w / name).write_text(text)
    (w / "binary.yaml").write_bytes(bytes(range(256)))
    for folder in ("folder.csv", "folder.toml", "kaggle_images"):
        (w / folder).mkdir()
    shutil.copytree(w / "shards", w / "old_shards")
    manifest = json.loads((w / "old_shards" / "manifest.json").read_text())
    (w / "old_shards" / "manifest.json").write_text(json.dumps({**manifest, "format": "galaxymorph-shards/0"}))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Good inputs (catalogue, shards, model, predictions, embeddings) and broken ones, built once."""
    w = tmp_path_factory.mktemp("world")
    sim = w / "sim"
    simulate_catalogue(12, 32, sim, workers=1, progress=False, masks=True)
    write_shards(sim / "catalogue.parquet", SCHEMA, w / "shards", PREP, 0.25, 0.25, shard_size=4, workers=1,
                 progress=False)
    torch.manual_seed(0)
    save_model(GalaxyModel(SCHEMA, arch="test_resnet", preprocessing=PREP.to_dict()), w / "run" / "best")
    predict(w / "run", w / "preds.parquet", catalogue=sim / "catalogue.parquet", samples=2, progress=False)
    predict(w / "run", w / "preds1.parquet", catalogue=sim / "catalogue.parquet", samples=1, progress=False)
    embed(w / "run", w / "emb.parquet", catalogue=sim / "catalogue.parquet", progress=False)
    evaluate(w / "preds.parquet", sim / "catalogue.parquet", out=w / "eval")
    pq.write_table(pq.read_table(w / "preds.parquet").slice(0, 5), w / "fewer_preds.parquet")
    pq.write_table(pq.read_table(w / "emb.parquet").slice(0, 5), w / "fewer_emb.parquet")
    _catalogue_variants(sim)
    write_shards(sim / "one_row.csv", SCHEMA, w / "one_shards", PREP, 0.0, 0.0, workers=1, progress=False)  # train only
    _model_variants(w)
    _timm_folders(w)
    _text_files(w)
    return w


SHARD = "shard --schema gz_decals_dr5 --out {t}/s --workers 1 --catalog"
TRAIN = "train --shards {w}/shards --out {t}/run --arch test_resnet --num-workers 0"
PREDICT = "predict --checkpoint {w}/run --catalog {w}/sim/catalogue.parquet --out {t}/p.parquet"
EVALUATE = "evaluate --predictions {w}/preds.parquet --catalog"
FINETUNE = "finetune --checkpoint {w}/run --catalog {w}/sim/labels.csv --out {t}/ft --label-col ring"
EMBED = "embed --checkpoint {w}/run --catalog {w}/sim/catalogue.parquet --out"
ACQUIRE = "acquire --predictions {w}/preds.parquet --top 3 --out {t}/q.csv"
SEGMENT = ("finetune --checkpoint {w}/run --out {t}/seg --task segmentation --mask-cols mask_spiral,mask_bar "
           "--volunteers-col mask_volunteers --catalog")

# (command line, a piece of the message that names the culprit); {w}: the built inputs, {t}: an empty folder.
CASES = [
    ("schemas show {w}/missing.toml", "missing.toml: No such file"),
    ("schemas show {w}/list.yaml", "list.yaml: expected a mapping"),
    ("schemas show {w}/empty.yaml", "needs 'questions'"),
    ("schemas show {w}/yes.toml", "'answers' in question 1 must be a list of text"),
    ("schemas show {w}/broken.toml", "broken.toml: not valid TOML"),
    ("schemas show {w}/folder.toml", "folder.toml: Is a directory"),
    ("schemas show gz3", "unknown schema 'gz3'"),
    (SHARD + " {w}/missing.csv", "catalogue file not found: {w}/missing.csv"),
    (SHARD + " {w}/sim/inf.csv", f"row 2 id_str=sim-000002: {VOTE} = inf is infinite"),
    (SHARD + " {w}/sim/negative.csv", f"row 1 id_str=sim-000001: {VOTE} = -4 is negative"),
    (SHARD + " {w}/sim/partly_nan.csv", "row 3 id_str=sim-000003: question smooth-or-featured partly NaN"),
    (SHARD + " {w}/sim/text_votes.csv", f"row 6 id_str=sim-000006: {VOTE} is not a number ('many')"),
    (SHARD + " {w}/sim/duplicate.csv", "row 4 id_str=sim-000000: duplicate id_str (first on row 0)"),
    (SHARD + " {w}/sim/no_vote_column.csv", f"{VOTE}: closest existing"),
    (SHARD + " {w}/sim/corrupt_image.csv", "corrupt.png"),
    (SHARD + " {w}/empty.csv", "empty.csv: cannot read it as a CSV table"),
    (SHARD + " {w}/garbage.parquet", "garbage.parquet: cannot read it as a Parquet table"),
    (SHARD + " {w}/folder.csv", "folder.csv is a folder"),
    ("shard --schema gz3 --out {t}/s --catalog {w}/sim/catalogue.parquet", "unknown schema 'gz3'"),
    ("shard --schema gz_decals_dr5 --out {w}/blocker/s --catalog {w}/sim/catalogue.parquet", "{w}/blocker"),
    ("shard --schema gz_decals_dr5 --out {w}/shards --seed 5 --catalog {w}/sim/catalogue.parquet", "--overwrite"),
    (SHARD + " {w}/sim/catalogue.parquet --val-fraction 0.6 --test-fraction 0.6", "sum < 1"),
    (SHARD + " {w}/sim/catalogue.parquet --shard-size 0", "--shard-size"),
    (SHARD + " {w}/sim/blank_images.csv --size-crop", "no galaxy could be measured to fit the size crop"),
    ("convert-kaggle --labels {w}/missing.csv --images {w}/kaggle_images --out {t}/k.csv", "missing.csv"),
    ("convert-kaggle --labels {w}/kaggle_labels.csv --images {w}/kaggle_images --out {t}/k.csv", "missing columns ['GalaxyID'"),
    ("convert-kaggle --labels {w}/kaggle_labels.csv --images {w}/blocker --out {t}/k.csv", "--images {w}/blocker: no such folder"),
    ("train --config {w}/lr_text.yaml", "lr='fast' (str) must be a finite number"),
    ("train --config {w}/max_time.yaml", "max_time=5400 (int) must be text or null; write it in quotes"),
    ("train --config {w}/list.yaml", "list.yaml: expected a mapping"),
    ("train --config {w}/unknown.yaml", "unknown setting(s) ['epoch']"),
    ("train --config {w}/broken.yaml", "broken.yaml: not valid YAML"),
    ("train --config {w}/missing.yaml", "missing.yaml: No such file"),
    ("train --config {w}/binary.yaml", "binary.yaml: not a text file"),
    ("train --config {w}/folder.toml", "folder.toml: Is a directory"),
    ("train --out {t}/run", "missing required setting(s) ['shards']"),
    ("train --shards {w}/missing --out {t}/run", "--shards {w}/missing: no manifest.json there"),
    ("train --shards {w}/old_shards --out {t}/run", "unknown shard format 'galaxymorph-shards/0'"),
    (TRAIN + " --devices 4", "the val split has 1 shard(s) for 4 processes"),
    (TRAIN + " --epochs 0", "epochs=0 must be >= 1"),
    (TRAIN + " --channels 2", "channels=2 must be 1 or 3"),
    (TRAIN + " --arch resnet_nope", "unknown architecture 'resnet_nope'"),
    (TRAIN + " --max-time 35min", "max_time='35min' must be HH:MM:SS"),
    (TRAIN + " --schema gz2", "schema mismatch: --schema gz2"),
    ("predict --checkpoint {w}/missing --images {w}/sim/images --out {t}/p.parquet", "no config.json + model.safetensors"),
    ("predict --checkpoint {w}/noprep --images {w}/sim/images --out {t}/p.parquet", "noprep/best/config.json has no 'preprocessing'"),
    ("predict --checkpoint {w}/badjson --images {w}/sim/images --out {t}/p.parquet", "badjson/best/config.json: not valid JSON"),
    ("predict --checkpoint {w}/newer --images {w}/sim/images --out {t}/p.parquet",
     "newer/best/config.json: config version 3 is not one this galaxymorph reads (1 to 2); upgrade galaxymorph"),
    ("predict --checkpoint {w}/gan --images {w}/sim/images --out {t}/p.parquet",
     "gan/best/config.json: unknown model_type 'gan'; expected one of ['galaxy', 'finetuned', 'segmentation']"),
    ("predict --checkpoint {w}/run --images {w}/missing --out {t}/p.parquet", "--images {w}/missing: no such folder"),
    ("predict --checkpoint {w}/run --catalog {w}/sim/no_file_loc.csv --out {t}/p.parquet", "no column(s) ['file_loc']"),
    ("predict --checkpoint {w}/run --catalog {w}/sim/duplicate.csv --out {t}/p.parquet", "row 4 id_str=sim-000000: duplicate"),
    ("predict --checkpoint {w}/run --catalog {w}/empty.csv --out {t}/p.parquet", "empty.csv: cannot read"),
    ("predict --checkpoint {w}/run --shards {w}/shards --split nope --out {t}/p.parquet", "no split 'nope'"),
    (PREDICT.replace("{t}/p.parquet", "{w}/blocker/p.parquet"), "{w}/blocker"),
    (PREDICT.replace("{t}/p.parquet", "{w}/preds.parquet") + " --samples 3", "made with samples=2 "),
    (PREDICT.replace("{t}/p.parquet", "{w}/sim/catalogue.parquet"), "not written by this version of galaxymorph"),
    (PREDICT.replace("{t}/p.parquet", "{t}/p.csv"), "p.csv: the output is Parquet; name it .parquet"),
    (PREDICT.replace("{t}/p.parquet", "{w}/shards"), "--out {w}/shards is a folder"),
    (PREDICT + " --backend fast", "--backend 'fast' is not one of auto, eager, openvino, onnx"),
    (PREDICT + " --backend onnx --precision bf16-mixed", "--backend onnx computes in float32, not --precision bf16-mixed"),
    (PREDICT.replace("{t}/p.parquet", "{w}/preds.parquet") + " --samples 2 --precision bf16-mixed",
     "made with the default precision"),
    (TRAIN.replace("{t}/run", "{w}/shards"), "holds shards (galaxymorph shard)"),
    (FINETUNE.replace("{t}/ft", "{w}/sim"), "holds a simulated data set"),
    (EVALUATE + " {w}/sim/no_id.csv", "lacks 1 required column(s): id_str"),
    (EVALUATE + " {w}/sim/duplicate.csv", "row 4 id_str=sim-000000: duplicate id_str (first on row 0)"),
    (EVALUATE + " {w}/sim/no_vote_column.csv", f"no vote column '{VOTE}'"),
    (EVALUATE + " {w}/sim/inf.csv", f"{VOTE} = inf is infinite"),
    (EVALUATE + " {w}/folder.csv", "folder.csv is a folder"),
    (EVALUATE + " {w}/sim/catalogue.parquet --confident 2", "--confident"),
    ("evaluate --predictions {w}/missing.parquet --catalog {w}/sim/catalogue.parquet", "missing.parquet"),
    ("evaluate --predictions {w}/emb.parquet --catalog {w}/sim/catalogue.parquet", "not a galaxymorph predictions file"),
    ("evaluate --predictions {w}/garbage.parquet --catalog {w}/sim/catalogue.parquet", "garbage.parquet"),
    (EVALUATE + " {w}/sim/catalogue.parquet --out {w}/blocker/eval", "{w}/blocker"),
    (EVALUATE + " {w}/sim/catalogue.parquet --min-votes -1", "min_votes=-1 must be >= 0"),
    ("report --predictions {w}/missing.parquet --out {t}/r.html", "missing.parquet"),
    ("report --predictions {w}/preds.parquet --evaluation {w}/missing --out {t}/r.html", "{w}/missing/evaluation.json"),
    ("report --predictions {w}/preds.parquet --catalog {w}/folder.csv --out {t}/r.html", "folder.csv is a folder"),
    ("report --predictions {w}/preds.parquet --out {w}/blocker/r.html", "{w}/blocker"),
    ("report --predictions {w}/fewer_preds.parquet --evaluation {w}/eval --out {t}/r.html",
     "--evaluation {w}/eval was made from {w}/preds.parquet (12 rows"),
    ("simulate --n 2 --size 32 --out {t}/sim --format gif", "'gif'"),
    ("simulate --n 4 --size 32 --out {w}/sim --seed 3 --workers 1", "{w}/sim"),
    ("simulate --n 2 --size 32 --out {w}/blocker/sim --workers 1", "{w}/blocker"),
    ("simulate --n 0 --size 32 --out {t}/sim", "--n"),
    ("finetune --config {w}/ft_lr.yaml --out {t}/ft", "lr='fast' (str) must be a finite number"),
    (FINETUNE + " --config {w}/ft_epochs.yaml", "epochs='many' (str) must be a whole number"),
    (FINETUNE + " --config {w}/unknown.yaml", "unknown setting(s) ['epoch', 'shards']"),
    ("finetune --checkpoint {w}/run --out {t}/ft --label-col ring", "missing required setting(s) ['catalogue']"),
    (FINETUNE.replace("--label-col ring", "--label-col shape"), "lacks column(s) ['shape']"),
    (FINETUNE.replace("{w}/run", "{w}/missing"), "--checkpoint {w}/missing: neither a galaxymorph run"),
    (FINETUNE.replace("labels.csv", "labels_inf.csv").replace("ring", "size") + " --task regression",
     "have a non-numeric or infinite 'size': row 3"),
    (FINETUNE + " --task nope", "task='nope' must be one of"),
    (FINETUNE + " --preprocessing zoobot", "{w}/run is a galaxymorph model, which is always fed as it was trained; drop"),
    (FINETUNE.replace("{w}/run", "{w}/timm") + " --preprocessing zoobot2", "unknown preprocessing 'zoobot2'; choose one"),
    (FINETUNE.replace("{w}/run", "{w}/pickle_bin"), "pickle_bin/pytorch_model.bin is not a plain state dict (torch.load "
                                                    "with weights_only=True refused it"),
    (FINETUNE.replace("{w}/run", "{w}/ckpt_bin"), "ckpt_bin/pytorch_model.bin holds a dict, not a state dict"),
    (FINETUNE.replace("{w}/run", "hf_hub:nobody/no-encoder"), "hf_hub:nobody/no-encoder is not in the Hugging Face cache"),
    (FINETUNE + " --unfreeze lots", "'lots': give a number of blocks"),
    (FINETUNE.replace("{t}/ft", "{w}/blocker/ft"), "{w}/blocker"),
    (SEGMENT + " {w}/sim/mask_shape.csv", "galaxy sim-000001: mask {w}/sim/small_mask.png is 16x16 px but its image "
     "{w}/sim/images/sim-000001.png is 32x32"),
    (SEGMENT + " {w}/sim/mask_counts.csv", "galaxy sim-000002: mask {w}/sim/crowded_mask.png holds counts in [40, 40], "
     "not within 0 and its"),
    (SEGMENT + " {w}/sim/mask_missing.csv", "galaxy sim-000003: mask file {w}/sim/missing_mask.png not found"),
    (SEGMENT + " {w}/sim/mask_nobody.csv", "row 4 (id_str=sim-000004): mask_volunteers = 0"),
    (SEGMENT.replace(" --mask-cols mask_spiral,mask_bar", "") + " {w}/sim/catalogue.parquet",
     "mask_cols=None is needed for the segmentation task"),
    (SEGMENT.replace("mask_bar ", "mask_disk ") + " {w}/sim/catalogue.parquet", "lacks column(s) ['mask_disk']"),
    ("embed --checkpoint {w}/noprep --images {w}/sim/images --out {t}/e.parquet", "has no 'preprocessing'"),
    ("embed --checkpoint {w}/run --catalog {w}/missing.csv --out {t}/e.parquet", "catalogue file not found: {w}/missing.csv"),
    (EMBED + " {t}/e.txt", "e.txt: the output is Parquet; name it .parquet"),
    (EMBED + " {t}/e.parquet --preprocessing zoobot", "is a galaxymorph model, which is always fed as it was trained"),
    (EMBED.replace("{w}/run", "hf_hub:nobody/no-encoder") + " {t}/e.parquet", "`hf download nobody/no-encoder`"),
    ("export {w}/run {w}/run/best", "{w}/run/best holds a model (config.json) that galaxymorph export did not write"),
    ("export {w}/missing {t}/x", "no config.json + model.safetensors in {w}/missing"),
    (EMBED + " {w}/blocker/e.parquet", "{w}/blocker"),
    ("similar --embeddings {w}/emb.parquet --query nope", "--query 'nope' is not in the embeddings"),
    ("similar --embeddings {w}/preds.parquet --query sim_000000", "not a galaxymorph embeddings file"),
    ("similar --embeddings {w}/missing.parquet --query sim_000000", "missing.parquet"),
    (ACQUIRE + " --strategy nope", "--strategy 'nope' is not one of random, bald, cluster-bald, batch-bald"),
    (ACQUIRE + " --strategy cluster-bald", "cluster-bald needs --embeddings"),
    (ACQUIRE + " --strategy cluster-bald --embeddings {w}/fewer_emb.parquet", "has no row for 7 galaxies of the pool"),
    (ACQUIRE + " --strategy batch-bald", "batch-bald needs the samples of several models"),
    (ACQUIRE + " --queued {w}/kaggle_labels.csv", "--queued {w}/kaggle_labels.csv has no id_str column"),
    (ACQUIRE + " --queued {w}/queued_unknown.csv", "--queued: 1 galaxies are not in"),
    ("anomalies --embeddings {w}/emb.parquet --method nope", "method must be one of"),
    ("anomalies --embeddings {w}/emb.parquet --out {w}/blocker/a.csv", "{w}/blocker"),
    ("anomalies --embeddings {w}/folder.csv", "folder.csv"),
    ("anomalies --embeddings {w}/emb.parquet --k 0", "--k"),
    ("fetch nope --out {t}/f", "unknown release 'nope'; known: gz_decals_dr5, gz2"),
    ("fetch --out {t}/f", "name a release or give --record NUMBER"),
    ("fetch --record 5 --out {t}/f --server ftp://mirror", "--server='ftp://mirror' is not an http(s) address"),
    # nothing listens on port 1 of this machine: an archive that cannot be reached, without leaving it
    ("fetch --record 5 --out {t}/f --server http://127.0.0.1:1", "save http://127.0.0.1:1/api/records/5 as"),
    ("demo --galaxies 0 --out {t}/demo", "--galaxies"),
    ("demo --epochs 0 --out {t}/demo", "--epochs"),
    # A blank file_loc, an empty catalogue, one separated by ';', many missing columns.
    (SHARD + " {w}/sim/blank_loc.csv", "row 3 id_str=sim-000003: file_loc is empty"),
    (PREDICT.replace("catalogue.parquet", "blank_loc.csv"), "row 3 id_str=sim-000003: file_loc is empty"),
    (EMBED.replace("catalogue.parquet", "blank_loc.csv") + " {t}/e.parquet", "row 3 id_str=sim-000003: file_loc is empty"),
    (FINETUNE.replace("labels.csv", "labels_blank.csv"), "have no file_loc: row 3"),
    (SHARD + " {w}/sim/header_only.csv", "header_only.csv has no galaxies (column names but no rows)"),
    (PREDICT.replace("catalogue.parquet", "header_only.csv"), "header_only.csv has no galaxies"),
    (EMBED.replace("catalogue.parquet", "header_only.csv") + " {t}/e.parquet", "header_only.csv has no galaxies"),
    ("predict --checkpoint {w}/run --shards {w}/one_shards --split val --out {t}/p.parquet",
     "--shards {w}/one_shards --split val holds no galaxies"),
    (SHARD + " {w}/sim/semicolon.csv", "semicolon.csv: its columns are separated by ';', not commas"),
    (SHARD + " {w}/ragged.csv",
     "ragged.csv: cannot read it as a CSV table (Error tokenizing data. C error: Expected 2 fields in line 3, saw 4)"),
    (SHARD + " {w}/sim/no_smooth_columns.csv", "(and 2 more, all listed in {t}/s/catalogue.problems.csv)"),
    # Every bad row at once, in raise mode: cheap checks (a truncated PNG, a folder), then the decoding.
    (SHARD + " {w}/sim/three_bad_rows.csv", "row 2 id_str=sim-000002: " + VOTE + " = inf is infinite (3 problem(s) in 3 of 12 rows"),
    (SHARD + " {w}/sim/truncated.csv", "row 5 id_str=sim-000005: unreadable image {w}/sim/truncated.png"),
    (SHARD + " {w}/sim/folder_image.csv", "row 7 id_str=sim-000007: {w}/sim/dir.png is a folder, not an image file"),
    (SHARD + " {w}/sim/fits_bands.csv", "(3 image(s) could not be decoded, all listed in {t}/s/catalogue.problems.csv)"),
    # Numbers and names refused at the edge, before any work or output.
    (SHARD + " {w}/sim/catalogue.parquet --crop 0", "source_crop=0.0 must lie in (0, 1]"),
    (SHARD + " {w}/sim/catalogue.parquet --size 0", "Invalid value for '--size': Input should be greater than or equal to 1"),
    (TRAIN.replace("{w}/shards", "{w}/one_shards"),
     "the val split has no galaxies: shard a catalogue with more galaxies, or with a larger --val-fraction"),
    ("train --config {w}/workers.yaml", "workers=-3 must be >= 0"),
    (PREDICT + " --samples -2", "Invalid value for '--samples': Input should be greater than or equal to 1"),
    ("report --predictions {w}/preds.parquet --out {t}/r.html --gallery -4",
     "Invalid value for '--gallery': Input should be greater than or equal to 0"),
    ("similar --embeddings {w}/emb.parquet --query sim-000000 --grid {t}/p.parquet",
     "--grid {t}/p.parquet: the output is a PNG picture; name it .png"),
    ("similar --embeddings {w}/emb.parquet --query sim-000000 --grid {w}/photo.png",
     "--grid {w}/photo.png exists and was not written by this command"),
    ("acquire --predictions {w}/preds.parquet --top 3 --out {t}/q.csv --questions bar,nope",
     "unknown question 'nope'; valid: smooth-or-featured, disk-edge-on, has-spiral-arms, bar,"),
    ("acquire --predictions {w}/preds1.parquet --top 3 --out {t}/q.csv --strategy bald",
     "holds one posterior sample per galaxy"),
    ("anomalies --embeddings {w}/emb.parquet --top -1", "Invalid value for '--top': Input should be greater than or equal to 1"),
    ("anomalies --embeddings {w}/emb.parquet --top 0", "Invalid value for '--top': Input should be greater than or equal to 1"),
    ("anomalies --embeddings {w}/emb.parquet --k 50", "--k 50 must be between 1 and 11"),
    (EMBED + " {t}/e.parquet --pca 0", "Invalid value for '--pca': Input should be greater than or equal to 1"),
    (EMBED + " {t}/e.parquet --pca 100000", "--pca 100000: must be between 1 and min(galaxies, features) = min(12, "),
    # Output names whose suffix says another format than the one written.
    ("acquire --predictions {w}/preds.parquet --top 3 --out {t}/q.parquet", "q.parquet: the output is CSV; name it .csv"),
    ("anomalies --embeddings {w}/emb.parquet --out {t}/a.parquet", "a.parquet: the output is CSV; name it .csv"),
    ("convert-kaggle --labels {w}/kaggle_labels.csv --images {w}/kaggle_images --out {t}/cat.txt",
     "cat.txt: the output is a Parquet or CSV catalogue"),
    ("report --predictions {w}/preds.parquet --out {t}/r.txt", "r.txt: the output is an HTML page"),
    ("simulate --n 2 --size 32 --out {t}/sim --grid {t}/grid.jpg", "--grid {t}/grid.jpg: the output is a PNG picture"),
]


def _snapshot(root: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("line, culprit", CASES, ids=[f"{line.split()[0]}-{i}" for i, (line, _) in enumerate(CASES)])
def test_bad_input_exits_2_with_one_message_and_loses_nothing(world, tmp_path, line, culprit):
    before = _snapshot(world)
    args = shlex.split(line.format(w=world, t=tmp_path))
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    if "error:" in result.output:  # ours: one line (click's usage errors come in a box of their own)
        assert len(result.output[result.output.index("error:"):].strip().splitlines()) == 1, result.output
    flat = " ".join(result.output.replace("│", " ").split())  # click's usage errors come in a (wrapped) box
    assert culprit.format(w=world, t=tmp_path) in flat
    after = _snapshot(world)
    assert {p: after.get(p) for p in before} == before, "an input or earlier output was changed or removed"
    # validated before any output is claimed: what is left is a problem list the message names (and, for
    # shard, the complete shards beside it, kept for the re-run)
    for left in (p for p in tmp_path.rglob("*") if p.is_file()):
        assert any(str(named) in flat for named in [left, *left.parent.glob("*.problems.csv")]), left


def test_numbers_written_as_text_in_a_train_config_are_read_as_numbers(tmp_path):
    from galaxymorph.training import TrainConfig

    (tmp_path / "c.yaml").write_text("shards: s\nout: o\nlr: 1e-3\nepochs: '3'\ngrad_clip: null\n")
    config = TrainConfig.from_yaml(tmp_path / "c.yaml")
    assert (config.lr, config.epochs, config.grad_clip) == (0.001, 3, None)
    assert isinstance(config.lr, float) and isinstance(config.epochs, int)


def test_fits_of_another_band_count_or_all_nan_are_predicted_by_nobody_and_named(world, tmp_path):
    """The 3-band file is predicted; the others are listed with their reason, and the first is shown."""
    result = CliRunner().invoke(app, ["predict", "--checkpoint", str(world / "run"), "--images", str(world / "sim" / "fits"),
                                      "--out", str(tmp_path / "p.parquet")])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "1 galaxies in" in flat and "3 image(s) could not be read, so they have no row: id_str=all_nan: " in flat
    assert "all_nan.fits: no finite pixel (all NaN or infinite)" in flat
    listed = pd.read_csv(tmp_path / "p.errors.csv").set_index("id_str")["reason"]
    assert "one_band.fits: 1 band(s), but 3 channels are made from exactly 3 bands" in listed["one_band"]
    assert "five_bands.fits: 5 band(s)" in listed["five_bands"] and len(listed) == 3
