"""BALD on hand-checkable cases, Monte Carlo against enumeration, and ``galaxymorph acquire``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from galaxymorph import Question, Schema, get_schema
from galaxymorph.acquisition import (
    acquisition_scores,
    mutual_information,
    rank_predictions,
)
from galaxymorph.cli import app
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.models import GalaxyModel, save_model
from galaxymorph.predict import predict
from galaxymorph.simulate import simulate_catalogue
from galaxymorph.stats import probability_asked

YES_NO = Schema("yes-no", [Question("q", ("yes", "no"))])
THREE = Schema("three", [Question("q", ("x", "y", "z"))])
# q2 is asked after q1_a only
TREE = Schema("tree", [Question("q1", ("a", "b")), Question("q2", ("x", "y"), after=("q1_a",))])
DECALS = get_schema("gz_decals_dr5")


def _entropy(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def _samples(*concentrations) -> np.ndarray:
    """One galaxy whose samples are the given concentration vectors: (1, answers, samples)."""
    return np.array(concentrations, dtype=np.float64).T[None]


def test_one_volunteer_and_two_samples_by_hand():
    # one vote: sample 1 says yes with 1/2, sample 2 with 3/4; the mixture with 5/8
    expected = _entropy(5 / 8) - (_entropy(1 / 2) + _entropy(3 / 4)) / 2
    assert mutual_information(_samples([1, 1], [3, 1]), YES_NO, volunteers=1)[0, 0] == pytest.approx(expected, rel=1e-12)


def test_identical_samples_carry_no_information_enumerated_or_sampled():
    rng = np.random.default_rng(1)
    one = rng.uniform(1.1, 30, (20, DECALS.n_answers, 1))
    information = mutual_information(np.repeat(one, 5, axis=2), DECALS)  # spiral-arm-count (6 answers) is sampled
    assert np.all(information == 0)


def test_two_confident_disagreeing_samples_give_the_most_information():
    cases = {
        "confident, disagreeing": ([400, 1], [1, 400]),
        "less confident, disagreeing": ([8, 2], [2, 8]),
        "confident, agreeing": ([400, 1], [400, 1]),
        "both unsure, agreeing": ([1.1, 1.1], [1.1, 1.1]),
        "one unsure": ([400, 1], [1.1, 1.1]),
    }
    conc = np.concatenate([_samples(*pair) for pair in cases.values()])
    information = mutual_information(conc, YES_NO, volunteers=40)[:, 0]
    assert information[0] == pytest.approx(math.log(2), abs=1e-6)  # the most two samples can disagree: one bit
    assert information[0] > information[1:].max()
    assert information[1] > information[4] > information[2] >= 0


def test_never_negative_and_at_most_log_samples():
    rng = np.random.default_rng(2)
    conc = rng.uniform(1.01, 50, (200, DECALS.n_answers, 4)) ** rng.uniform(0.2, 2, (200, 1, 1))
    information = mutual_information(conc, DECALS)
    assert np.all(information >= 0) and np.all(information <= math.log(4) + 1e-12)
    assert information.max() > 0.1


def test_monte_carlo_agrees_with_enumeration_within_its_standard_error():
    # 40 volunteers on three answers: 861 vote splits, enumerated with draws >= 861, sampled below
    rng = np.random.default_rng(3)
    conc = rng.uniform(1.1, 20, (300, 3, 5))
    exact = mutual_information(conc, THREE, volunteers=40, draws=861)[:, 0]
    sampled = mutual_information(conc, THREE, volunteers=40, draws=860, seed=4)[:, 0]
    bound = math.log(5) / (2 * math.sqrt(860))  # standard error bound of each galaxy's estimate (module docstring)
    assert np.abs(sampled - exact).max() < 4 * bound
    assert abs((sampled - exact).mean()) < 4 * bound / math.sqrt(len(conc))  # no bias beyond the noise
    assert not np.array_equal(sampled, exact)  # the two paths were both taken


def test_monte_carlo_is_seeded():
    conc = np.random.default_rng(5).uniform(1.1, 20, (10, DECALS.n_answers, 3))
    np.testing.assert_array_equal(mutual_information(conc, DECALS, seed=7), mutual_information(conc, DECALS, seed=7))


def test_a_question_reached_by_half_the_volunteers_gets_half_the_votes():
    q2 = np.array([[3.0, 1.0, 1.0, 3.0]]).T  # two samples disagreeing about q2
    half_asked = np.concatenate([np.full((2, 2), 5.0), q2.reshape(2, 2)])[None]  # q1_a: 1/2 in both samples
    on_its_own = mutual_information(q2.reshape(1, 2, 2), YES_NO, volunteers=3)  # round(6 * 1/2) = 3 volunteers
    np.testing.assert_allclose(mutual_information(half_asked, TREE, volunteers=6)[0, 1], on_its_own[0, 0], rtol=1e-12)


def test_score_weights_questions_by_the_probability_they_are_asked():
    conc = np.random.default_rng(6).uniform(1.1, 20, (30, DECALS.n_answers, 5))
    scores = acquisition_scores(conc, DECALS)
    information = mutual_information(conc, DECALS)
    np.testing.assert_allclose(scores["score"], (probability_asked(conc, DECALS) * information).sum(axis=1))
    only = acquisition_scores(conc, DECALS, questions=["bar", "merging"])
    assert list(only.columns) == ["score", "mi:bar", "mi:merging"]
    np.testing.assert_allclose(only["mi:bar"], scores["mi:bar"])
    with pytest.raises(KeyError, match="unknown question 'barr'; closest: 'bar'"):
        acquisition_scores(conc, DECALS, questions=["barr"])


def test_one_sample_or_no_volunteers_give_zero():
    conc = np.random.default_rng(8).uniform(1.1, 20, (5, DECALS.n_answers, 3))
    assert not mutual_information(conc[..., :1], DECALS).any()
    assert not mutual_information(conc, DECALS, volunteers=0).any()


# ------------------------------------------------------------------------------ the command
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Predictions of a random tiny model for 12 simulated galaxies, with images on disk."""
    w = tmp_path_factory.mktemp("acquire")
    simulate_catalogue(12, 32, w / "sim", workers=1, progress=False)
    torch.manual_seed(0)
    prep = Preprocessing(stored_size=20, image_size=16, channels=3)
    save_model(GalaxyModel("gz_decals_dr5", arch="test_resnet", preprocessing=prep.to_dict()), w / "run" / "best")
    predict(w / "run", w / "preds.parquet", catalogue=w / "sim" / "catalogue.parquet", samples=4, progress=False)
    return w


