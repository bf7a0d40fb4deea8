"""galaxymorph: detailed galaxy morphology with Bayesian deep learning.

The verbs a user calls, one import away (as ``sklearn`` or ``timm`` expose theirs)::

    import galaxymorph as gm

    gm.simulate_catalogue(3000, 64, "sim")                                  # or gm.fetch("gz2", "gz2")
    gm.write_shards("sim/catalogue.parquet", "gz_decals_dr5", "shards", gm.Preprocessing(stored_size=64, image_size=48))
    best = gm.train(gm.TrainConfig(shards="shards", out="run", arch="resnet10t"))
    gm.predict(best, "preds.parquet", shards="shards", split="test", samples=5)
    gm.evaluate("preds.parquet", "sim/catalogue.parquet", out="evaluation")
    frame, schema, metadata = gm.read_predictions("preds.parquet")

Everything else lives in the subpackages (``data``, ``models``, ``engine``, ``training``,
``prediction``, ``evaluation``, ``report``, ``representations``, ``acquisition``,
``simulate``, ``archive``), whose ``__init__`` lists what they offer; other modules are
their internals. Names load on first use (PEP 562), so ``import galaxymorph`` and the
command line start without torch.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_VERBS = {
    # decision trees and the likelihood
    "Schema": "galaxymorph.schema",
    "Question": "galaxymorph.schema",
    "SchemaError": "galaxymorph.schema",
    "get_schema": "galaxymorph.schema",
    "list_schemas": "galaxymorph.schema",
    "DirichletMultinomialLoss": "galaxymorph.losses",
    "dirichlet_multinomial_nll": "galaxymorph.losses",
    # data
    "fetch": "galaxymorph.archive",
    "simulate_catalogue": "galaxymorph.simulate",
    "read_catalogue": "galaxymorph.data.catalogue",
    "Preprocessing": "galaxymorph.data.transforms",
    "write_shards": "galaxymorph.data.shards",
    # where and how a model runs, training, fine-tuning
    "RunSettings": "galaxymorph.engine",
    "ConfigError": "galaxymorph.engine",
    "TrainConfig": "galaxymorph.training",
    "FinetuneConfig": "galaxymorph.training",
    "train": "galaxymorph.training",
    "finetune": "galaxymorph.training",
    "load_model": "galaxymorph.models",
    # predictions and what follows them
    "predict": "galaxymorph.prediction",
    "read_predictions": "galaxymorph.prediction",
    "evaluate": "galaxymorph.evaluation",
    "build_report": "galaxymorph.report",
    "rank_predictions": "galaxymorph.acquisition",
    "embed": "galaxymorph.representations",
    "read_embeddings": "galaxymorph.representations",
    "similar": "galaxymorph.representations",
}

__all__ = sorted(_VERBS)


def __getattr__(name: str) -> Any:
    """Import a verb's module on first use, so that ``import galaxymorph`` stays light."""
    if name in _VERBS:
        value = getattr(import_module(_VERBS[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_VERBS])
