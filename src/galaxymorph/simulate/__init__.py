"""Synthetic galaxies and synthetic Galaxy Zoo volunteers, with known truth.

``simulate_catalogue`` writes images and a catalogue (the default data of the demo);
``simulate`` does the same in memory. See the user guide, docs/simulate.md.
"""

from galaxymorph.simulate.catalogue import (
    Simulation,
    parameters_of,
    simulate,
    simulate_catalogue,
    simulate_truth,
)
from galaxymorph.simulate.parameters import draw_parameters
from galaxymorph.simulate.render import render_galaxies
from galaxymorph.simulate.volunteers import (
    simulate_votes,
    true_probabilities,
    visibility,
)

__all__ = [
    "Simulation",
    "draw_parameters",
    "parameters_of",
    "render_galaxies",
    "simulate",
    "simulate_catalogue",
    "simulate_truth",
    "simulate_votes",
    "true_probabilities",
    "visibility",
]
