"""Training and fine-tuning: settings as plain data in, resumable run folders out (the Lightning loops live here)."""

from galaxymorph.training.config import FinetuneConfig, TrainConfig, TrainConfigError
from galaxymorph.training.finetune_run import finetune
from galaxymorph.training.galaxy_module import GalaxyLightningModule
from galaxymorph.training.train_run import train

__all__ = ["FinetuneConfig", "GalaxyLightningModule", "TrainConfig", "TrainConfigError", "finetune", "train"]
