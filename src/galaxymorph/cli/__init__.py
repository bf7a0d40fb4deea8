"""The ``galaxymorph`` command line: a thin layer over the library.

Each command lives in the module named for it (``evaluate`` also holds ``report``; ``representations``
holds ``embed``, ``similar`` and ``anomalies``) and is registered below.
Every command is wrapped by :func:`_user_errors`, the one place where bad input
(a missing file, a wrong column, an impossible setting) becomes ``error: ...``
on stderr and exit code 2, so no command can forget an exception class, and where
Ctrl-C becomes one line saying the command stopped (and, for a command that
resumes, that running it again continues) with exit code 130, the shell's code for it.
"""

from __future__ import annotations

import contextlib
import functools
import signal
from typing import Any, Callable, Iterator

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

# Commands whose re-run continues where a stopped one ended (docs/refusals.md, "re-run after a kill").
RESUMABLE = frozenset({"fetch", "simulate", "shard", "train", "finetune", "predict", "embed", "demo"})
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a program stopped by Ctrl-C


def _message(error: BaseException) -> str:
    """The sentence a person acts on, on one line: no repr quotes (KeyError), the path of an OSError, and the
    lines of a message from elsewhere (a parser's, say) joined."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        text = f"{error.filename}: {error.strerror}"
    elif isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    else:
        text = str(error) or type(error).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


@contextlib.contextmanager
def _ctrl_c_noted() -> Iterator[list[int]]:
    """Note a Ctrl-C before it becomes KeyboardInterrupt: Lightning turns that into ``sys.exit(1)``."""
    noted: list[int] = []

    def note(signum: int, frame: Any) -> None:
        noted.append(signum)
        signal.default_int_handler(signum, frame)

    try:
        previous = signal.signal(signal.SIGINT, note)
    except ValueError:  # not the main thread: Python delivers no signal here anyway
        previous = None
    try:
        yield noted
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _stopped(name: str) -> str:
    resume = "; run the same command again to resume" if name in RESUMABLE else ""
    return f"{typer.style('stopped', fg='yellow')} by Ctrl-C{resume}"


def _user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with bad input reported as one ``error:`` message and exit code 2 (no traceback),
    and Ctrl-C as one line and exit code 130."""
    name = command.__name__.replace("_", "-")

    @functools.wraps(command)  # typer reads the options from the wrapped signature
    def guarded(*args: Any, **kwargs: Any) -> Any:
        with _ctrl_c_noted() as ctrl_c:
            try:
                return command(*args, **kwargs)
            except BaseException as error:
                if ctrl_c or isinstance(error, KeyboardInterrupt):  # whatever the interrupt became on its way up
                    typer.echo(_stopped(name), err=True)
                    raise typer.Exit(INTERRUPTED) from None
                if isinstance(error, USER_ERRORS):
                    typer.echo(f"{typer.style('error:', fg='red')} {_message(error)}", err=True)
                    raise typer.Exit(2) from None
                raise

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
