"""One way to run a model: where and how (:class:`RunSettings`), the ``Trainer`` for a purpose, and the loop over galaxies.

Every model command (train, finetune, predict, embed, and the finishing pass of a
training run) builds its ``Trainer`` with :func:`build_trainer` and runs a model over
galaxies with :func:`run_over_galaxies`, so devices, masks, resume and atomic saves
are the same everywhere.
"""

from galaxymorph.engine.loop import GalaxyInputs, run_over_galaxies, share_threads
from galaxymorph.engine.settings import ConfigError, RunSettings, Settings
from galaxymorph.engine.trainer import build_trainer

__all__ = ["ConfigError", "GalaxyInputs", "RunSettings", "Settings", "build_trainer", "run_over_galaxies",
           "share_threads"]
