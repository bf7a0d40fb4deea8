"""Segmentation from volunteers' masks: simulated drawings, masks framed and augmented with their images, the
Beta-Binomial loss, the model's keyed MC dropout, the mask store and its measurements, evaluate and report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from astropy.io import fits
from PIL import Image
from scipy.stats import beta, binom
from typer.testing import CliRunner

from galaxymorph.cli import app
from galaxymorph.data.images import load_image
from galaxymorph.data.masks import frame_masks, load_masks, read_mask
from galaxymorph.data.transforms import Preprocessing, eval_transform, train_transform, with_masks
from galaxymorph.evaluation.masks import evaluate_masks
from galaxymorph.losses import mask_nll
from galaxymorph.mask_stats import measure_shapes, pixel_intervals, pixel_posteriors, summarise_samples
from galaxymorph.models import GalaxyModel, create_encoder, load_encoder, load_model, save_model
from galaxymorph.models.finetune_model import PretrainedEncoder
from galaxymorph.models.galaxy_model import CONFIG_VERSION
from galaxymorph.models.head import galaxy_keys
from galaxymorph.models.segmentation import SegmentationModel
from galaxymorph.prediction import predict
from galaxymorph.prediction.masks import mask_layout, mask_table, measurements_path, read_masks
from galaxymorph.report import build_report
from galaxymorph.simulate import parameters_of, simulate, simulate_catalogue, simulate_truth
from galaxymorph.simulate.masks import draw_masks, drawing_volunteers
from galaxymorph.training import FinetuneConfig
from galaxymorph.training.finetune_run import finetune

ARCH = "test_resnet"
PREP = Preprocessing(stored_size=32, image_size=24, channels=3)  # the evaluation crop (0.75) keeps 24 px: no resampling
MASKS = ["mask_spiral", "mask_bar"]


def _encoder(arch: str = ARCH) -> PretrainedEncoder:
    config = {"arch": arch, "channels": 3, "encoder_args": {}, "input_mean": 0.5, "input_std": 0.5,
              "preprocessing": PREP.to_dict(), "source": "random"}
    return PretrainedEncoder(create_encoder(arch), config)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """24 simulated galaxies of 32 px with volunteers' masks and the truth; a random 'pretrained' run beside them."""
    root = tmp_path_factory.mktemp("seg")
    simulate_catalogue(24, 32, root / "sim", workers=1, progress=False, masks=True)
    torch.manual_seed(0)
    save_model(GalaxyModel("gz_decals_dr5", arch=ARCH, preprocessing=PREP.to_dict()), root / "run" / "best")
    return root


def test_simulated_drawings_stay_within_their_volunteers_and_follow_the_truth():
    params = parameters_of(simulate_truth(150, seed=1))
    counts, truth = draw_masks(params, 24)
    volunteers = drawing_volunteers(params)
    assert counts.shape == truth.shape == (150, 2, 24, 24) and counts.dtype == np.uint8
    assert (counts <= volunteers[:, None, None, None]).all()
    not_disks = (params["kind"] != "disk").to_numpy()
    assert not truth[not_disks].any() and not counts[not_disks].any()  # nothing to draw, nobody draws
    assert not truth[(params["arm_count"] == 0).to_numpy(), 0].any()
    assert not truth[(params["bar"] == "none").to_numpy(), 1].any()
    share = counts / volunteers[:, None, None, None]
    for k in range(2):  # volunteers mark true pixels far more often than others
        assert share[:, k][truth[:, k]].mean() > 0.5 and share[:, k][~truth[:, k]].mean() < 0.1
    again, _ = draw_masks(params.iloc[[7, 3, 120]], 24)  # a galaxy's drawings do not depend on its batch
    np.testing.assert_array_equal(again, counts[[7, 3, 120]])


def test_masks_leave_the_simulated_images_and_votes_as_they_were(tmp_path):
    plain = simulate_catalogue(6, 24, tmp_path / "plain", seed=3, workers=1, progress=False)
    masked = simulate_catalogue(6, 24, tmp_path / "masked", seed=3, workers=1, progress=False, masks=True)
    pd.testing.assert_frame_equal(masked[plain.columns], plain)
    for f in plain["file_loc"]:
        assert (tmp_path / "plain" / f).read_bytes() == (tmp_path / "masked" / f).read_bytes()
    assert json.loads((tmp_path / "plain" / "simulation.json").read_text()).keys() == {
        "n", "size", "seed", "format", "volunteers"}  # what an earlier simulation recorded: it still resumes
    memory = simulate(6, 24, seed=3, masks=True)
    for i, row in masked.iterrows():
        for k, column in enumerate(MASKS):
            np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "masked" / row[column])), memory.masks[i, k])
            np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "masked" / row[f"true_{column}"])),
                                          memory.true_masks[i, k])
    assert (masked["mask_volunteers"] == memory.catalogue["mask_volunteers"]).all()


