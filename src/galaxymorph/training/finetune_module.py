"""What one fine-tuning step is: the task's loss, and AdamW with layer-wise learning-rate decay.

Layer-wise decay comes from timm (``param_groups_layer_decay`` over the encoder's
own ``group_matcher``): the head learns at ``lr``, the encoder's top layer at
``lr * decay``, the one below at ``lr * decay**2``, and so on down to the stem.
Only trainable (unfrozen) parameters are given to the optimiser.
"""

from __future__ import annotations

from typing import Any, Callable

import lightning as L
import torch
from timm.optim import (
    create_optimizer_v2,
    param_groups_layer_decay,
    param_groups_weight_decay,
)
from torch import Tensor, nn

from galaxymorph.losses import DirichletMultinomialLoss, mask_nll
from galaxymorph.models.finetune_model import Finetunable

__all__ = ["FinetuneModule", "layer_decay_param_groups", "task_loss"]


def layer_decay_param_groups(
    model: Finetunable, lr: float, weight_decay: float = 0.05, layer_decay: float = 0.75
) -> list[dict[str, Any]]:
    """Optimiser groups of the trainable parameters, each with its ``lr`` (= ``lr * lr_scale``).

    timm scales the encoder's top layer by 1; the encoder sits one step below the
    head here, so every encoder scale is multiplied by ``layer_decay`` once more.
    """
    no_decay = getattr(model.encoder, "no_weight_decay", lambda: set())()
    groups = param_groups_layer_decay(
        model.encoder, weight_decay=weight_decay, layer_decay=layer_decay, no_weight_decay_list=no_decay
    )
    for group in groups:
        group["lr_scale"] *= layer_decay
    for group in param_groups_weight_decay(model.head, weight_decay=weight_decay):
        groups.append({**group, "lr_scale": 1.0})
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    return [g for g in groups if g["params"]]


def task_loss(
    model: Finetunable,
    class_weights: Tensor | None = None,
    label_smoothing: float = 0.0,
    regression_loss: str = "mse",
) -> Callable[[Tensor, Tensor], Tensor]:
    """``loss(head outputs, targets) -> scalar`` for the model's task (mean over galaxies)."""
    task = model.task
    if task == "classification":
        return nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing)
    if task == "regression":
        losses = {"mse": nn.MSELoss(), "mae": nn.L1Loss()}
        if regression_loss not in losses:
            raise ValueError(f"regression loss must be 'mse' or 'mae', got {regression_loss!r}")
        return losses[regression_loss]
    if task == "segmentation":
        return mask_nll
    dirichlet = DirichletMultinomialLoss(model.schema, reduction="none")
    return lambda conc, votes: dirichlet(conc.float(), votes).sum(dim=1).mean()


class FinetuneModule(L.LightningModule):
    """Batches ``{"image", "target"}``, already augmented (``data.labelled.LabelledDataModule``): predict, task loss.

    Logs ``train/loss``, ``val/loss`` (the early-stopping and best-model metric) and,
    for classification, ``val/accuracy``. The optimiser's learning rate is constant:
    early stopping on the validation loss decides when to stop.
    """

    def __init__(
        self,
        model: Finetunable,
        loss: Callable[[Tensor, Tensor], Tensor],
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        layer_decay: float = 0.75,
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.lr, self.weight_decay, self.layer_decay = lr, weight_decay, layer_decay

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.loss(self.model(batch["image"]), batch["target"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(batch["image"]))
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        outputs = self.model(batch["image"])
        size = len(batch["image"])
        self.log("val/loss", self.loss(outputs, batch["target"]), prog_bar=True, batch_size=size)
        if self.model.task == "classification":
            accuracy = (outputs.argmax(dim=1) == batch["target"]).float().mean()
            self.log("val/accuracy", accuracy, prog_bar=True, batch_size=size)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups = layer_decay_param_groups(self.model, self.lr, self.weight_decay, self.layer_decay)
        return create_optimizer_v2(groups, opt="adamw", lr=self.lr)
