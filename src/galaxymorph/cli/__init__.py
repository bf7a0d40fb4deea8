"""The ``galaxymorph`` command line: a thin layer over the library.

Each command lives in the module named for it (``evaluate`` also holds ``report``; ``representations``
holds ``embed``, ``similar`` and ``anomalies``) and is registered below.
Every command is wrapped by :func:`_user_errors`, the one place where bad input
(a missing file, a wrong column, an impossible setting) becomes ``error: ...``
on stderr and exit code 2, so no command can forget an exception class.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import typer
import yaml

from galaxymorph.cli import (
    acquire,
    convert_kaggle,
    demo,
    evaluate,
    export,
    fetch,
    finetune,
    predict,
    representations,
    schemas,
    shard,
    simulate,
    train,
)

__all__ = ["app", "USER_ERRORS"]

# What bad input raises: ValueError also covers the library's own errors (CatalogueError, SchemaError,
# ConfigError), JSON/TOML/CSV parse errors and pyarrow's ArrowInvalid; OSError covers missing,
# unreadable or unwritable paths and undecodable images. KeyError: an unknown name (schema, split, id).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError, yaml.YAMLError)


def _message(error: BaseException) -> str:
    """The sentence a person acts on: no repr quotes (KeyError), and the path of an OSError."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error) or type(error).__name__


def _user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with bad input reported as one ``error:`` message and exit code 2 (no traceback)."""

    @functools.wraps(command)  # typer reads the options from the wrapped signature
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as error:
            typer.echo(f"{typer.style('error:', fg='red')} {_message(error)}", err=True)
            raise typer.Exit(2) from None

    return guarded


def _guard_every_command(group: typer.Typer) -> None:
    """Wrap each registered command (and group callback) here, so a new command cannot be left out."""
    for info in group.registered_commands:
        info.callback = _user_errors(info.callback)
    if group.registered_callback is not None:
        group.registered_callback.callback = _user_errors(group.registered_callback.callback)
    for sub in group.registered_groups:
        _guard_every_command(sub.typer_instance)


app = typer.Typer(
    help="Detailed galaxy morphology with Bayesian deep learning.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(schemas.app, name="schemas")
app.command()(fetch.fetch)
app.command()(shard.shard)
app.command()(convert_kaggle.convert_kaggle)
app.command()(train.train)
app.command()(predict.predict)
app.command()(evaluate.evaluate)
app.command()(evaluate.report)
app.command()(demo.demo)
app.command()(simulate.simulate)
app.command()(finetune.finetune)
app.command()(representations.embed)
app.command()(representations.similar)
app.command()(representations.anomalies)
app.command()(acquire.acquire)
app.command()(export.export)
_guard_every_command(app)
