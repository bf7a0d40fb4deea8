"""Posterior statistics on hand-checkable cases, and the Kaggle cumulative format."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from galaxymorph import Question, Schema, get_schema
from galaxymorph.kaggle import from_kaggle, kaggle_columns, kaggle_rmse, to_kaggle
from galaxymorph.stats import (
    credible_intervals,
    expected_fractions,
    from_cumulative,
    posterior_predictive_counts,
    probability_asked,
    to_cumulative,
    vote_fractions,
)

# q1: a/b; q2 (after q1_a): x/y/z; q3 (after q1_b or q2_z): u/v
TOY = Schema(
    "toy",
    [
        Question("q1", ("a", "b")),
        Question("q2", ("x", "y", "z"), after=("q1_a",)),
        Question("q3", ("u", "v"), after=("q1_b", "q2_z")),
    ],
)


def test_expected_fractions_are_normalised_within_questions():
    conc = np.array([[1.0, 3.0, 2.0, 2.0, 4.0, 5.0, 5.0]])
    np.testing.assert_allclose(expected_fractions(conc, TOY), [[0.25, 0.75, 0.25, 0.25, 0.5, 0.5, 0.5]])


def test_expected_fractions_average_over_samples():
    conc = np.stack([np.array([[1.0, 3.0, 1, 1, 1, 1, 1]]), np.array([[3.0, 1.0, 1, 1, 1, 1, 1]])], axis=-1)
    np.testing.assert_allclose(expected_fractions(conc, TOY)[0, :2], [0.5, 0.5])


def test_credible_intervals_match_beta_quantiles_for_one_sample():
    conc = np.array([[2.0, 5.0, 1.5, 2.5, 3.0, 4.0, 9.0]])
    got = credible_intervals(conc, TOY, levels=(0.05, 0.5, 0.95))
    a, total = 2.0, 7.0
    np.testing.assert_allclose(got[0, 0], scipy_stats.beta.ppf([0.05, 0.5, 0.95], a, total - a), atol=1e-5)
    assert (got[..., 0] < got[..., 2]).all()


def test_credible_interval_of_a_mixture_covers_both_components():
    tight_low = [[10.0, 90.0, 1, 1, 1, 1, 1]]
    tight_high = [[90.0, 10.0, 1, 1, 1, 1, 1]]
    conc = np.stack([np.array(tight_low), np.array(tight_high)], axis=-1)
    lo, hi = credible_intervals(conc, TOY)[0, 0]
    assert lo < 0.1 and hi > 0.9


def test_probability_asked_follows_the_dag():
    # q1: a with 0.25; q2: z with 0.5; q3 reached by q1_b (0.75) or q1_a then q2_z (0.25 * 0.5)
    conc = np.array([[1.0, 3.0, 1.0, 1.0, 2.0, 1.0, 1.0]])
    np.testing.assert_allclose(probability_asked(conc, TOY), [[1.0, 0.25, 0.75 + 0.125]])


def test_probability_asked_is_a_product_per_sample_not_of_means():
    # two samples: P(a) = 1 - P(z) per sample, so E[P(a) * P(z)] = 0.09 + 0.09, not 0.5 * 0.5
    s1 = [[9.0, 1.0, 1.0, 0.0001, 9.0, 1, 1]]
    s2 = [[1.0, 9.0, 9.0, 0.0001, 1.0, 1, 1]]
    conc = np.stack([np.array(s1), np.array(s2)], axis=-1)
    asked = probability_asked(conc, TOY)[0, 2]
    np.testing.assert_allclose(asked, 0.5 * (0.1 + 0.9 * 0.9) + 0.5 * (0.9 + 0.1 * 0.1), rtol=1e-3)


def test_posterior_predictive_is_a_distribution_with_the_right_mean():
    conc = np.array([[2.0, 6.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    pmf = posterior_predictive_counts(conc, TOY, n_volunteers=40)
    assert pmf.shape == (1, 7, 41)
    np.testing.assert_allclose(pmf.sum(axis=-1), 1.0, rtol=1e-10)
    np.testing.assert_allclose((pmf[0, 0] * np.arange(41)).sum(), 40 * 2 / 8)


def test_vote_fractions_mark_unasked_questions_nan():
    counts = np.array([[4.0, 0.0, 1.0, 1.0, 2.0, 0.0, 0.0]])
    got = vote_fractions(counts, TOY)
    np.testing.assert_allclose(got[0, :5], [1.0, 0.0, 0.25, 0.25, 0.5])
    assert np.isnan(got[0, 5:]).all()


def test_cumulative_round_trip_and_weights():
    fractions = np.array([[0.25, 0.75, 0.2, 0.3, 0.5, 0.4, 0.6]])
    cumulative = to_cumulative(fractions, TOY)
    np.testing.assert_allclose(cumulative[0, 2:5], 0.25 * np.array([0.2, 0.3, 0.5]))
    np.testing.assert_allclose(cumulative[0, 5:].sum(), 0.75 + 0.25 * 0.5)
    np.testing.assert_allclose(from_cumulative(cumulative, TOY), fractions)


def test_kaggle_columns_map_in_order():
    columns = kaggle_columns()
    assert len(columns) == 37
    assert columns["Class1.3"] == "smooth-or-featured_artifact"
    assert columns["Class6.1"] == "something-odd_yes"
    assert columns["Class11.6"] == "spiral-arm-count_cant-tell"


def test_kaggle_rmse_of_identical_is_zero_and_skips_nan():
    t = np.array([[0.2, np.nan], [0.4, 0.6]])
    assert kaggle_rmse(t, t) == 0.0
    assert kaggle_rmse(t + 0.1, t) == pytest.approx(0.1)


def test_real_kaggle_labels_round_trip(gz2_dir):
    labels = pd.read_csv(gz2_dir / "labels.csv").dropna()
    cumulative = labels[list(kaggle_columns())].to_numpy()
    fractions = from_kaggle(cumulative)
    # the conventions (DAG weights, "anything odd?" summing to 1) reproduce Kaggle's numbers
    assert kaggle_rmse(to_kaggle(np.nan_to_num(fractions)), cumulative) < 1e-5
    schema = get_schema("gz2")
    q6 = cumulative[:, schema.slices[schema.question_names.index("something-odd")]].sum(axis=1)
    np.testing.assert_allclose(q6, 1.0, atol=1e-4)


def test_credible_intervals_solve_the_mixture_cdf():
    from scipy import special

    rng = np.random.default_rng(0)
    schema = get_schema("gz_decals_dr5")
    conc = 1.001 + rng.random((40, schema.n_answers, 1)) * 80 * (1 + 0.1 * rng.standard_normal((40, schema.n_answers, 5)))
    conc = np.maximum(conc, 1.001)
    levels = (0.05, 0.5, 0.95)
    got = credible_intervals(conc, schema, levels)
    total = np.take(np.add.reduceat(conc, [s.start for s in schema.slices], axis=1), schema.question_index, axis=1)
    for i, level in enumerate(levels):
        cdf = special.betainc(conc, total - conc, got[..., i : i + 1]).mean(axis=2)
        np.testing.assert_allclose(cdf, level, atol=1e-6)
