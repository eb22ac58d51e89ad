"""The typer application and what every command shares: the option helper, the native
kernels' build before a command computes."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

app = typer.Typer(
    name="mmoe",
    help="Multi-task learning with Multi-gate Mixture-of-Experts (Ma et al., KDD 2018).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
reproduce_app = typer.Typer(help="Reproduce the paper's experiments.", no_args_is_help=True)
app.add_typer(reproduce_app, name="reproduce")
data_app = typer.Typer(help="Download public data sets; generate synthetic ones.",
                        no_args_is_help=True)
app.add_typer(data_app, name="data")


def native() -> None:
    """Build (once per machine) or load the native CPU kernels before a command computes:
    one message while compiling, a warning with the reason if they cannot be built."""
    from ..ops import build_native

    build_native()


def opt(helps: dict[str, str], name: str, flag: str | None = None,
        panel: str | None = None) -> Any:
    """A typer option for a command's parameter ``name``: ``--name-with-dashes`` (or
    ``flag``), with its help from the command's table ``helps``, shown under ``panel`` in
    ``--help``. The help is shown as written: ``[model]`` is a TOML table, not rich markup."""
    text = helps.get(name)
    return typer.Option(flag or "--" + name.rstrip("_").replace("_", "-"),
                        help=None if text is None else escape(text), rich_help_panel=panel)
