"""``mmoe config init``: a config file with every key, its default and what it means."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import app

config_app = typer.Typer(help="Config files for mmoe train --config.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("init")
def config_init_cmd(
    out: Annotated[str | None, typer.Option(
        "--out", help="File to write (default: print to stdout, e.g. > run.toml).")] = None,
) -> None:
    r"""Write a commented config file with every key and its default (docs/config.md): edit
    tasks and \[data] train, then mmoe train --config run.toml --out DIR."""
    from .._checks import writable_dir
    from .._fileio import write_text
    from ..app.config_file import template

    if out is None:
        typer.echo(template(), nl=False)
        return
    writable_dir(out)
    write_text(out, template())
    typer.echo(f"config template written to {out}")