def test_acquire_writes_the_most_informative_galaxies_and_their_grid(world, tmp_path):
    args = ["acquire", "--predictions", str(world / "preds.parquet"), "--top", "5", "--out", str(tmp_path / "q.csv"),
            "--grid", str(tmp_path / "q.png"), "--questions", "smooth-or-featured,bar"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    queue = pd.read_csv(tmp_path / "q.csv")
    assert list(queue.columns) == ["rank", "id_str", "file_loc", "score", "mi:smooth-or-featured", "mi:bar"]
    assert list(queue["rank"]) == [1, 2, 3, 4, 5] and queue["score"].is_monotonic_decreasing
    everyone = rank_predictions(world / "preds.parquet", 12, questions=["smooth-or-featured", "bar"])
    assert queue["id_str"].tolist() == everyone["id_str"].head(5).tolist()
    assert queue["score"].iloc[-1] >= everyone["score"].iloc[5]
    assert (tmp_path / "q.png").stat().st_size > 0


@pytest.mark.parametrize("extra, culprit", [
    (["--questions", "smooth-or-featured,barr"], "unknown question 'barr'; closest: 'bar'"),
    (["--top", "0"], "--top"),
    (["--predictions", "{w}/sim/catalogue.parquet"], "not a galaxymorph predictions file"),
    (["--predictions", "{w}/missing.parquet"], "missing.parquet"),
])
def test_acquire_refuses_bad_input_in_one_line(world, tmp_path, extra, culprit):
    args = ["acquire", "--predictions", str(world / "preds.parquet"), "--top", "3", "--out", str(tmp_path / "q.csv")]
    args += [x.format(w=world) for x in extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert culprit.format(w=world) in " ".join(result.output.replace("│", " ").split())
    assert not (tmp_path / "q.csv").exists()


def test_report_gallery_carries_each_galaxys_score_to_sort_by(world, tmp_path):
    from galaxymorph.report import build_report

    page = build_report(world / "preds.parquet", tmp_path / "r.html").read_text()
    data = json.loads(page.split('id="galaxy-data">', 1)[1].split("</script>", 1)[0])
    shown = {g["id"]: g["information"] for g in data["galaxies"]}
    expected = rank_predictions(world / "preds.parquet", 12)
    np.testing.assert_allclose([shown[i] for i in expected["id_str"]], expected["score"], atol=1e-4)
    assert '<option value="informative">' in page and 'key === "informative"' in page


def test_acquire_from_shard_predictions_takes_the_images_from_the_catalogue(world, tmp_path):
    """Shards carry no file_loc: without --catalog the queue could not be shown to volunteers."""
    from galaxymorph.data.shards import write_shards

    prep = Preprocessing(stored_size=20, image_size=16, channels=3)
    write_shards(world / "sim" / "catalogue.parquet", DECALS, tmp_path / "shards", prep, 0.0, 0.0, workers=1,
                 progress=False)
    predict(world / "run", tmp_path / "p.parquet", shards=tmp_path / "shards", samples=4, progress=False)
    args = ["acquire", "--predictions", str(tmp_path / "p.parquet"), "--top", "4", "--out", str(tmp_path / "q.csv")]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert pd.read_csv(tmp_path / "q.csv")["file_loc"].isna().all()
    args[-1] = str(tmp_path / "q2.csv")
    result = CliRunner().invoke(app, [*args, "--catalog", str(world / "sim" / "catalogue.parquet")])
    assert result.exit_code == 0, result.output
    queue = pd.read_csv(tmp_path / "q2.csv")
    catalogue = pd.read_parquet(world / "sim" / "catalogue.parquet").set_index("id_str")
    expected = [str((world / "sim" / catalogue.loc[i, "file_loc"]).resolve()) for i in queue["id_str"]]
    assert [str(Path(f).resolve()) for f in queue["file_loc"]] == expected
