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


# --- mmoe data ------------------------------------------------------------------------------
data_app = typer.Typer(help="Download and locate public data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("fetch")
def data_fetch_cmd(
    name: Annotated[str, typer.Argument(help="Data set to download: census-income.")],
    data_dir: Annotated[str | None, typer.Option(
        "--data-dir", help="Directory for the files (default: $MMOE_DATA_DIR, else the user "
                           "cache dir).")] = None,
) -> None:
    """Download a data set's files, checksum-verified; files already present are kept."""
    from .data.fetch import fetch_dataset

    directory = fetch_dataset(name, data_dir, log=typer.echo)
    typer.echo(f"{name}: ready in {directory}")


# --- mmoe reproduce census | mmoe tune ------------------------------------------------------
def _model_list(models: str | None) -> list[str] | None:
    return [m.strip() for m in models.split(",") if m.strip()] if models else None


@reproduce_app.command("census")
def reproduce_census_cmd(
    group: Annotated[int, typer.Option("--group", help="1 = (income; marital), "
                                       "2 = (education; marital).")] = 1,
    models: Annotated[str | None, typer.Option(
        "--models", help="Comma-separated models (default: the paper's seven; cgc, ple also "
                         "accepted).")] = None,
    runs: Annotated[int, typer.Option("--runs", help="Runs per model from random init.")] = 3,
    data_dir: Annotated[str | None, typer.Option(
        "--data-dir", help="Census-Income files (default: $MMOE_DATA_DIR, else the user "
                           "cache dir).")] = None,
    out: Annotated[str | None, typer.Option(
        "--out", help="Output directory (default: results/census_g<group>).")] = None,
    config: Annotated[str | None, typer.Option(
        "--config", help="Config file (e.g. from mmoe tune) overriding the committed "
                         "settings of the models it lists.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="First run seed.")] = 0,
    threads: Annotated[int, typer.Option("--threads", help="Intra-op threads per run.")] = 1,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", help="Override every model's epochs (quick checks).")] = None,
    nrows: Annotated[int | None, typer.Option(
        "--nrows", help="Read only the first N rows of each file (quick checks).")] = None,
) -> None:
    """Reproduce the paper's Census-Income Table 1 or 2 (results.json, report.md, figure)."""
    from .experiments.census import run_census

    res = run_census(group, models=_model_list(models), runs=runs, data_dir=data_dir,
                     out=out or f"results/census_g{group}", config=config, seed=seed,
                     threads=threads, epochs=epochs, nrows=nrows, log=typer.echo)
    typer.echo(f"wrote {res.files['results']}, {res.files['report']}")


@app.command("tune")
def tune_cmd(
    model: Annotated[str, typer.Option("--model", help="Model to tune.")],
    group: Annotated[int, typer.Option("--group", help="Census group, 1 or 2.")] = 1,
    trials: Annotated[int, typer.Option("--trials", help="Optuna trials.")] = 20,
    data_dir: Annotated[str | None, typer.Option(
        "--data-dir", help="Census-Income files (default: $MMOE_DATA_DIR).")] = None,
    out: Annotated[str | None, typer.Option(
        "--out", help="Config file to write (default: census_g<group>_<model>.toml).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampler and training seed.")] = 0,
    threads: Annotated[int, typer.Option("--threads", help="Intra-op threads.")] = 1,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Stop starting trials after this many seconds.")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="auto, gp or tpe.")] = "auto",
    nrows: Annotated[int | None, typer.Option(
        "--nrows", help="Read only the first N rows of each file (quick checks).")] = None,
) -> None:
    """Search a model's census hyperparameters (validation main-task AUC) with Optuna."""
    from .experiments.tune import tune

    res = tune(model, group, trials, data_dir=data_dir,
               out=out or f"census_g{group}_{model}.toml", nrows=nrows, seed=seed,
               threads=threads, timeout=timeout, sampler=sampler, log=typer.echo)
    typer.echo(f"best validation AUC {res.value:.4f} after {res.trials} trials; "
               f"config written to {res.path}")
