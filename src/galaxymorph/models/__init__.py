"""The Bayesian CNN (timm encoder + Dirichlet head), its training, and its shareable checkpoints."""

from galaxymorph.models.checkpoint import load_model, save_model
from galaxymorph.models.config import TrainConfig, TrainConfigError
from galaxymorph.models.encoder import UnknownArchitectureError, create_encoder
from galaxymorph.models.galaxy_model import GalaxyModel
from galaxymorph.models.head import DirichletHead
from galaxymorph.models.lightning_module import GalaxyLightningModule
from galaxymorph.models.train import train  # after the submodule import, so the name is the function

__all__ = [
    "DirichletHead",
    "GalaxyLightningModule",
    "GalaxyModel",
    "TrainConfig",
    "TrainConfigError",
    "UnknownArchitectureError",
    "create_encoder",
    "load_model",
    "save_model",
    "train",
]
