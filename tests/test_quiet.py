"""Lightning's tips and internal narration stay out of the user's terminal; real warnings do not."""

from __future__ import annotations

import logging
import warnings

import lightning as L
from lightning.pytorch.loggers import CSVLogger

from galaxymorph.quiet import quiet_lightning


def _trainer(tmp_path) -> None:
    L.Trainer(accelerator="cpu", logger=CSVLogger(tmp_path), enable_progress_bar=False, enable_model_summary=False)


def _narration(tmp_path, caplog) -> list[str]:
    caplog.clear()
    _trainer(tmp_path)
    return [r.getMessage() for r in caplog.records if r.name.startswith("lightning")]


def test_lightning_narration_is_dropped_inside_and_shown_outside(tmp_path, caplog):
    caplog.set_level(logging.NOTSET)
    outside = _narration(tmp_path, caplog)
    assert any("GPU available" in m for m in outside)  # the check below can fail
    with quiet_lightning():
        inside = _narration(tmp_path, caplog)
    assert inside == []
    assert _narration(tmp_path, caplog) == outside  # levels restored


def test_the_demo_terminal_shows_the_steps_and_the_summary_without_lightning_narration(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    galaxymorph = Path(sys.executable).with_name("galaxymorph")
    result = subprocess.run([str(galaxymorph), "demo", "--out", str(tmp_path / "demo"), "--galaxies", "60",
                             "--epochs", "1"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
    assert result.returncode == 0, result.stdout + result.stderr
    terminal = result.stdout + result.stderr
    for step in ("1/5 simulating", "2/5 decoding", "3/5 training", "4/5 predicting", "5/5 evaluating",
                 "MAE against the true probabilities", "inside the 90% predictive interval"):
        assert step in terminal, step
    for narration in ("GPU available", "TPU available", "Tip:", "LOCAL_RANK", "`Trainer("):
        assert narration not in terminal, narration


def test_only_the_named_warnings_are_silenced():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_lightning("expected .* resuming"):
            warnings.warn("expected when resuming", stacklevel=1)
            warnings.warn("votes are negative in row 3", stacklevel=1)
    assert [str(w.message) for w in caught] == ["votes are negative in row 3"]
