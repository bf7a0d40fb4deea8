"""Evaluation metrics on cases small enough to check by hand, and calibration on a calibrated model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from galaxymorph import get_schema
from galaxymorph.evaluation import evaluate, evaluate_arrays
from galaxymorph.likelihood import predictive_pit
from galaxymorph.schema import Question, Schema

TWO = Schema("two", [Question("shape", ("round", "disk")), Question("bar", ("yes", "no"), after=("shape_disk",))])


def test_errors_accuracy_and_constant_baseline_by_hand():
    counts = np.array([[3.0, 1.0, 0.0, 0.0], [1.0, 3.0, 2.0, 2.0]])
    conc = np.array([[30.0, 10.0, 5.0, 5.0], [10.0, 30.0, 5.0, 5.0]])  # predicted fractions = observed
    truth = np.array([[0.5, 0.5, 0.5, 0.5], [0.25, 0.75, 0.5, 0.5]])
    result = evaluate_arrays(conc, counts, TWO, truth=truth, min_votes=4, confident=0.7)
    shape = result["questions"]["shape"]
    assert shape["model"]["mae"] == pytest.approx(0.0) and shape["model"]["n"] == 4
    assert shape["constant"]["mae"] == pytest.approx(0.25)  # mean fraction 0.5 vs 0.75/0.25
    assert shape["confident"] == {"galaxies": 2, "accuracy": 1.0, "confusion": [[1, 0], [0, 1]],
                                  "answers": ["shape_round", "shape_disk"]}
    bar = result["questions"]["bar"]
    assert bar["galaxies"] == 1 and bar["confident"]["galaxies"] == 0  # 2 of 4 votes is not confident
    # truth: only where the question has votes; the observed fractions' error is the noise floor
    assert shape["truth"]["noise_floor"]["mae"] == pytest.approx(0.125)  # (0.25 + 0.25 + 0 + 0) / 4
    assert shape["truth"]["model"]["mae"] == pytest.approx(0.125)
    assert bar["truth"]["model"]["n"] == 2
    assert result["overall"]["model"]["mae"] == pytest.approx(0.0)


def test_kaggle_rmse_is_reported_for_gz2_and_zero_for_a_perfect_prediction():
    schema = get_schema("gz2")
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 20, (5, schema.n_answers)).astype(float)
    fractions = counts / (counts @ schema.answer_matrix)[:, schema.question_index]
    result = evaluate_arrays(fractions * 1e6, counts, schema)
    assert result["overall"]["kaggle_rmse"]["model"] == pytest.approx(0.0, abs=1e-6)
    assert result["overall"]["kaggle_rmse"]["constant"] > 0.01


def _calibrated(n: int, seed: int = 0):
    """Votes drawn from the model's own posterior predictive: coverage must equal the nominal level."""
    rng = np.random.default_rng(seed)
    conc = rng.uniform(1, 20, (n, 4, 1)).repeat(3, axis=2)
    p = np.concatenate([rng.dirichlet(conc[:, sl, 0][i]) for i in range(n) for sl in TWO.slices]).reshape(n, 4)
    counts = np.concatenate([rng.multinomial(25, p[i, sl]) for i in range(n) for sl in TWO.slices]).reshape(n, 4)
    return conc, counts.astype(float), p


def test_calibrated_predictions_cover_at_the_nominal_rate():
    conc, counts, p = _calibrated(1500)
    pit = predictive_pit(conc, counts, TWO)
    assert np.nanmin(pit) >= 0 and np.nanmax(pit) <= 1
    result = evaluate_arrays(conc, counts, TWO, truth=p, levels=(0.5, 0.9))
    for level in ("0.5", "0.9"):
        assert result["overall"]["coverage"][level] == pytest.approx(float(level), abs=0.03)
        assert result["questions"]["shape"]["truth"]["coverage"][level] == pytest.approx(float(level), abs=0.03)
    # an overconfident model (concentrations x 20) covers far less
    sharp = evaluate_arrays(conc * 20, counts, TWO, levels=(0.9,))
    assert sharp["overall"]["coverage"]["0.9"] < 0.8