def test_a_mask_reads_alike_from_png_npy_and_fits(tmp_path):
    counts = np.random.default_rng(0).integers(0, 16, (12, 10))
    Image.fromarray(counts.astype(np.uint8)).save(tmp_path / "m.png")
    np.save(tmp_path / "m.npy", counts)
    fits.PrimaryHDU(counts.astype(np.float32)).writeto(tmp_path / "m.fits")
    for name in ("m.png", "m.npy", "m.fits"):
        np.testing.assert_array_equal(read_mask(tmp_path / name), counts)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png: cannot read it as a mask.*not one band"):
        read_mask(tmp_path / "rgb.png")


def _blob(size: int) -> np.ndarray:
    """An asymmetric L-shaped blob: any rotation or flip of it is another picture."""
    mask = np.zeros((size, size), bool)
    mask[size // 4 : size // 2, size // 4 : 3 * size // 4] = True
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 8] = True
    return mask


def test_a_mask_drawn_on_its_image_stays_on_it_through_framing_and_augmentation(tmp_path):
    """The mask of a bright shape is where the shape is after crop, resize, rotation, flip and zoom-crop."""
    blob = _blob(60)
    image = np.where(blob[..., None], 230, 20).astype(np.uint8).repeat(3, axis=2)
    Image.fromarray(image).save(tmp_path / "g.png")
    Image.fromarray(blob.astype(np.uint8) * 3).save(tmp_path / "m.png")  # 3 of 3 volunteers marked it
    prep = Preprocessing(stored_size=40, image_size=32, source_crop=0.9, train_zoom=(0.6, 0.9), train_shift=0.1)
    stored = frame_masks("g", str(tmp_path / "g.png"), [str(tmp_path / "m.png")], 3, prep)
    pixels = load_image(tmp_path / "g.png", prep.stored_size, 3, prep.source_crop)
    images = torch.from_numpy(pixels).permute(2, 0, 1)[None].repeat(16, 1, 1, 1)
    masks = torch.from_numpy(stored)[None].repeat(16, 1, 1, 1)
    for transform in (eval_transform(prep), train_transform(prep, torch.Generator().manual_seed(0))):
        seen, shares = with_masks(transform, images, masks)
        bright, marked = seen.mean(dim=1) > 0.5, shares[:, 0] > 0.5
        assert bright.any(dim=(1, 2)).all()
        iou = (bright & marked).sum(dim=(1, 2)) / (bright | marked).sum(dim=(1, 2))
        assert iou.min() > 0.9, iou  # 16 random rotations, flips and zoom-crops, each aligned
    train_views = with_masks(train_transform(prep, torch.Generator().manual_seed(0)), images, masks)[1]
    assert not torch.equal(train_views[0], train_views[1])  # the galaxies did get different augmentations


def test_mask_loss_is_the_binomial_of_the_counts():
    rng = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(3, 2, 5, 5, generator=rng, dtype=torch.float64)
    volunteers = torch.tensor([1.0, 7.0, 15.0], dtype=torch.float64)
    draws = torch.rand(3, 2, 5, 5, generator=rng, dtype=torch.float64)
    counts = torch.floor(draws * (volunteers.view(-1, 1, 1, 1) + 1))
    expected = -binom.logpmf(counts.numpy(), volunteers.view(-1, 1, 1, 1).numpy(), torch.sigmoid(logits).numpy()).mean()
    loss = mask_nll(logits, (counts / volunteers.view(-1, 1, 1, 1), volunteers))
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_segmentation_model_keeps_the_pretrained_encoder_and_draws_masks_from_each_id():
    pretrained = _encoder("resnet10t")
    model = SegmentationModel.create(pretrained, MASKS, dropout=0.3).eval()
    encoder = pretrained.encoder.state_dict()
    assert all(torch.equal(value, encoder[name]) for name, value in model.encoder.state_dict().items())
    images = torch.rand(3, 3, 24, 24)
    features = model.features(images)
    assert model.head(features).shape == (3, 2, 24, 24)
    samples = model.sample(features, 4, galaxy_keys(["a", "b", "c"]))
    assert samples.shape == (3, 2, 24, 24, 4) and samples.min() >= 0 and samples.max() <= 1
    alone = model.sample(model.features(images[[1]]), 4, galaxy_keys(["b"]))
    torch.testing.assert_close(alone[0], samples[1], atol=1e-4, rtol=1e-4)  # the same masks in any batch
    assert not torch.allclose(samples[..., 0], samples[..., 1])  # and different masks per sample
    torch.testing.assert_close(model.sample(features, 1)[..., 0], torch.sigmoid(model.head(features)))  # no dropout
    model.set_trainable(0)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.head.parameters())


