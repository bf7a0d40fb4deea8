"""The simulator: votes consistent with the tree, truth that volunteers agree with, files."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from PIL import Image

from galaxymorph import get_schema
from galaxymorph.simulate import (
    draw_parameters,
    parameters_of,
    render_galaxies,
    simulate,
    simulate_catalogue,
    simulate_truth,
    simulate_votes,
    true_probabilities,
)
from galaxymorph.simulate.volunteers import volunteer_counts

SCHEMA = get_schema("gz_decals_dr5")


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return simulate_truth(3000, seed=3)


def _params(n: int, **fixed) -> pd.DataFrame:
    """Bright, well-resolved galaxies with some parameters fixed."""
    p = draw_parameters(n, np.random.default_rng(0))
    p["snr"], p["psf_fwhm"], p["interaction"], p["asymmetry"] = 2000.0, 0.012, "none", 0.0
    p["companion_flux"], p["tidal_strength"], p["shells"] = 0.0, 0.0, 0
    for name, value in fixed.items():
        p[name] = value
    return p


def _fractions(params: pd.DataFrame, answer: str, volunteers: int = 40) -> np.ndarray:
    """Fraction of a question's votes for ``answer``, per galaxy (NaN when nobody was asked)."""
    probs = true_probabilities(params, SCHEMA)
    votes = simulate_votes(probs, np.full(len(params), volunteers), SCHEMA, np.random.default_rng(1))
    i = SCHEMA.answers.index(answer)
    s = SCHEMA.slices[SCHEMA.question_index[i]]
    with np.errstate(invalid="ignore"):
        return votes[:, i] / votes[:, s].sum(axis=1)


def test_votes_follow_the_tree(truth):
    votes = truth[list(SCHEMA.answers)].to_numpy()
    totals = np.stack([votes[:, s].sum(axis=1) for s in SCHEMA.slices], axis=1)
    assert np.array_equal(totals[:, 0], truth["n_volunteers"].to_numpy())
    for q, parents in enumerate(SCHEMA.parent_answers):
        if parents:
            assert np.all(totals[:, q] <= votes[:, list(parents)].sum(axis=1)), SCHEMA.questions[q].name
    # Questions after the same answer are asked of exactly the volunteers who gave it.
    no = SCHEMA.answers.index("disk-edge-on_no")
    for name in ("has-spiral-arms", "bar", "bulge-size"):
        assert np.array_equal(totals[:, SCHEMA.question_names.index(name)], votes[:, no])
    assert (totals[:, SCHEMA.question_names.index("spiral-winding")] == 0).any()  # unvisited -> 0
    assert np.all(votes >= 0) and np.all(votes == np.round(votes))


def test_true_probabilities_are_distributions(truth):
    p = truth[[f"true_p:{a}" for a in SCHEMA.answers]].to_numpy()
    assert np.all((p >= 0) & (p <= 1))
    for s in SCHEMA.slices:
        np.testing.assert_allclose(p[:, s].sum(axis=1), 1.0, atol=1e-9)


def test_volunteers_vary_around_the_mean():
    n = volunteer_counts(20000, 40, np.random.default_rng(0))
    assert 39 < n.mean() < 41 and n.std() > 5 and n.min() >= 1
    assert np.all(volunteer_counts(10, 25, np.random.default_rng(0), spread=0) == 25)
    with pytest.raises(ValueError, match="volunteers must be positive"):
        volunteer_counts(3, 0, np.random.default_rng(0))


def test_edge_on_disks_get_edge_on_votes():
    p = _params(200, kind="disk", artifact="none", inclination=88.0)
    assert np.nanmean(_fractions(p, "disk-edge-on_yes")) > 0.8
    assert np.nanmean(_fractions(_params(200, kind="disk", artifact="none", inclination=20.0), "disk-edge-on_yes")) < 0.1


def test_face_on_grand_design_spirals_get_spiral_votes():
    p = _params(200, kind="disk", artifact="none", inclination=15.0, arm_count=2, arm_strength=0.9, bulge_fraction=0.2)
    assert np.nanmean(_fractions(p, "has-spiral-arms_yes")) > 0.8
    assert np.nanmean(_fractions(p, "smooth-or-featured_featured-or-disk")) > 0.8
    two = SCHEMA.answers.index("spiral-arm-count_2")
    assert true_probabilities(p, SCHEMA)[:, SCHEMA.slices[SCHEMA.question_index[two]]].argmax(axis=1).tolist().count(1) > 180


