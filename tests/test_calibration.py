"""Post-hoc calibration: a scale per question that keeps the fractions and fixes the spread; a temperature."""

from __future__ import annotations

import numpy as np
import pytest

from galaxymorph.calibration import fit_scales, fit_temperature, scale_concentrations
from galaxymorph.schema import Question, Schema
from galaxymorph.stats import expected_fractions

SCHEMA = Schema("two", [Question("shape", ("round", "disk")), Question("bar", ("yes", "no", "maybe"), after=("shape_disk",))])


def _votes(true_conc: np.ndarray, volunteers: int, rng: np.random.Generator) -> np.ndarray:
    """Votes drawn from the Dirichlet-Multinomial with these concentrations (every question asked of everyone)."""
    counts = []
    for s in SCHEMA.slices:
        p = np.stack([rng.dirichlet(a) for a in true_conc[:, s]])
        counts.append(np.stack([rng.multinomial(volunteers, q) for q in p]))
    return np.concatenate(counts, axis=1).astype(float)


def test_scaling_keeps_every_expected_fraction_and_touches_only_its_question():
    conc = np.random.default_rng(0).uniform(1, 9, (4, SCHEMA.n_answers, 3))
    scaled = scale_concentrations(conc, SCHEMA, {"bar": 0.5})
    np.testing.assert_allclose(expected_fractions(scaled, SCHEMA), expected_fractions(conc, SCHEMA))
    np.testing.assert_array_equal(scaled[:, :2], conc[:, :2])
    np.testing.assert_allclose(scaled[:, 2:], conc[:, 2:] * 0.5)


def test_posteriors_four_times_too_confident_get_a_scale_near_a_quarter():
    rng = np.random.default_rng(1)
    true = rng.uniform(1, 6, (3000, SCHEMA.n_answers))
    counts = _votes(true, 30, rng)
    scales = fit_scales(true * 4, counts, SCHEMA)  # the right means, concentrations 4x too large
    assert scales["shape"] == pytest.approx(0.25, rel=0.15) and scales["bar"] == pytest.approx(0.25, rel=0.15)
    assert fit_scales(true, counts, SCHEMA)["bar"] == pytest.approx(1.0, rel=0.15)  # calibrated: left alone


def test_a_question_nobody_answered_keeps_scale_one():
    rng = np.random.default_rng(2)
    true = rng.uniform(1, 6, (50, SCHEMA.n_answers))
    counts = _votes(true, 10, rng)
    counts[:, 2:] = 0
    assert fit_scales(true, counts, SCHEMA)["bar"] == 1.0


def test_a_finished_run_is_calibrated_on_its_validation_split_and_predicts_calibrated(tmp_path):
    import json

    import torch
    from support import TOY_SCHEMA, ToyDataModule, toy_config

    from galaxymorph.models import load_model
    from galaxymorph.training import train

    best = train(toy_config(tmp_path / "run", epochs=2), datamodule=ToyDataModule(n=48))
    scales = json.loads((best / "config.json").read_text())["calibration"]
    assert set(scales) == set(TOY_SCHEMA.question_names) and all(0.05 <= s <= 20 for s in scales.values()), scales
    model = load_model(best).eval()
    raw = load_model(best).eval()
    raw.set_calibration(None)  # what a model saved before calibration does
    features = model.features(torch.rand(3, 3, 32, 32))
    expected = raw.sample(features, 1)[..., 0] * torch.tensor([scales["shape"]] * 2 + [scales["bar"]] * 2)
    torch.testing.assert_close(model.sample(features, 1)[..., 0], expected)
    unscaled = train(toy_config(tmp_path / "plain", epochs=1, calibrate=False), datamodule=ToyDataModule(n=24))
    assert json.loads((unscaled / "config.json").read_text())["calibration"] is None


def _labels(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return np.array([rng.choice(len(row), p=row) for row in p])


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_logits_three_times_too_large_get_a_temperature_near_three():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 1.5, (4000, 3))
    labels = _labels(logits, rng)
    too_sharp = _softmax(3 * logits)
    assert fit_temperature(too_sharp, labels) == pytest.approx(3.0, rel=0.1)
    same_samples = np.repeat(too_sharp[..., None], 4, axis=2)  # (galaxies, classes, samples) that agree
    assert fit_temperature(same_samples, labels) == pytest.approx(fit_temperature(too_sharp, labels), rel=1e-4)
    assert fit_temperature(_softmax(logits / 2), labels) == pytest.approx(0.5, rel=0.1)
    assert fit_temperature(_softmax(logits), labels) == pytest.approx(1.0, rel=0.1)  # calibrated: left alone


def test_a_few_validation_galaxies_all_classified_right_do_not_sharpen_the_model_without_bound():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.85, 0.15], [0.1, 0.9]])
    temperature = fit_temperature(probabilities, np.array([0, 1, 0, 1]))
    assert 0.3 < temperature < 1.0  # sharper, as the likelihood asks, but held by the prior (its bound is 0.05)
