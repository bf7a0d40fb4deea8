"""galaxymorph: detailed galaxy morphology with Bayesian deep learning."""

from typing import Any

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


def __getattr__(name: str) -> Any:
    """The loss needs torch: import it on first use, so the CLI and ``galaxymorph.schema`` start fast (PEP 562)."""
    if name in ("DirichletMultinomialLoss", "dirichlet_multinomial_nll"):
        from galaxymorph import losses

        return getattr(losses, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
