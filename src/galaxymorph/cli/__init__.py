"""The ``galaxymorph`` command line: a thin layer over the library.

Each topic's commands live in their own module here and are registered below.
"""

from __future__ import annotations

import typer

from galaxymorph.cli import schemas
from galaxymorph.cli import data
from galaxymorph.cli import train
from galaxymorph.cli import predict
from galaxymorph.cli import simulate
from galaxymorph.cli import finetune

app = typer.Typer(
    help="Detailed galaxy morphology with Bayesian deep learning.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(schemas.app, name="schemas")
app.command()(data.shard)
app.command()(data.convert_kaggle)
app.command()(train.train)
app.command()(predict.predict)
app.command()(predict.evaluate)
app.command()(predict.report)
app.command()(predict.demo)
app.command()(simulate.simulate)
app.command()(finetune.finetune)
app.command()(finetune.embed)
app.command()(finetune.similar)
app.command()(finetune.anomalies)
