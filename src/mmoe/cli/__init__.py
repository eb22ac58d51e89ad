"""The ``mmoe`` command line. Thin: parse options into config objects, call the library,
print. User errors (``ValueError``, missing files) become one line on stderr and exit code 2.

The commands live in :mod:`.own_data` (train, evaluate, predict, export, inspect),
:mod:`.paper` (reproduce, tune) and :mod:`.data` (fetch, generate); this module holds the
entry point and the small commands.
"""

from __future__ import annotations

import logging
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


class _Stderr(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record comes."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


_HANDLER = _Stderr()
_HANDLER.setFormatter(logging.Formatter("%(message)s"))


def log_to_stderr(quiet: bool = False) -> None:
    """Route the library's log (one line per epoch when stderr is not a terminal, ...) to
    stderr; ``quiet``: warnings and errors only."""
    logger = logging.getLogger("mmoe")
    if _HANDLER not in logger.handlers:
        logger.addHandler(_HANDLER)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=(
        "Print no progress: neither bars nor the per-epoch lines written when stderr is not "
        "a terminal (warnings and errors still show)."))] = False,
) -> None:
    """Multi-task learning with Multi-gate Mixture-of-Experts (Ma et al., KDD 2018)."""
    log_to_stderr(quiet)


@app.command("models")
def models_cmd() -> None:
    r"""List the registered models, each with the options it reads and their defaults
    (set them with --option KEY=VALUE or \[model.options] in a config file)."""
    from ..app.spec import DEFAULT_MODEL
    from ..models import available_models
    from ..models.registry import model_options

    for name, description in available_models().items():
        typer.echo(f"{name:24s} {description}")
        options = model_options(name, DEFAULT_MODEL)  # the defaults of mmoe train's shape
        if options:
            typer.echo(" " * 25 + "options: " + ", ".join(f"{k}={v!r}"
                                                          for k, v in options.items()))


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




from . import config, data, own_data, paper, serve  # noqa: E402, F401  (their commands join the app)
