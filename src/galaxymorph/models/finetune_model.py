"""A pretrained encoder with a new head for a new task, shaped like :class:`GalaxyModel` so predict can use it.

The encoder comes from :func:`galaxymorph.models.load_encoder`: a galaxymorph run or a
Hugging Face style timm folder.

The fine-tuned model exposes the same API as ``GalaxyModel``:
``features(x) -> (B, F)``, ``head(features)`` (raw outputs: logits, values or
concentrations), ``sample(features, n) -> (B, K, n)`` with MC dropout and
``config`` (plain data). ``config["task"]`` says what ``sample`` returns:

- ``"classification"``: class probabilities (softmax), K = ``len(config["classes"])``, of the logits
  divided by ``config["temperature"]`` once it is calibrated;
- ``"regression"``: predicted values, K = 1 (``config["target"]``), in [0, 1] if ``config["bounded"]``;
- ``"tree"``: Dirichlet concentrations over ``config["schema"]`` answers, exactly like ``GalaxyModel``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from timm.models import group_parameters
from torch import nn

from galaxymorph.models.encoder import create_encoder
from galaxymorph.models.galaxy_model import CONFIG_VERSION, EncoderWithHead
from galaxymorph.models.head import ClassifierHead, DirichletHead, RegressionHead
from galaxymorph.schema import Schema

__all__ = ["TASKS", "Finetunable", "FinetunedModel", "PretrainedEncoder"]

TASKS = ("classification", "regression", "tree")


class PretrainedEncoder(EncoderWithHead):
    """A loaded encoder and everything needed to rebuild and feed it (plain data in ``config``).

    It runs alone too (``features(x)``, no head), so ``embed`` can take an encoder that
    was never fine-tuned, such as one of Zoobot's.
    """

    def __init__(self, encoder: nn.Module, config: dict[str, Any]) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Identity()
        self.channels_last = bool(config.get("channels_last", True))
        if self.channels_last:
            self.encoder.to(memory_format=torch.channels_last)
        self._set_input_normalisation(config["input_mean"], config["input_std"])
        self._config = copy.deepcopy(config)


class Finetunable(EncoderWithHead):
    """Freezing for fine-tuning, shared by every model whose new ``head`` sits on a pretrained ``encoder``.

    The encoder's blocks are timm's coarse parameter groups (``group_matcher``); a model
    is trained head first, then with the last blocks unfrozen (:meth:`set_trainable`).
    """

    @property
    def task(self) -> str:
        return self._config["task"]

    def encoder_blocks(self) -> list[list[str]]:
        """Encoder parameter names in timm's coarse groups (stem, stages, ...), from input to output."""
        if not hasattr(self.encoder, "group_matcher"):
            return [[name] for name, _ in self.encoder.named_parameters()]
        groups = group_parameters(self.encoder, self.encoder.group_matcher(coarse=True))
        return [list(names) for _, names in sorted(groups.items())]

    def set_trainable(self, unfreeze: int | str = 0) -> None:
        """Train the head and the last ``unfreeze`` encoder blocks (0: head only; ``"all"``: everything).

        Frozen parts also stay in eval mode while training (see :meth:`train`), so
        their BatchNorm statistics and any dropout are those of the pretrained encoder.
        """
        blocks = self.encoder_blocks()
        if unfreeze == "all":
            unfreeze = len(blocks)
        if not isinstance(unfreeze, int) or unfreeze < 0:
            raise ValueError(f"unfreeze must be a number of blocks >= 0 or 'all', got {unfreeze!r}")
        trainable = {name for block in blocks[len(blocks) - unfreeze:] for name in block} if unfreeze else set()
        for name, param in self.encoder.named_parameters():
            param.requires_grad_(name in trainable)
        self.head.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> "FinetunedModel":
        """As ``nn.Module.train``, but every encoder part with only frozen parameters stays in eval mode."""
        super().train(mode)
        if mode:
            for module in self.encoder.modules():
                params = list(module.parameters())
                if params and not any(p.requires_grad for p in params):
                    module.eval()
        return self