def test_shapes_are_measured_from_second_moments():
    y, x = np.mgrid[0:64, 0:64] + 0.5
    u, v = x - 32, 32 - y  # y up
    angle = np.radians(30)
    along, across = u * np.cos(angle) + v * np.sin(angle), -u * np.sin(angle) + v * np.cos(angle)
    ellipse = ((along / 20) ** 2 + (across / 5) ** 2 < 1).astype(float)
    shapes = measure_shapes(np.stack([ellipse, np.zeros_like(ellipse)]))
    assert shapes["length"][0] == pytest.approx(40 / 64, rel=0.01)  # the major axis, in frame widths
    assert shapes["angle"][0] == pytest.approx(30, abs=1)
    assert shapes["area"][0] == pytest.approx(np.pi * 20 * 5 / 64**2, rel=0.03) and shapes["pixels"][0] == ellipse.sum()
    assert shapes["length"][1] == 0 and np.isnan(shapes["angle"][1])
    wrapped = summarise_samples(np.array([[178.0, 2.0, 180.0, np.nan]]), "angle")  # around 0 = 180, not 90
    assert wrapped["angle"][0] == pytest.approx(0, abs=1e-6) or wrapped["angle"][0] == pytest.approx(180, abs=1e-6)
    assert wrapped["angle_q05"][0] < 0 < wrapped["angle_q95"][0] < 3


def test_pixel_posteriors_are_the_beta_of_the_samples_mean_and_variance():
    samples = np.array([[0.2, 0.3, 0.4, 0.3], [0.9, 0.9, 0.9, 0.9]])[None, None]  # (1, H=1, W=2, 4 samples)
    posterior = pixel_posteriors(samples)
    np.testing.assert_allclose(posterior["mean"][0, 0], [0.3, 0.9])
    a_plus_b = 0.3 * 0.7 / np.var([0.2, 0.3, 0.4, 0.3]) - 1
    np.testing.assert_allclose(posterior["concentration"][0, 0], [a_plus_b, 1e4])  # agreeing samples: the most
    low, high = pixel_intervals(posterior["mean"], posterior["concentration"])
    np.testing.assert_allclose(low[0, 0, 0], beta.ppf(0.05, 0.3 * a_plus_b, 0.7 * a_plus_b), rtol=1e-6)
    np.testing.assert_allclose(high[0, 0, 0], beta.ppf(0.95, 0.3 * a_plus_b, 0.7 * a_plus_b), rtol=1e-6)
    assert low[0, 0, 1] < 0.9 < high[0, 0, 1] and high[0, 0, 1] - low[0, 0, 1] < 0.01


def _store_of(masks: np.ndarray, ids: list[str], path, size: int = 24) -> None:
    """A mask store whose predictions are ``masks`` (N, K, S, S) in [0, 1] in two samples, as predict writes it."""
    config = {"classes": ["spiral", "bar"], "image_size": size, "mask_cols": MASKS, "volunteers_col": "mask_volunteers",
              "preprocessing": PREP.to_dict()}
    layout = mask_layout(config, 2, {"made_by": {}})
    table = mask_table(ids, masks[..., None].repeat(2, axis=-1), [None] * len(ids), config["classes"], layout)
    pq.write_table(table, path)


