"""Image reading, transforms and catalogue validation (tiny images made here)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from astropy.io import fits
from PIL import Image
from support import make_catalogue

from galaxymorph.data.catalogue import CatalogueError, CatalogueWarning, read_catalogue
from galaxymorph.data.images import FitsStretch, ImageReadError, check_image, load_image
from galaxymorph.data.transforms import Preprocessing, eval_transform, train_transform
from galaxymorph.schema import get_schema

SCHEMA = get_schema("gz2")


# --- images -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "array"),
    [
        ("L", np.full((30, 40), 200, np.uint8)),
        ("RGB", np.full((30, 30, 3), (10, 100, 200), np.uint8)),
        ("RGBA", np.dstack([np.full((30, 30, 3), 100, np.uint8), np.full((30, 30), 255, np.uint8)])),
        ("I;16", np.full((30, 30), 65535 // 2, np.uint16)),
    ],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_png_modes_give_fixed_size_uint8(tmp_path, mode, array, channels):
    path = tmp_path / "x.png"
    Image.fromarray(array).save(path)
    assert Image.open(path).mode == mode
    out = load_image(path, 8, channels=channels)
    assert out.shape == (8, 8, channels) and out.dtype == np.uint8
    expected = {"L": 200, "RGB": None, "RGBA": 100, "I;16": 127}[mode]
    if expected is not None:
        assert np.all(np.abs(out.astype(int) - expected) <= 1)
    elif channels == 3:
        assert np.array_equal(out[0, 0], [10, 100, 200])


def test_central_crop_keeps_the_centre(tmp_path):
    array = np.zeros((40, 40, 3), np.uint8)
    array[10:30, 10:30] = 255
    Image.fromarray(array).save(tmp_path / "c.png")
    assert load_image(tmp_path / "c.png", 8, crop_fraction=0.4).min() == 255
    assert load_image(tmp_path / "c.png", 10).min() == 0


def test_jpeg_draft_decoding_matches_full_decode(tmp_path):
    yy, xx = np.mgrid[:400, :400]
    blob = (255 * np.exp(-((yy - 200) ** 2 + (xx - 200) ** 2) / 3000)).astype(np.uint8)
    Image.fromarray(np.dstack([blob] * 3)).save(tmp_path / "g.jpg", quality=95)
    fast = load_image(tmp_path / "g.jpg", 32, crop_fraction=0.75).astype(int)
    full = np.asarray(Image.fromarray(np.dstack([blob] * 3)).resize((32, 32), Image.BILINEAR, box=(50, 50, 350, 350)))
    assert np.abs(fast - full).mean() < 3


@pytest.mark.parametrize("layout", ["primary-2d", "extension-cube-first", "cube-last"])
def test_fits_hdus_cubes_and_nans(tmp_path, layout):
    rng = np.random.default_rng(1)
    plane = rng.normal(size=(20, 20)).astype(np.float32)
    plane[0, :5] = np.nan
    if layout == "primary-2d":
        hdus = fits.HDUList([fits.PrimaryHDU(plane)])
    elif layout == "extension-cube-first":
        hdus = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.stack([plane, plane * 2, plane * 3]))])
    else:
        hdus = fits.HDUList([fits.PrimaryHDU(np.stack([plane, plane, plane], axis=-1))])
    hdus.writeto(tmp_path / "g.fits")
    channels = 1 if layout == "primary-2d" else 3  # one band makes one channel (see the band rule below)
    out = load_image(tmp_path / "g.fits", 10, channels=channels)
    assert out.shape == (10, 10, channels) and out.dtype == np.uint8 and out.max() > 100
    assert check_image(tmp_path / "g.fits") is None


@pytest.mark.parametrize("data, reason", [
    (np.ones((20, 20)), "1 band(s), but 3 channels are made from exactly 3 bands"),
    (np.ones((5, 20, 20)), "5 band(s), but 3 channels are made from exactly 3 bands"),
    (np.full((3, 20, 20), np.nan), "no finite pixel (all NaN or infinite)"),
])
def test_fits_of_another_band_count_or_without_a_finite_pixel_is_refused_naming_the_file(tmp_path, data, reason):
    fits.PrimaryHDU(data.astype(np.float32)).writeto(tmp_path / "g.fits")
    with pytest.raises(ImageReadError, match=re.escape(f"{tmp_path / 'g.fits'}: {reason}")):
        load_image(tmp_path / "g.fits", 10, channels=3)
    if "band" in reason:  # one channel is the mean of any number of bands; a picture for people takes what there is
        assert load_image(tmp_path / "g.fits", 10, channels=1).shape == (10, 10, 1)
        assert load_image(tmp_path / "g.fits", 10, channels=3, any_bands=True).shape == (10, 10, 3)


def test_fits_stretches_differ_and_validate():
    flux = np.linspace(0, 1, 101)
    linear, asinh = FitsStretch("percentile", 0, 100).apply(flux), FitsStretch("arcsinh", 0, 100).apply(flux)
    assert linear[0] == asinh[0] == 0 and linear[-1] == asinh[-1] == 255
    assert asinh[10] > linear[10]  # arcsinh lifts the faint end
    with pytest.raises(ValueError, match="kind"):
        FitsStretch("log")


def test_unreadable_images_name_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match=re.escape(str(tmp_path / "bad.png"))):
        load_image(tmp_path / "bad.png", 8)
    with pytest.raises(ImageReadError, match="file not found"):
        load_image(tmp_path / "missing.png", 8)
    assert "unreadable" in check_image(tmp_path / "bad.png")
    assert "not found" in check_image(tmp_path / "missing.png")


# --- transforms ---------------------------------------------------------------------


def test_preprocessing_round_trips_as_plain_data():
    prep = Preprocessing(stored_size=32, source_crop=0.5, image_size=16, channels=1)
    assert prep.eval_zoom == pytest.approx(0.75)
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    with pytest.raises(ValueError, match="unknown Preprocessing keys"):
        Preprocessing.from_dict({**prep.to_dict(), "imagesize": 3})
    with pytest.raises(ValueError, match="channels"):
        Preprocessing(channels=2)
    with pytest.raises(ValueError, match="train_shift"):
        Preprocessing(train_shift=0.7)
    older = {k: v for k, v in prep.to_dict().items() if k != "train_shift"}  # a manifest from before the setting
    assert Preprocessing.from_dict(older).train_shift == 0.03


def test_eval_transform_is_deterministic_and_scaled_once():
    prep = Preprocessing(stored_size=32, image_size=16)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    a, b = eval_transform(prep)(images), eval_transform(prep)(images)
    assert torch.equal(a, b) and a.shape == (4, 3, 16, 16) and a.dtype == torch.float32
    flat = torch.full((2, 3, 32, 32), 51, dtype=torch.uint8)
    assert torch.allclose(eval_transform(prep)(flat), torch.full((2, 3, 16, 16), 0.2))
    identity = Preprocessing(stored_size=32, image_size=32, train_zoom=(1, 1))
    assert torch.equal(eval_transform(identity)(images), images.float() / 255)
    with pytest.raises(TypeError, match="uint8"):
        eval_transform(prep)(images.float())


@pytest.mark.parametrize("channels", [1, 3])
def test_train_transform_shapes_ranges_and_randomness(channels):
    prep = Preprocessing(stored_size=48, image_size=20, channels=channels)
    images = torch.randint(0, 256, (6, 3, 48, 48), dtype=torch.uint8)
    out = train_transform(prep)(images)
    assert out.shape == (6, channels, 20, 20) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    assert not torch.equal(out, train_transform(prep)(images))
    seeded = [train_transform(prep, torch.Generator().manual_seed(3))(images) for _ in range(2)]
    assert torch.equal(*seeded)
    flat = torch.full((3, 3, 48, 48), 102, dtype=torch.uint8)
    assert torch.allclose(train_transform(prep)(flat), torch.full((3, channels, 20, 20), 0.4), atol=1e-5)


def test_train_transform_rotates_about_the_centre():
    """A centred symmetric blob stays centred whatever the rotation and flip (zoom fixed, no shift)."""
    prep = Preprocessing(stored_size=64, image_size=32, train_zoom=(1.0, 1.0))
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    blob = (255 * torch.exp(-((yy - 31.5) ** 2 + (xx - 31.5) ** 2) / 40)).to(torch.uint8)
    out = train_transform(prep)(blob.expand(8, 3, 64, 64).contiguous())[:, 0]
    transform = eval_transform(Preprocessing(stored_size=64, image_size=32, train_zoom=(1.0, 1.0)))
    reference = transform(blob.expand(1, 3, 64, 64).contiguous())[:, 0]
    assert (out - reference).abs().max() < 0.05


@pytest.mark.parametrize("shift", [0.5, 0.0, 0.05])
def test_train_shift_bounds_how_far_the_crop_centre_moves(shift):
    """A bright centre pixel lands within shift x frame / zoom of the output centre, per axis before the
    rotation (so sqrt 2 times that in distance); 0.5: anywhere the crop fits."""
    stored, out = 96, 64
    prep = Preprocessing(stored_size=stored, image_size=out, train_zoom=(0.7, 0.8), train_shift=shift)
    images = torch.zeros(400, 3, stored, stored, dtype=torch.uint8)
    images[..., stored // 2 - 1 : stored // 2 + 1, stored // 2 - 1 : stored // 2 + 1] = 255
    brightest = train_transform(prep, torch.Generator().manual_seed(0))(images)[:, 0].flatten(1).argmax(1)
    offset = torch.stack([brightest // out, brightest % out]).float().sub((out - 1) / 2).norm(dim=0).max()
    if shift == 0.5:  # up to (1 - zoom) / 2 of the frame per axis, i.e. ~19 px here
        assert offset > 12
    else:
        assert offset <= 2**0.5 * shift * out / 0.7 + 1


# --- catalogue validation -----------------------------------------------------------


def test_valid_catalogue_reads_with_absolute_paths_and_float_votes(tmp_path):
    make_catalogue(tmp_path).to_csv(tmp_path / "cat.csv", index=False)
    df = read_catalogue(tmp_path / "cat.csv", "gz2")
    assert len(df) == 12 and df[list(SCHEMA.answers)].dtypes.eq(np.float32).all()
    assert all(Path(p).is_absolute() and Path(p).exists() for p in df["file_loc"])
    assert df.loc[:2, list(SCHEMA.questions[2].columns)].isna().all().all()  # not provided stays NaN
    assert df.attrs["report_path"] is None


def test_missing_columns_name_the_closest(tmp_path):
    cat = make_catalogue(tmp_path).rename(columns={"bar_yes": "bar_yess", "id_str": "id"})
    with pytest.raises(CatalogueError) as err:
        read_catalogue(cat, "gz2", root=tmp_path)
    message = str(err.value)
    report = tmp_path / "catalogue.problems.csv"
    assert "lacks 2 required column(s): id_str: closest existing ['id'] (and 1 more, all listed in " in message
    assert str(report) in message and "\n" not in message
    listed = pd.read_csv(report)["reason"].tolist()
    assert listed == ["missing column id_str: closest existing ['id']", "missing column bar_yes: closest existing ['bar_yess', 'bar_no']"]


def _broken_catalogue(tmp_path: Path) -> pd.DataFrame:
    cat = make_catalogue(tmp_path)
    cat["bar_yes"] = cat["bar_yes"].astype(object)
    cat.loc[3, "bar_yes"] = -1.0
    cat.loc[4, "bar_no"] = 2.5
    cat.loc[5, "bar_yes"] = np.nan  # bar_no still given: partly NaN
    cat.loc[6, "bar_yes"] = "many"
    cat.loc[7, "id_str"] = cat.loc[8, "id_str"]
    cat.loc[9, "file_loc"] = "images/nowhere.png"
    (tmp_path / "images" / "g10.png").write_bytes(b"garbage")
    return cat


EXPECTED_REASONS = {
    3: "bar_yes = -1 is negative",
    4: "bar_no = 2.5 is not a whole number of votes",
    5: "question bar partly NaN (bar_yes)",
    6: "bar_yes is not a number ('many')",
    8: "duplicate id_str (first on row 7)",
    9: "image file not found",
    10: "unreadable image",
}


def test_every_bad_row_is_reported_with_id_and_reason(tmp_path):
    cat = _broken_catalogue(tmp_path)
    cat.to_csv(tmp_path / "cat.csv", index=False)
    with pytest.raises(CatalogueError) as err:
        read_catalogue(tmp_path / "cat.csv", "gz2")
    message = str(err.value)
    report = tmp_path / "cat.problems.csv"
    assert "row 3 id_str=J003.5+1: bar_yes = -1 is negative (7 problem(s) in 7 of 12 rows, all listed in " in message
    assert str(report) in message and "on_error='skip'" in message and "\n" not in message
    lines = pd.read_csv(report, dtype={"id_str": str})
    assert sorted(lines["row"]) == sorted(EXPECTED_REASONS)
    for row, reason in EXPECTED_REASONS.items():
        line = lines[lines["row"] == row].iloc[0]
        assert reason in line["reason"] and line["id_str"] == str(cat.loc[row, "id_str"])


def test_skip_drops_exactly_the_bad_rows_and_says_so(tmp_path):
    cat = _broken_catalogue(tmp_path)
    with pytest.warns(CatalogueWarning, match=r"skipped 7 rows: .* in 7 of 12 rows, all listed in "):
        df = read_catalogue(cat, "gz2", on_error="skip", root=tmp_path, report_path=tmp_path / "r.csv")
    kept = [i for i in range(12) if i not in EXPECTED_REASONS]
    assert df["id_str"].tolist() == cat.loc[kept, "id_str"].tolist()
    assert sorted(s["row"] for s in df.attrs["skipped"]) == sorted(EXPECTED_REASONS) and (tmp_path / "r.csv").exists()


def test_fits_band_order_bluest_first_becomes_bgr(tmp_path):
    cube = np.zeros((3, 12, 12), np.float32)
    cube[0] = 1.0  # g only: shown blue
    cube[0, 0, 0] = 0.0  # give the stretch a range
    fits.PrimaryHDU(cube).writeto(tmp_path / "g.fits")
    centre = load_image(tmp_path / "g.fits", 6, stretch=FitsStretch("percentile", 0, 100))[3, 3]
    assert centre[2] == 255 and centre[0] == centre[1] == 0