def test_artifacts_and_ellipticals_get_their_votes():
    art = _params(200, kind="artifact", artifact="star", artifact_strength=0.8)
    assert np.nanmean(_fractions(art, "smooth-or-featured_artifact")) > 0.8
    ell = _params(200, kind="elliptical", artifact="none", arm_count=0, arm_strength=0.0, bulge_fraction=1.0, bar="none")
    assert np.nanmean(_fractions(ell, "smooth-or-featured_smooth")) > 0.8


def test_fainter_galaxies_are_harder():
    bright = _params(300, kind="disk", artifact="none", inclination=15.0, arm_count=2, arm_strength=0.9)
    faint = bright.assign(snr=15.0, psf_fwhm=0.04)
    yes = SCHEMA.answers.index("has-spiral-arms_yes")
    assert true_probabilities(faint, SCHEMA)[:, yes].mean() < true_probabilities(bright, SCHEMA)[:, yes].mean() - 0.3


def test_vote_fractions_converge_to_true_probabilities():
    params = draw_parameters(300, np.random.default_rng(5))
    probs = true_probabilities(params, SCHEMA)
    first = SCHEMA.slices[0]
    errors = []
    for volunteers in (10, 100, 2000):
        votes = simulate_votes(probs, np.full(300, volunteers), SCHEMA, np.random.default_rng(volunteers))
        errors.append(np.abs(votes[:, first] / volunteers - probs[:, first]).mean())
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.01
    # Downstream questions too, where enough volunteers reach them.
    bar = SCHEMA.slices[SCHEMA.question_names.index("bar")]
    reached = votes[:, bar].sum(axis=1)
    ok = reached > 500
    assert ok.sum() > 20
    np.testing.assert_allclose(votes[ok][:, bar] / reached[ok, None], probs[ok][:, bar], atol=0.08)


def test_votes_walk_a_dag_once_per_volunteer():
    """A question reached by two answers on one path is still asked once per volunteer."""
    from galaxymorph import Question, Schema

    dag = Schema("dag", [
        Question("first", ("a", "b")),
        Question("second", ("x", "y"), after=("first_a",)),
        Question("third", ("m", "n"), after=("first_a", "second_x")),
    ])
    probs = np.tile([0.6, 0.4, 0.7, 0.3, 0.5, 0.5], (50, 1))
    votes = simulate_votes(probs, np.full(50, 30), dag, np.random.default_rng(0))
    np.testing.assert_array_equal(votes[:, 4:6].sum(axis=1), votes[:, 0])  # everyone who said "a", once
    np.testing.assert_array_equal(votes[:, 2:4].sum(axis=1), votes[:, 0])
    assert np.all(votes[:, 0:2].sum(axis=1) == 30)


def test_render_shapes_and_per_galaxy_determinism():
    params = draw_parameters(6, np.random.default_rng(2))
    bands, rgb = render_galaxies(params, 32)
    assert bands.shape == (6, 3, 32, 32) and bands.dtype == np.float32
    assert rgb.shape == (6, 32, 32, 3) and rgb.dtype == np.uint8
    alone, alone_rgb = render_galaxies(params.iloc[[4]], 32)  # a galaxy looks the same in any batch
    np.testing.assert_allclose(alone[0], bands[4], atol=1e-5)
    assert np.abs(alone_rgb[0].astype(int) - rgb[4]).max() <= 1


def test_edge_on_disk_is_elongated_and_artifact_empty_field_is_dark():
    params = _params(2, kind="disk", artifact="none", inclination=89.0, position_angle=0.0, arm_count=0, bar="none")
    params[["bulge_fraction", "dust_lane", "field_stars", "center_x", "center_y"]] = [0.1, 0.0, 0, 0.0, 0.0]
    params.loc[1, ["kind", "artifact"]] = ["artifact", "empty"]
    bands, _ = render_galaxies(params, 48)
    r = bands[0, 1].clip(0)
    offsets = np.arange(48) - 23.5
    spread_x = (r.sum(axis=0) * offsets**2).sum() / r.sum()
    spread_y = (r.sum(axis=1) * offsets**2).sum() / r.sum()
    assert spread_x > 5 * spread_y  # light along the major (x) axis
    assert bands[1, 1].mean() < 0.05 * r.mean()


