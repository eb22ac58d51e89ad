"""The ``mmoe`` command line. Thin: parse options into config objects, call the library,
print. User errors (``ValueError``, missing files) become one line on stderr and exit code 2.

The commands live in :mod:`.own_data` (train, evaluate, predict, export, inspect) and
:mod:`.paper` (reproduce, tune); this module holds the entry point and the small commands.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .._version import __version__
from ._app import app, data_app, reproduce_app

__all__ = ["app", "data_app", "generate_app", "main", "reproduce_app"]


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




@data_app.command("fetch")
def data_fetch_cmd(
    name: Annotated[str, typer.Argument(help="Data set to download: census-income.")],
    data_dir: Annotated[str | None, typer.Option(
        "--data-dir", help="Directory for the files (default: $MMOE_DATA_DIR, else the user "
                           "cache dir).")] = None,
) -> None:
    """Download a data set's files, checksum-verified; files already present are kept."""
    from ..data.fetch import fetch_dataset

    directory = fetch_dataset(name, data_dir, log=typer.echo)
    typer.echo(f"{name}: ready in {directory}")


generate_app = typer.Typer(help="Generate data sets with known answers.", no_args_is_help=True)
data_app.add_typer(generate_app, name="generate")


@generate_app.command("funnel")
def generate_funnel_cmd(
    out: Annotated[str, typer.Option("--out", help="Directory to create (must not exist).")],
    rows: Annotated[int, typer.Option("--rows", help="Impressions.")] = 1_000_000,
    users: Annotated[int, typer.Option("--users", help="Users.")] = 30_000,
    items: Annotated[int, typer.Option("--items", help="Items.")] = 8_000,
    seed: Annotated[int, typer.Option("--seed", help="Fixes the world and every row.")] = 0,
    history_len: Annotated[int, typer.Option(
        "--history-len", help="Clicked items kept per row (most recent).")] = 10,
    shard_rows: Annotated[int, typer.Option("--shard-rows", help="Rows per Parquet file.")
                          ] = 1_000_000,
) -> None:
    """Impression logs with a click -> purchase funnel and known true probabilities: Parquet
    shards in DIR/train, DIR/valid, DIR/test (split by time), DIR/mmoe.toml to train on them
    (mmoe train --config DIR/mmoe.toml), and DIR/oracle.json, the best AUC/GAUC any model can
    reach on valid and test. The equations: mmoe.data.datasets.funnel."""
    from tqdm import tqdm

    from .._fileio import write_json
    from ..app.oracle import oracle_metrics
    from ..app.predict import format_metrics
    from ..data.datasets.funnel import FunnelSpec, generate_funnel

    spec = FunnelSpec(rows=rows, users=users, items=items, seed=seed,
                      history_len=history_len, shard_rows=shard_rows)
    with tqdm(total=rows, unit="row", unit_scale=True, disable=None) as bar:
        path = generate_funnel(spec, out, progress=bar.update)
    oracle = {split: oracle_metrics(path / split) for split in ("valid", "test")}
    write_json(path / "oracle.json", oracle)
    typer.echo(f"{rows} impressions written to {path} (train/, valid/, test/)")
    typer.echo("oracle on test (the true probabilities as predictions):")
    typer.echo(format_metrics(oracle["test"]))
    typer.echo(f"train on it: mmoe train --config {path / 'mmoe.toml'} --out DIR")


from . import own_data, paper  # noqa: E402, F401  (their commands join the app)