class FinetunedModel(Finetunable):
    """A pretrained encoder plus a task head, with ``GalaxyModel``'s API (see the module docstring).

    Build one with :meth:`create` (a loaded encoder and a task) or :meth:`from_config`
    (architecture only, random weights, for loading a saved fine-tuned model).
    """

    MODEL_TYPE = "finetuned"

    def __init__(self, encoder: nn.Module, config: dict[str, Any]) -> None:
        super().__init__()
        task = config["task"]
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.encoder = encoder
        self.channels_last = bool(config["channels_last"])
        n_features, dropout = int(config["n_features"]), float(config["dropout"])
        if task == "classification":
            self.head: nn.Module = ClassifierHead(n_features, len(config["classes"]), dropout)
        elif task == "regression":
            self.head = RegressionHead(n_features, dropout, bounded=bool(config["bounded"]))
        else:
            self.schema = Schema.from_dict(config["schema"])
            self.head = DirichletHead(n_features, self.schema.n_answers, dropout)
        if self.channels_last:
            self.encoder.to(memory_format=torch.channels_last)
        self._set_input_normalisation(config["input_mean"], config["input_std"])
        self._config = copy.deepcopy(config)
        if task == "classification":
            self.set_temperature(config.get("temperature"))  # configs from before calibration have none

    @classmethod
    def create(
        cls,
        pretrained: PretrainedEncoder,
        task: str,
        dropout: float = 0.2,
        classes: list[str] | None = None,
        bounded: bool = False,
        schema: Schema | None = None,
        target: str | None = None,
        preprocessing: dict[str, Any] | None = None,
    ) -> "FinetunedModel":
        """A new head for ``task`` on a loaded encoder; ``preprocessing`` defaults to the encoder's own."""
        config = {
            "version": CONFIG_VERSION,
            "model_type": cls.MODEL_TYPE,
            "task": task,
            "target": target,
            "dropout": dropout,
            **{k: v for k, v in pretrained.config.items() if k != "source"},
            "pretrained_from": pretrained.config["source"],
            "ood": None,  # set_ood_reference
        }
        config["preprocessing"] = preprocessing or pretrained.config["preprocessing"]
        if config["preprocessing"] is None:
            raise ValueError(f"{pretrained.config['source']} holds no preprocessing; pass one (image size, crop)")
        config["image_size"] = config["preprocessing"].get("image_size")
        if task == "classification":
            if not classes:
                raise ValueError("classification needs the class names")
            config["classes"] = [str(c) for c in classes]
            config["outputs"] = config["classes"]
            config["temperature"] = None  # set_temperature
        elif task == "regression":
            config["bounded"] = bounded
            config["outputs"] = [target or "value"]
        elif task == "tree":
            if schema is None:
                raise ValueError("the tree task needs a schema (the new decision tree)")
            config["schema"] = schema.to_dict()
            config["answers"] = list(schema.answers)
            config["outputs"] = config["answers"]
        return cls(pretrained.encoder, config)

    def set_temperature(self, temperature: float | None) -> None:
        """Divide a classifier's logits by ``temperature`` in every sample (``galaxymorph.calibration``).

        Fitted on the validation labels after fine-tuning; ``None`` removes it. Kept in the
        config (plain data), so a saved model predicts calibrated.
        """
        if self.task != "classification":
            raise ValueError(f"a temperature calibrates a classifier's probabilities, not a {self.task} model's")
        self._config["temperature"] = None if temperature is None else float(temperature)
        self.head.temperature = float(temperature or 1.0)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "FinetunedModel":
        """The architecture of a saved fine-tuned model (``config`` of this version: see ``upgrade_config``),
        randomly initialised (weights are loaded after)."""
        encoder = create_encoder(config["arch"], channels=config["channels"], **config["encoder_args"])
        return cls(encoder, config)
