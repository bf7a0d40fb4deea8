"""A model's outputs per galaxy into one resumable Parquet file: what ``predict`` and ``embed`` both do.

Claim the output, skip the galaxies it already holds (made the same way, or refused),
run the model over the rest (:func:`galaxymorph.engine.run_over_galaxies`), each process
writing its own parts, then merge them on rank 0 (:mod:`galaxymorph.prediction.parts`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd
import pyarrow as pa
from lightning import pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter, Callback

from galaxymorph.data.inputs import Record
from galaxymorph.engine import GalaxyInputs, RunSettings, run_over_galaxies
from galaxymorph.prediction.layout import CROP_COLUMNS, TableBuilder, with_crop_records, with_ood_scores
from galaxymorph.prediction.parts import (
    ErrorLog,
    PartWriter,
    check_output_file,
    errors_path,
    merge_parts,
    parts_dir,
    resumable_output,
)

__all__ = ["claim_output", "write_outputs"]


class _WriteParts(BasePredictionWriter):
    """Turns each batch's outputs into rows (``to_table``) for this process's part writer; errors to its log.

    A step returns the rows (samples or features), or (rows, ood scores or None). A layout with
    the size-crop columns gets them from the batch (what reading each image measured).
    """

    def __init__(self, out: Path, layout: pa.Schema, to_table: TableBuilder, rows_per_part: int):
        super().__init__(write_interval="batch")
        self.out, self.layout, self.to_table, self.rows_per_part = out, layout, to_table, rows_per_part

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        directory = parts_dir(self.out)
        self.writer = PartWriter(directory, self.layout, trainer.global_rank, self.rows_per_part)
        self.errors = ErrorLog(directory / f"errors-{self.writer.prefix}.csv")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx) -> None:  # type: ignore[override]
        self.errors.write(batch["errors"])
        if prediction is None:
            return
        rows, scores = prediction if isinstance(prediction, tuple) else (prediction, None)
        table = self.to_table(batch["id_str"], rows.cpu().numpy(), batch["file_loc"])
        if scores is not None:
            table = with_ood_scores(table, scores.float().cpu().numpy())
        if set(CROP_COLUMNS) <= set(self.layout.names):
            table = with_crop_records(table, batch["crop"])
        self.writer.write_table(table)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.writer.close()
        self.errors.close()
        trainer.strategy.barrier("parts written")  # rank 0 merges only once every rank (every node) is done


def write_outputs(module: pl.LightningModule, records: Callable[[], Iterable[Record]], out: Path,
                  made_by: dict[str, Any], layout: pa.Schema, to_table: TableBuilder, run: RunSettings,
                  rows_per_part: int = 50_000, callbacks: list[Callback] | None = None) -> dict[str, int]:
    """Run ``module`` over every record not yet in ``out`` and merge; returns counts (rows, new, errors, parts).

    ``made_by`` decides what may be resumed (:func:`galaxymorph.prediction.parts.made_by`);
    ``to_table`` turns a batch's outputs into rows of ``layout``. Processes other than
    rank 0 return zeros (rank 0 merges).
    """
    with resumable_output(out, made_by) as done:
        inputs = GalaxyInputs(records, module.model.config["preprocessing"], run, frozenset(done))
        rank, _ = run_over_galaxies(module, inputs, run, [_WriteParts(out, layout, to_table, rows_per_part),
                                                          *(callbacks or [])])
        if rank != 0:
            return {"rows": 0, "new": 0, "errors": 0, "parts": 0}
        rows, parts = merge_parts(out)
    errors = len(pd.read_csv(errors_path(out))) if errors_path(out).exists() else 0
    return {"rows": rows, "new": rows - len(done), "errors": errors, "parts": parts}


def claim_output(out: str | Path) -> Path:
    """``out`` checked as a Parquet file this command may write (see :func:`check_output_file`), its folder made."""
    out = Path(out)
    check_output_file(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out

