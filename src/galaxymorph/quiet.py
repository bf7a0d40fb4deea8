"""Keep Lightning's messages that a galaxymorph user cannot act on out of their terminal.

Lightning narrates at INFO level (which accelerators exist, "GPU available:
False, used: False", its cloud-logger tip, how many batches it will use), and
under torch 2.14 its own code triggers a torch deprecation warning on every
run; none of these says anything about the user's data or model. Its real
warnings come through the ``warnings`` module and still show.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import Iterator

__all__ = ["quiet_lightning"]

_NARRATORS = ("lightning.pytorch", "lightning.fabric")  # loggers whose INFO records are narration
_WARNING_NOISE = (
    r".*isinstance\(treespec, LeafSpec\)",  # Lightning's use of a torch API, not ours
    r"Checkpoint directory .* exists and is not empty",  # a run resuming into its own folder
)


@contextmanager
def quiet_lightning(*ignore_warnings: str) -> Iterator[None]:
    """Within: no Lightning narration (INFO records) or internal deprecations, nor warnings matching ``ignore_warnings``.

    Create the ``Trainer`` inside too: some of the messages come from its constructor.
    """
    loggers = [logging.getLogger(name) for name in _NARRATORS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in (*_WARNING_NOISE, *ignore_warnings):
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