def test_evaluate_files_writes_json_and_plots(tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    from galaxymorph.prediction.layout import arrow_schema, posterior_table

    conc, counts, p = _calibrated(50)
    ids = [f"g{i}" for i in range(50)]
    layout = arrow_schema(TWO, 3, {})
    pq.write_table(posterior_table(ids, conc, [None] * 50, TWO, layout), tmp_path / "preds.parquet")
    catalogue = pd.DataFrame(counts, columns=TWO.answers).assign(id_str=ids)
    for i, a in enumerate(TWO.answers):
        catalogue[f"true_p:{a}"] = p[:, i]
    result = evaluate(tmp_path / "preds.parquet", catalogue, out=tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert saved["galaxies"] == 50 and "truth" in saved["overall"]
    assert set(result["plots"]) == {"calibration.png", "reliability.png", "confusion.png", "predicted_vs_observed.png",
                                    "predicted_vs_truth.png"}
    assert all((tmp_path / "eval" / name).stat().st_size > 1000 for name in result["plots"])
    with pytest.raises(ValueError, match="no vote column 'bar_no'"):
        evaluate(tmp_path / "preds.parquet", catalogue.drop(columns="bar_no"))


def test_a_negative_min_votes_is_refused_before_any_work(tmp_path):
    conc, counts, _ = _calibrated(5)
    with pytest.raises(ValueError, match=r"min_votes=-1 must be >= 0: .* \(--min-votes\)"):
        evaluate_arrays(conc, counts, TWO, min_votes=-1)
    with pytest.raises(ValueError, match="min_votes=-1 must be >= 0"):  # before either file is read
        evaluate(tmp_path / "missing.parquet", tmp_path / "missing.csv", min_votes=-1)
    assert evaluate_arrays(conc, counts, TWO, min_votes=0)["min_votes"] == 0


def test_the_evaluation_records_the_predictions_it_was_made_from(tmp_path):
    import hashlib

    from evaluate_cases import write_case

    predictions, catalogue = write_case(tmp_path, "two")
    catalogue.to_csv(tmp_path / "catalogue.csv", index=False)
    result = evaluate(predictions, tmp_path / "catalogue.csv", out=tmp_path / "eval")
    made_from = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["made_from"]
    assert made_from == result["made_from"]
    assert made_from["predictions"] == {"path": str(predictions.resolve()), "rows": 300, "made_by": None,
                                        "sha256": hashlib.sha256(predictions.read_bytes()).hexdigest()}
    assert made_from["catalogue"] == str((tmp_path / "catalogue.csv").resolve())
    assert "made_from" not in evaluate(predictions, catalogue)  # a result that is not written records nothing


def test_concentrations_read_in_batches_equal_the_whole_frames(tmp_path):
    import pyarrow.parquet as pq
    from evaluate_cases import write_case

    from galaxymorph.prediction import read_concentrations, read_predictions

    predictions, _ = write_case(tmp_path, "two")
    whole = read_concentrations(read_predictions(predictions)[0], TWO)
    batches = [read_concentrations(b, TWO) for b in pq.ParquetFile(predictions).iter_batches(batch_size=7)]
    np.testing.assert_array_equal(np.concatenate(batches), whole)
    assert whole.shape == (300, TWO.n_answers, 3) and whole.dtype == np.float64


# Per-question vote fractions of one galaxy, in gz2 order (questions 1 ... 11 of the Kaggle tree).
GZ2_FRACTIONS = [(0.6, 0.35, 0.05), (0.3, 0.7), (0.2, 0.8), (0.55, 0.45), (0.1, 0.4, 0.3, 0.2), (0.15, 0.85),
                 (0.5, 0.3, 0.2), (0.1, 0.1, 0.2, 0.1, 0.2, 0.2, 0.1), (0.5, 0.25, 0.25), (0.3, 0.4, 0.3),
                 (0.1, 0.5, 0.1, 0.1, 0.1, 0.1)]


def _write_predictions(path, ids, fractions, schema) -> np.ndarray:
    """A predictions file whose expected fractions are ``fractions``; returns its concentrations (G, A, 1)."""
    import pyarrow.parquet as pq

    from galaxymorph.prediction.layout import arrow_schema, posterior_table

    conc = (1e-3 + 1e6 * np.asarray(fractions))[..., None]
    pq.write_table(posterior_table(ids, conc, [None] * len(ids), schema, arrow_schema(schema, 1, {})), path)
    return conc


def test_kaggle_rmse_scores_the_kaggle_fractions_and_skips_what_was_not_provided(tmp_path):
    import pandas as pd

    from galaxymorph.data.kaggle_gz2 import kaggle_to_catalogue
    from galaxymorph.kaggle import kaggle_columns, kaggle_rmse, to_kaggle
    from galaxymorph.stats import expected_fractions, vote_fractions

    schema = get_schema("gz2")
    fractions = np.tile(np.concatenate(GZ2_FRACTIONS), (2, 1))
    cumulative = to_kaggle(fractions, schema)
    # the second galaxy has only questions 1, 2, 6, 7 and 8, like 4,000 of the real Kaggle galaxies
    cumulative[1, np.isin(schema.question_index, [2, 3, 4, 8, 9, 10])] = np.nan
    labels = pd.DataFrame(cumulative, columns=list(kaggle_columns(schema))).assign(GalaxyID=[100, 101])
    labels.to_csv(tmp_path / "labels.csv", index=False)
    (tmp_path / "images").mkdir()  # the conversion checks the folder exists, not the images in it
    catalogue = kaggle_to_catalogue(tmp_path / "labels.csv", tmp_path / "images", volunteers=40)
    # 40 volunteers: e.g. 14 answer "edge-on?", whose 0.3 / 0.7 round to 4 / 10 votes
    assert catalogue.loc[0, "disk-edge-on_yes"] == 4

    # the prediction is right except for "how rounded?" (0.5, 0.4, 0.1 against 0.5, 0.3, 0.2), 0.6 of
    # volunteers reach it: two cumulative errors of 0.06 per galaxy, over 37 + 17 provided values
    predicted = fractions.copy()
    predicted[:, schema.slices[6]] = (0.5, 0.4, 0.1)
    conc = _write_predictions(tmp_path / "preds.parquet", ["100", "101"], predicted, schema)
    benchmark = kaggle_rmse(to_kaggle(expected_fractions(conc, schema), schema), cumulative)
    result = evaluate(tmp_path / "preds.parquet", catalogue)["overall"]["kaggle_rmse"]
    assert result["model"] == pytest.approx(benchmark, rel=1e-6)
    assert result["model"] == pytest.approx(np.sqrt(4 * 0.06 ** 2 / 54), rel=1e-6)
    assert result["constant"] == pytest.approx(0.0, abs=1e-12)  # both galaxies have the same provided values

    # without the Kaggle columns the targets come from the counts, still skipping what was not provided:
    # predicting the counts' own fractions scores 0
    counts = catalogue[list(schema.answers)].to_numpy(np.float64)
    own = np.nan_to_num(vote_fractions(np.nan_to_num(counts), schema), nan=0.5)  # any value where NaN
    _write_predictions(tmp_path / "own.parquet", ["100", "101"], own, schema)
    votes_only = catalogue.drop(columns=[c for c in catalogue.columns if c.startswith("kaggle:")])
    assert evaluate(tmp_path / "own.parquet", votes_only)["overall"]["kaggle_rmse"]["model"] == pytest.approx(0.0, abs=1e-6)


def _assert_same(actual, expected, path="result"):
    """Equal structure; numbers equal to 1e-9 relative (NaN equals NaN)."""
    if isinstance(expected, dict):
        assert set(actual) == set(expected), path
        for key in expected:
            _assert_same(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected)):
            _assert_same(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-15, nan_ok=True), path
    else:
        assert actual == expected, path


@pytest.mark.parametrize("case", ["two", "gz2"])
@pytest.mark.parametrize("batch_rows", [7, 64, 100_000])
def test_batched_evaluation_equals_the_recorded_in_memory_one(tmp_path, case, batch_rows):
    # the reference was written by the in-memory evaluate before batching: every metric,
    # the PIT's random numbers included, must be the same whatever the batch size
    from evaluate_cases import REFERENCE, write_case

    predictions, catalogue = write_case(tmp_path, case)
    expected = json.loads(REFERENCE.read_text())[case]
    _assert_same(evaluate(predictions, catalogue, batch_rows=batch_rows), expected)


SCALES = {"shape": 0.5, "bar": 4.0}  # powers of two: float32 concentrations scaled and unscaled exactly


def _calibration_part(result):
    """What evaluate reports before calibration: coverage and NLL, overall and per question."""
    return {"overall": {k: result["overall"][k] for k in ("coverage", "nll_per_galaxy")},
            "questions": {q: {k: e[k] for k in ("galaxies", "nll", "coverage")} for q, e in result["questions"].items()}}


def test_evaluate_arrays_does_not_depend_on_the_batch_size():
    conc, counts, p = _calibrated(300)
    whole = evaluate_arrays(conc, counts, TWO, truth=p)
    _assert_same(evaluate_arrays(conc, counts, TWO, truth=p, batch_rows=13), whole)
    scaled = evaluate_arrays(conc * 2, counts, TWO, truth=p, scales={"shape": 2.0, "bar": 2.0})
    _assert_same(evaluate_arrays(conc * 2, counts, TWO, truth=p, batch_rows=13, scales={"shape": 2.0, "bar": 2.0}),
                 scaled)
    _assert_same(scaled["uncalibrated"], _calibration_part(whole))


@pytest.mark.parametrize("batch_rows", [7, 100_000])
def test_a_file_with_calibration_scales_is_also_evaluated_before_them(tmp_path, batch_rows):
    from evaluate_cases import REFERENCE, write_case

    calibrated, catalogue = write_case(tmp_path, "two", SCALES)
    result = evaluate(calibrated, catalogue, batch_rows=batch_rows)
    # before: what the raw concentrations score (the recorded reference), after: what the file scored unrecorded
    raw = json.loads(REFERENCE.read_text())["two"]
    assert result.pop("calibration_scales") == SCALES
    _assert_same(result.pop("uncalibrated"), _calibration_part(raw))
    (tmp_path / "unrecorded").mkdir()
    unrecorded, _ = write_case(tmp_path / "unrecorded", "two", SCALES, recorded=False)
    _assert_same(result, evaluate(unrecorded, catalogue))  # no "uncalibrated" without scales
    assert result["overall"]["coverage"]["0.9"] != pytest.approx(raw["overall"]["coverage"]["0.9"])


def test_the_command_prints_the_coverage_before_and_after_calibration(tmp_path):
    from evaluate_cases import write_case
    from typer.testing import CliRunner

    from galaxymorph.cli import app

    predictions, catalogue = write_case(tmp_path, "two", SCALES)
    catalogue.to_csv(tmp_path / "catalogue.csv", index=False)
    printed = CliRunner().invoke(app, ["evaluate", "--predictions", str(predictions),
                                       "--catalog", str(tmp_path / "catalogue.csv")]).output
    result = evaluate(predictions, catalogue)
    before, after = result["uncalibrated"]["overall"]["coverage"], result["overall"]["coverage"]
    assert (f"90% interval coverage {before['0.9']:.3f} -> {after['0.9']:.3f}, "
            f"50% {before['0.5']:.3f} -> {after['0.5']:.3f} (calibrated)") in " ".join(printed.split())


MEMORY_BUDGET_MB = 700  # measured: 526 MiB above the imports for evaluate, 206 for report; 1912 and 937 before batching


@pytest.mark.slow
def test_evaluate_and_report_of_a_million_rows_stay_within_a_fixed_memory_budget(tmp_path):
    # each in a fresh interpreter, so that its peak RSS is its own (python -m benchmarks evaluate_memory)
    from pathlib import Path

    import galaxymorph
    from benchmarks._shared import write_catalogue, write_predictions
    from benchmarks.evaluate_memory import run

    predictions = write_predictions(tmp_path / "preds.parquet", 1_000_000)
    catalogue = write_catalogue(tmp_path / "catalogue.parquet", 1_000_000)
    src = str(Path(galaxymorph.__file__).parents[1])
    for task in ("evaluate", "report"):
        measured = run(src, task, predictions, catalogue, tmp_path / "eval")
        assert measured["peak_mb"] - measured["base_mb"] < MEMORY_BUDGET_MB, measured
    saved = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert saved["galaxies"] == 1_000_000 and saved["unmatched_predictions"] == 0
    assert (tmp_path / "eval" / "report.html").stat().st_size > 10_000
