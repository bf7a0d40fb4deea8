"""BALD on hand-checkable cases, Monte Carlo against enumeration, and ``galaxymorph acquire``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from typer.testing import CliRunner

from galaxymorph import Question, Schema, get_schema
from galaxymorph.acquisition import (
    acquisition_scores,
    batch_bald,
    choose,
    expected_errors,
    joint_information,
    model_log_likelihoods,
    mutual_information,
    rank_predictions,
    sample_models,
)
from galaxymorph.cli import app
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.models import GalaxyModel, save_model
from galaxymorph.prediction import predict
from galaxymorph.representations import embed
from galaxymorph.simulate import simulate_catalogue
from galaxymorph.stats import probability_asked

YES_NO = Schema("yes-no", [Question("q", ("yes", "no"))])
THREE = Schema("three", [Question("q", ("x", "y", "z"))])
# q2 is asked after q1_a only
TREE = Schema("tree", [Question("q1", ("a", "b")), Question("q2", ("x", "y"), after=("q1_a",))])
DECALS = get_schema("gz_decals_dr5")


def _entropies(*p: float) -> float:
    """Entropy (nats) of a distribution with these probabilities."""
    return -sum(x * math.log(x) for x in p)


def _samples(*concentrations) -> np.ndarray:
    """One galaxy whose samples are the given concentration vectors: (1, answers, samples)."""
    return np.array(concentrations, dtype=np.float64).T[None]


def test_one_volunteer_and_two_samples_by_hand():
    # one vote: sample 1 says yes with 1/2, sample 2 with 3/4; the mixture with 5/8
    expected = _entropies(5 / 8, 3 / 8) - (_entropies(1 / 2, 1 / 2) + _entropies(3 / 4, 1 / 4)) / 2
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


def test_one_model_repeated_gives_no_joint_information_either():
    conc = np.repeat(np.random.default_rng(9).uniform(1.1, 30, (6, DECALS.n_answers, 1)), 4, axis=2)
    log_lik = model_log_likelihoods(conc, DECALS, models=np.arange(4))  # four models that are one
    assert np.abs(joint_information(log_lik)).max() < 1e-12  # zero, to rounding
    assert abs(joint_information(log_lik.sum(axis=0))) < 1e-12  # the six galaxies together too
    _, gains = batch_bald(conc, DECALS, np.arange(4), np.ones(6), top=3)
    assert np.abs(gains).max() < 1e-12


# four models; A and its twin A2 ask whether model 0 is right, B whether model 1 is
YES, NO = [400.0, 1.0], [1.0, 400.0]
A = _samples(YES, NO, NO, NO)
B = _samples(NO, YES, NO, NO)


def test_batch_bald_takes_a_galaxy_once_where_top_bald_takes_its_twin():
    conc = np.concatenate([A, A, B])
    scores = acquisition_scores(conc, YES_NO)["score"].to_numpy()
    assert scores[0] == scores[1] == pytest.approx(scores[2], abs=1e-6)  # each alone: log 4 - 3/4 log 3 nats
    assert choose("bald", scores, 2)["row"].tolist() == [0, 1]
    rows, gains = batch_bald(conc, YES_NO, np.arange(4), scores, top=2)
    assert rows.tolist() == [0, 2]  # A tells 0 from the rest; then B tells 1 from 2 and 3: more than A again
    assert gains == pytest.approx([_entropies(1 / 4, 3 / 4), _entropies(1 / 4, 1 / 4, 1 / 2) - _entropies(1 / 4, 3 / 4)],
                                  abs=0.02)


def test_batch_bald_counts_the_votes_already_queued():
    rows, _ = batch_bald(np.concatenate([A, B]), YES_NO, np.arange(4), np.array([1.0, 0.9]), top=1, queued=A)
    assert rows.tolist() == [1]  # A's twin is queued: its own votes would add nothing


def test_batch_bald_refuses_one_models_dropout_samples():
    with pytest.raises(ValueError, match="needs the samples of several models"):
        batch_bald(np.concatenate([A, B]), YES_NO, np.zeros(4), np.ones(2), top=1)


def test_two_clusters_of_equal_score_are_both_picked():
    rng = np.random.default_rng(10)
    embeddings = np.concatenate([rng.normal(0, 0.01, (20, 3)), rng.normal(5, 0.01, (20, 3))])
    scores = np.ones(40)
    assert choose("bald", scores, 2)["row"].tolist() == [0, 1]  # both from the first cluster
    picked = choose("cluster-bald", scores, 2, embeddings=embeddings)
    assert sorted(picked["row"] // 20) == [0, 1] and picked["cluster"].nunique() == 2
    scores[20:] = 0.9  # the second cluster scores lower: still one of it, its best
    scores[33] = 0.95
    picked = choose("cluster-bald", scores, 2, embeddings=embeddings)
    assert picked["row"].tolist() == [0, 33]


def test_random_choice_is_seeded_and_never_repeats():
    first = choose("random", np.zeros(50), 20, seed=3)["row"]
    assert first.tolist() == choose("random", np.zeros(50), 20, seed=3)["row"].tolist() and first.is_unique
    assert first.tolist() != choose("random", np.zeros(50), 20, seed=4)["row"].tolist()


def test_samples_belong_to_models_as_predict_stacks_them():
    made_by = {"model_sha256": ["a", "b", "c"], "samples": 2, "tta": True}
    assert sample_models(made_by, 48).tolist() == [0, 0, 1, 1, 2, 2] * 8  # 8 views, each 3 models x 2 passes
    assert sample_models({"model_sha256": "a", "samples": 5}, 5).tolist() == [0] * 5
    with pytest.raises(ValueError, match="do not split into 3 model"):
        sample_models(made_by, 10)


def test_expected_error_of_one_dirichlet_shrinks_by_its_conjugate_update():
    # Beta(a, b) then n votes: E[Var(p | votes)] = Var(p) A / (A + n), exactly
    conc = np.array([[[2.0], [6.0]], [[30.0], [10.0]]])
    errors = expected_errors(conc, YES_NO, volunteers=12)
    np.testing.assert_allclose(errors["error_now"], np.sqrt([2 * 6 / (64 * 9), 30 * 10 / (1600 * 41)]), rtol=1e-12)
    np.testing.assert_allclose(errors["error_after"], errors["error_now"] * np.sqrt([8 / 20, 40 / 52]), rtol=1e-9)
    unchanged = expected_errors(conc, YES_NO, volunteers=0)
    np.testing.assert_array_equal(unchanged["error_after"], unchanged["error_now"])


def test_votes_that_tell_confident_samples_apart_remove_their_disagreement():
    errors = expected_errors(_samples([400, 1], [1, 400]), YES_NO, volunteers=40)
    assert errors["error_now"][0] == pytest.approx(0.5, abs=0.01)  # p is 0 or 1: as far from 1/2 as can be
    assert errors["error_after"][0] < 0.02


def test_expected_error_sampled_agrees_with_enumerated():
    conc = np.random.default_rng(11).uniform(1.1, 20, (100, 3, 5))
    exact = expected_errors(conc, THREE, volunteers=40, draws=861)["error_after"]
    sampled = expected_errors(conc, THREE, volunteers=40, draws=860, seed=4)["error_after"]
    np.testing.assert_allclose(sampled, exact, rtol=0.05)
    assert not np.array_equal(sampled, exact)


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
    save_model(GalaxyModel("gz_decals_dr5", arch="test_resnet", preprocessing=prep.to_dict()), w / "run2" / "best")
    predict([w / "run", w / "run2"], w / "ensemble.parquet", catalogue=w / "sim" / "catalogue.parquet", samples=2,
            progress=False)
    embed(w / "run", w / "emb.parquet", catalogue=w / "sim" / "catalogue.parquet", progress=False)
    return w


def test_the_commands_strategies_are_the_librarys():
    """The command writes them as literals (importing the library would slow every command's start)."""
    from galaxymorph.acquisition import DEFAULT_STRATEGY, STRATEGIES

    option = next(p for p in typer.main.get_command(app).commands["acquire"].params if p.name == "strategy")
    assert option.default == DEFAULT_STRATEGY
    assert all(name in option.help for name in STRATEGIES)


def _acquire(world, out, *extra):
    args = ["acquire", "--predictions", str(world / "preds.parquet"), "--top", "3", "--out", str(out), *map(str, extra)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return pd.read_csv(out, dtype={"id_str": str})


def test_acquire_says_why_each_galaxy_was_chosen(world, tmp_path):
    clustered = _acquire(world, tmp_path / "c.csv", "--strategy", "cluster-bald", "--embeddings", world / "emb.parquet")
    assert clustered["cluster"].nunique() == 3 and clustered["score"].is_monotonic_decreasing
    batch = _acquire(world, tmp_path / "b.csv", "--strategy", "batch-bald", "--predictions", world / "ensemble.parquet")
    assert (batch["gain"] >= 0).all() and batch["gain"].iloc[0] > 0
    drawn = _acquire(world, tmp_path / "r.csv")  # the default: random
    assert "cluster" not in drawn and "gain" not in drawn
    assert (drawn["error_after"] < drawn["error_now"]).all()


def test_acquire_leaves_queued_galaxies_out_and_says_what_their_votes_will_bring(world, tmp_path):
    first = _acquire(world, tmp_path / "q.csv", "--strategy", "bald")
    second = _acquire(world, tmp_path / "next.csv", "--strategy", "bald", "--queued", tmp_path / "q.csv")
    assert not set(first["id_str"]) & set(second["id_str"])
    report = pd.read_csv(tmp_path / "next.queued.csv", dtype={"id_str": str})
    assert sorted(report["id_str"]) == sorted(first["id_str"])
    np.testing.assert_allclose(report.set_index("id_str").loc[first["id_str"], ["error_now", "error_after"]],
                               first[["error_now", "error_after"]], rtol=1e-3)  # sampled questions: other draws


def test_acquire_writes_the_most_informative_galaxies_and_their_grid(world, tmp_path):
    args = ["acquire", "--predictions", str(world / "preds.parquet"), "--top", "5", "--out", str(tmp_path / "q.csv"),
            "--grid", str(tmp_path / "q.png"), "--questions", "smooth-or-featured,bar", "--strategy", "bald"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    queue = pd.read_csv(tmp_path / "q.csv")
    assert list(queue.columns) == ["rank", "id_str", "file_loc", "score", "error_now", "error_after",
                                   "mi:smooth-or-featured", "mi:bar"]
    assert list(queue["rank"]) == [1, 2, 3, 4, 5] and queue["score"].is_monotonic_decreasing
    everyone, _ = rank_predictions(world / "preds.parquet", 12, questions=["smooth-or-featured", "bar"], strategy="bald")
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
    expected, _ = rank_predictions(world / "preds.parquet", 12)
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