def test_evaluate_scores_the_truth_as_perfect_and_the_volunteers_majority_as_their_noise_floor(sim, tmp_path):
    catalogue = pd.read_parquet(sim / "sim" / "catalogue.parquet")
    ids = catalogue["id_str"].tolist()
    truth = np.stack([np.stack([np.asarray(Image.open(sim / "sim" / f), float) for f in row])
                      for row in catalogue[[f"true_{c}" for c in MASKS]].itertuples(index=False)])
    _store_of(truth[..., 4:28, 4:28], ids, tmp_path / "truth.parquet")  # the evaluation crop of 32 px
    result = evaluate_masks(tmp_path / "truth.parquet", sim / "sim" / "catalogue.parquet", out=tmp_path / "eval")
    assert result["galaxies"] == 24 and result["truth"]
    for name in ("spiral", "bar"):
        entry = result["classes"][name]
        if entry["model_vs_truth"]["pixels"]:
            assert entry["model_vs_truth"]["dice"] == 1.0 and entry["model_vs_truth"]["iou"] == 1.0
            assert entry["volunteer_majority_vs_truth"]["dice"] == pytest.approx(
                entry["model_vs_volunteer_majority"]["dice"])  # the same two masks, either way round
    assert json.loads((tmp_path / "eval" / "evaluation.json").read_text())["classes"].keys() == {"spiral", "bar"}


@pytest.mark.slow
def test_finetune_predict_resume_evaluate_and_report_masks_end_to_end(sim, tmp_path):
    config = FinetuneConfig(checkpoint=str(sim / "run"), catalogue=str(sim / "sim" / "catalogue.parquet"),
                            out=str(tmp_path / "seg"), task="segmentation", mask_cols=MASKS,
                            volunteers_col="mask_volunteers", epochs=1, batch_size=8, unfreeze="all", progress=False)
    best = finetune(config)
    model = load_model(best)
    assert isinstance(model, SegmentationModel) and model.config["classes"] == ["spiral", "bar"]
    saved = json.loads((best / "config.json").read_text())  # what load_model dispatches on
    assert saved["version"] == CONFIG_VERSION and saved["model_type"] == "segmentation" and saved["ood"] is None
    out = tmp_path / "masks.parquet"
    counts = predict(best, out, catalogue=sim / "sim" / "catalogue.parquet", samples=3, progress=False)
    assert counts["rows"] == 24
    assert predict(best, out, catalogue=sim / "sim" / "catalogue.parquet", samples=3, progress=False)["new"] == 0
    with pytest.raises(ValueError, match="samples=3"):
        predict(best, out, catalogue=sim / "sim" / "catalogue.parquet", samples=2, progress=False)
    with pytest.raises(ValueError, match="predict a segmentation model with --backend eager"):
        predict(best, out, catalogue=sim / "sim" / "catalogue.parquet", samples=3, progress=False, backend="onnx")
    ids, masks = read_masks(out, ["sim-000005", "sim-000002"], intervals=True)
    assert sorted(ids) == ["sim-000002", "sim-000005"]
    assert masks["mean"].shape == masks["q05"].shape == (2, 2, 24, 24)
    assert (masks["q05"] <= masks["mean"] + 1e-3).all() and (masks["mean"] <= masks["q95"] + 1e-3).all()
    measured = pd.read_parquet(measurements_path(out))
    assert len(measured) == 24 and {"bar_length", "bar_angle_q95", "spiral_pixels", "spiral_area_q05"} <= set(measured)
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--predictions", str(out), "--catalog",
                                 str(sim / "sim" / "catalogue.parquet"), "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0 and "spiral: Dice" in result.output, result.output
    report = build_report(out, tmp_path / "report.html", evaluation=tmp_path / "eval")
    page = report.read_text()
    assert page.count("class='maskcard'") == 24 and "sim-000005" in page and "posterior mean masks" in page
    assert "<h2>Metrics</h2>" in page and "model vs truth" in page


def test_segmentation_needs_mask_columns_and_an_encoder_with_every_scale(sim, tmp_path):
    with pytest.raises(ValueError, match="mask_cols"):
        FinetuneConfig(checkpoint="c", catalogue="x.csv", out=str(tmp_path / "o"), task="segmentation").validate()
    frame = load_masks(sim / "sim" / "catalogue.parquet", MASKS, PREP.to_dict(), "mask_volunteers", progress=False)
    assert frame.targets.shape == (24, 2, 32, 32) and frame.targets.dtype == torch.uint8
    assert frame.volunteers is not None and (frame.volunteers >= 1).all()
    assert load_encoder(sim / "run").config["arch"] == ARCH
