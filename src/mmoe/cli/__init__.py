"""The ``mmoe`` command line. Thin: parse options into config objects, call the library,
print. User errors (``ValueError``, missing files) become one line on stderr and exit code 2.

The commands live in :mod:`.own_data` (train, evaluate, predict, export, inspect),
:mod:`.paper` (reproduce, tune) and :mod:`.data` (fetch, generate); this module holds the
entry point and the small commands.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .._version import __version__
from ._app import app, data_app, reproduce_app

__all__ = ["app", "data_app", "main", "reproduce_app"]


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
    from ..models import available_models

    for name, description in available_models().items():
        typer.echo(f"{name:24s} {description}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``mmoe`` script: user errors exit 2 with one line on stderr."""
    try:
        app(args=argv, standalone_mode=True)
    except (ValueError, OSError) as err:  # OSError: e.g. the disk filled up while saving
        line = "; ".join(part.strip() for part in str(err).splitlines() if part.strip())
        print(f"mmoe: error: {line}", file=sys.stderr)
        sys.exit(2)
    except MemoryError:
        print("mmoe: error: out of memory; use a smaller model or batch (--batch-size), or "
              "--stream for a large file", file=sys.stderr)
        sys.exit(2)




from . import data, own_data, paper  # noqa: E402, F401  (their commands join the app)
