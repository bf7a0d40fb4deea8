"""The likelihood of votes under an MC-sampled posterior (mixture NLL), on cases small enough to check by hand."""

from __future__ import annotations

import numpy as np

from galaxymorph.likelihood import mixture_nll
from galaxymorph.schema import Question, Schema

TWO = Schema("two", [Question("shape", ("round", "disk")), Question("bar", ("yes", "no"), after=("shape_disk",))])


def test_nll_of_a_flat_dirichlet_is_log_of_the_number_of_outcomes():
    # Dirichlet(1, 1) with one vote: both outcomes have probability 1/2
    conc = np.ones((1, 4, 3))
    nll = mixture_nll(conc, np.array([[1.0, 0.0, 0.0, 0.0]]), TWO)
    np.testing.assert_allclose(nll, [[np.log(2), 0.0]], rtol=1e-9)


def test_mixture_nll_averages_likelihoods_not_losses():
    # two samples: P(vote round) = 0.9 and 0.1 -> mixture 0.5, NLL log 2 (the mean NLL would be larger)
    conc = np.array([[[9e5, 1e5], [1e5, 9e5], [1.0, 1.0], [1.0, 1.0]]])  # (1, answers=4, samples=2)
    nll = mixture_nll(conc, np.array([[1.0, 0.0, 0.0, 0.0]]), TWO)
    np.testing.assert_allclose(nll[0, 0], np.log(2), rtol=1e-4)
