"""Lightning's tips and internal narration stay out of the user's terminal; real warnings do not."""

from __future__ import annotations

import logging
import warnings

import lightning as L
from lightning.pytorch.loggers import CSVLogger

from galaxymorph.quiet import quiet_lightning


def _trainer(tmp_path) -> None:
    L.Trainer(accelerator="cpu", logger=CSVLogger(tmp_path), enable_progress_bar=False, enable_model_summary=False)


def test_lightning_tip_is_dropped_inside_and_shown_outside(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        _trainer(tmp_path)
        assert any("Tip" in r.getMessage() for r in caplog.records)  # the check below can fail
        caplog.clear()
        with quiet_lightning():
            _trainer(tmp_path)
        messages = [r.getMessage() for r in caplog.records]
    assert messages and not any("Tip" in m for m in messages)  # other lines (e.g. GPU available) still come


def test_only_the_named_warnings_are_silenced():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_lightning("expected .* resuming"):
            warnings.warn("expected when resuming")
            warnings.warn("votes are negative in row 3")
    assert [str(w.message) for w in caught] == ["votes are negative in row 3"]