def test_catalogue_files_and_same_seed_same_bytes(tmp_path):
    a = simulate_catalogue(70, 24, tmp_path / "a", seed=7, workers=1, progress=False)
    b = simulate_catalogue(70, 24, tmp_path / "b", seed=7, workers=2, progress=False)  # two chunks, two processes
    digest = lambda d: {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*.png"))}  # noqa: E731
    assert digest(tmp_path / "a") == digest(tmp_path / "b") and len(digest(tmp_path / "a")) == 70
    assert (tmp_path / "a/catalogue.parquet").read_bytes() == (tmp_path / "b/catalogue.parquet").read_bytes()
    stored = pd.read_parquet(tmp_path / "a/catalogue.parquet")
    pd.testing.assert_frame_equal(stored, a)
    pd.testing.assert_frame_equal(a, b)
    assert set(SCHEMA.answers) <= set(stored.columns) and {f"true_p:{x}" for x in SCHEMA.answers} <= set(stored.columns)
    assert "true:inclination" in stored and stored["id_str"].is_unique
    image = Image.open(tmp_path / "a" / stored["file_loc"].iloc[0])  # relative to the catalogue's folder
    assert image.size == (24, 24) and image.mode == "RGB"
    assert not a.equals(simulate_truth(70, seed=8))


def test_fits_keeps_three_bands_and_resume(tmp_path):
    cat = simulate_catalogue(3, 32, tmp_path, image_format="fits", workers=1, progress=False)
    with fits.open(tmp_path / cat["file_loc"].iloc[0]) as hdus:
        assert hdus[0].data.shape == (3, 32, 32) and hdus[0].header["BANDS"] == "g,r,z"
        np.testing.assert_allclose(hdus[0].data, simulate(3, 32, keep_bands=True).bands[0], atol=1e-6)
    first = (tmp_path / cat["file_loc"].iloc[0]).stat().st_mtime_ns
    simulate_catalogue(3, 32, tmp_path, image_format="fits", workers=1, progress=False)  # resumes: nothing to do
    assert (tmp_path / cat["file_loc"].iloc[0]).stat().st_mtime_ns == first
    with pytest.raises(FileExistsError, match="another simulation"):
        simulate_catalogue(4, 32, tmp_path, image_format="fits", progress=False)
    jpg = simulate_catalogue(3, 32, tmp_path / "jpg", image_format="jpg", workers=1, progress=False)
    assert Image.open(tmp_path / "jpg" / jpg["file_loc"].iloc[2]).format == "JPEG"


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="image_format"):
        simulate_catalogue(2, 32, tmp_path, image_format="tiff")
    with pytest.raises(ValueError, match="n must be at least 1"):
        simulate_truth(0)


def test_parameters_round_trip_through_the_catalogue(truth):
    params = parameters_of(truth)
    assert {"kind", "inclination", "arm_count", "snr"} <= set(params.columns)
    assert set(params["kind"]) == {"elliptical", "disk", "artifact"}


def test_command_writes_catalogue_and_grid(tmp_path):
    from typer.testing import CliRunner

    from galaxymorph.cli import app

    out = tmp_path / "sim"
    args = ["simulate", "--n", "20", "--size", "32", "--out", str(out), "--workers", "1", "--grid", str(tmp_path / "g.png")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    catalogue = pd.read_parquet(out / "catalogue.parquet")
    assert len(catalogue) == 20 and all((out / f).exists() for f in catalogue["file_loc"])
    assert Image.open(tmp_path / "g.png").size[0] > 300
    bad = CliRunner().invoke(app, ["simulate", "--n", "2", "--size", "32", "--out", str(out), "--format", "tiff"])
    assert bad.exit_code != 0 and "tiff" in bad.output
