"""The ``mmoe`` command line. Thin: parse options into config objects, call the library,
print. User errors (``ValueError``, missing files) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ._version import __version__

app = typer.Typer(
    name="mmoe",
    help="Multi-task learning with Multi-gate Mixture-of-Experts (Ma et al., KDD 2018).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
reproduce_app = typer.Typer(help="Reproduce the paper's experiments.", no_args_is_help=True)
app.add_typer(reproduce_app, name="reproduce")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mmoe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Multi-task learning with Multi-gate Mixture-of-Experts (Ma et al., KDD 2018)."""


@app.command("models")
def models_cmd() -> None:
    """List the registered models."""
    from .models import available_models

    for name, description in available_models().items():
        typer.echo(f"{name:24s} {description}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``mmoe`` script: user errors exit 2 with one line on stderr."""
    try:
        app(args=argv, standalone_mode=True)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        print(f"mmoe: error: {err}", file=sys.stderr)
        sys.exit(2)
