"""Training and fine-tuning: settings as plain data in, resumable run folders out (the Lightning loops live here)."""

from galaxymorph.engine import ConfigError
from galaxymorph.training.config import FinetuneConfig, TrainConfig
from galaxymorph.training.finetune_run import finetune
from galaxymorph.training.galaxy_module import GalaxyLightningModule
from galaxymorph.training.train_run import train

__all__ = ["ConfigError", "FinetuneConfig", "GalaxyLightningModule", "TrainConfig", "finetune", "train"]
