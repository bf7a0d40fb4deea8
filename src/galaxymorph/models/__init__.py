"""The models: a timm encoder with a Dirichlet head (or a fine-tuned head), and their shareable checkpoints.

``load_model(path)`` loads any galaxymorph model folder; ``load_encoder(path)`` the encoder
of a run, of a Hugging Face style timm folder or of a hub name (``hf_hub:ORG/NAME``), to start
training or fine-tuning from; ``export_encoder(run, folder)`` writes a run's encoder as a timm folder.
"""

from galaxymorph.models.checkpoint import save_model
from galaxymorph.models.encoder import UnknownArchitectureError, create_encoder
from galaxymorph.models.ensemble import Ensemble
from galaxymorph.models.export import export_encoder
from galaxymorph.models.finetune_model import FinetunedModel
from galaxymorph.models.galaxy_model import GalaxyModel
from galaxymorph.models.head import DirichletHead
from galaxymorph.models.loading import load_encoder, load_features_model, load_model

__all__ = [
    "DirichletHead",
    "Ensemble",
    "FinetunedModel",
    "GalaxyModel",
    "UnknownArchitectureError",
    "create_encoder",
    "export_encoder",
    "load_encoder",
    "load_features_model",
    "load_model",
    "save_model",
]
