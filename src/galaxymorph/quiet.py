"""Keep Lightning's messages that a galaxymorph user cannot act on out of their terminal.

Lightning advertises its cloud logger and narrates internals at INFO level, and
under torch 2.14 its own code triggers a torch deprecation warning on every run;
none of these says anything about the user's data or model.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import Iterator

__all__ = ["quiet_lightning"]

_INFO_NOISE = ("Tip: For seamless cloud logging", "to estimate number of stepping batches")
_WARNING_NOISE = (
    r".*isinstance\(treespec, LeafSpec\)",  # Lightning's use of a torch API, not ours
    r"Checkpoint directory .* exists and is not empty",  # a run resuming into its own folder
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in _INFO_NOISE)


@contextmanager
def quiet_lightning(*ignore_warnings: str) -> Iterator[None]:
    """Within: no Lightning tips, internal narration or internal deprecations, nor warnings matching ``ignore_warnings``.

    Create the ``Trainer`` inside too: some of the messages come from its constructor.
    """
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    noise = _DropNoise()
    logger.addFilter(noise)
    try:
        with warnings.catch_warnings():
            for pattern in (*_WARNING_NOISE, *ignore_warnings):
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        logger.removeFilter(noise)
