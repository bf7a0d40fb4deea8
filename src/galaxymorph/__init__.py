"""galaxymorph: detailed galaxy morphology with Bayesian deep learning."""

from galaxymorph.losses import DirichletMultinomialLoss, dirichlet_multinomial_nll
from galaxymorph.schema import Question, Schema, SchemaError, get_schema, list_schemas

__version__ = "0.1.0"

__all__ = [
    "DirichletMultinomialLoss",
    "Question",
    "Schema",
    "SchemaError",
    "dirichlet_multinomial_nll",
    "get_schema",
    "list_schemas",
]
