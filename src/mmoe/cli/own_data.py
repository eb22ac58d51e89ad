"""The ``mmoe`` command line. Thin: parse options into config objects, call the library,
print. User errors (``ValueError``, missing files) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from ._checks import writable_dir
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


def _native() -> None:
    """Build (once per machine) or load the native CPU kernels before a command computes:
    one message while compiling, a warning with the reason if they cannot be built."""
    from .ops import build_native

    build_native()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``mmoe`` script: user errors exit 2 with one line on stderr."""
    try:
        app(args=argv, standalone_mode=True)
    except (ValueError, OSError) as err:  # OSError: e.g. the disk filled up while saving
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


# --- your own data: mmoe train | evaluate | predict | export ----------------------------------
_LIST = "Repeat the flag or separate names with commas."


# `mmoe train`'s options: the help of each, by parameter name
TRAIN_HELP = {
    "out": "Model directory to write.",
    "train": "Training file: .csv, .csv.gz or .parquet.",
    "task": ("COLUMN:KIND[:POSITIVE], KIND = binary | regression | multiclass "
             "(e.g. morekids:binary:yes). Repeat per task."),
    "valid": "Validation file (default: hold out part of --train).",
    "model": "Model name (mmoe models).",
    "epochs": "Max epochs.",
    "lr": "Adam learning rate.",
    "threads": "Intra-op threads.",
    "config": "TOML file with [data], [columns], tasks, [model], [training]; flags override it.",
    "id_columns": f"Id column(s), copied to predictions. {_LIST}",
    "weight": "Sample-weight column.",
    "numeric": f"Columns to treat as numeric. {_LIST}",
    "categorical": f"Columns to treat as categorical. {_LIST}",
    "exclude": f"Columns not used as inputs. {_LIST}",
    "valid_fraction": "Share held out without --valid (default 0.1).",
    "stream": "Train batch by batch from the file (bounded memory).",
    "buffer_rows": "Shuffle-buffer rows with --stream.",
    "tensorboard": "Write TensorBoard event files into DIR/tensorboard.",
    "overwrite": ("Replace an existing --out directory (after training) and discard an "
                  "interrupted run's checkpoint."),
    "resume": ("Continue an interrupted run of --out from its checkpoint (.DIR.partial beside "
               "DIR); start fresh when there is none."),
    "checkpoint_every": "Also checkpoint every N steps (epoch ends always checkpoint).",
    "on_nonfinite": ("A NaN/inf loss or gradient: stop (error, last good checkpoint kept) or "
                     "skip the step."),
    "device": ("auto (CUDA when available), cpu or cuda. Under torchrun --nproc_per_node=N "
               "training is data-parallel."),
    "compile_": ("Train through torch.compile: a compile of seconds to tens of seconds, for "
                 "models whose steps are many small torch ops (on the census MMoE the native "
                 "kernels leave it nothing to gain)."),
    "loss_weighting": ("static (task weights), uncertainty (Kendall et al. 2018), gradnorm "
                       "(Chen et al. 2018) or pcgrad (Yu et al. 2020)."),
    "gate_dropout": ("Gated models: drop each expert's gate weight with this probability in "
                     "training and renormalise."),
    "gate_balance": "Gated models: weight of a load-balancing penalty on the gates.",
}


def _opt(helps: dict[str, str], name: str, flag: str | None = None) -> Any:
    """A typer option for a command's parameter ``name``: ``--name-with-dashes`` (or
    ``flag``), with its help from the command's table ``helps``."""
    return typer.Option(flag or "--" + name.rstrip("_").replace("_", "-"), help=helps.get(name))


@app.command("train")
def train_cmd(
    out: Annotated[str, _opt(TRAIN_HELP, "out")],
    train: Annotated[str | None, _opt(TRAIN_HELP, "train")] = None,
    task: Annotated[list[str] | None, _opt(TRAIN_HELP, "task")] = None,
    valid: Annotated[str | None, _opt(TRAIN_HELP, "valid")] = None,
    model: Annotated[str | None, _opt(TRAIN_HELP, "model")] = None,
    epochs: Annotated[int | None, _opt(TRAIN_HELP, "epochs")] = None,
    batch_size: Annotated[int | None, _opt(TRAIN_HELP, "batch_size")] = None,
    lr: Annotated[float | None, _opt(TRAIN_HELP, "lr")] = None,
    seed: Annotated[int | None, _opt(TRAIN_HELP, "seed")] = None,
    threads: Annotated[int | None, _opt(TRAIN_HELP, "threads")] = None,
    config: Annotated[str | None, _opt(TRAIN_HELP, "config")] = None,
    id_columns: Annotated[list[str] | None, _opt(TRAIN_HELP, "id_columns", "--id")] = None,
    weight: Annotated[str | None, _opt(TRAIN_HELP, "weight")] = None,
    numeric: Annotated[list[str] | None, _opt(TRAIN_HELP, "numeric")] = None,
    categorical: Annotated[list[str] | None, _opt(TRAIN_HELP, "categorical")] = None,
    exclude: Annotated[list[str] | None, _opt(TRAIN_HELP, "exclude")] = None,
    valid_fraction: Annotated[float | None, _opt(TRAIN_HELP, "valid_fraction")] = None,
    stream: Annotated[bool, _opt(TRAIN_HELP, "stream")] = False,
    buffer_rows: Annotated[int | None, _opt(TRAIN_HELP, "buffer_rows")] = None,
    tensorboard: Annotated[bool, _opt(TRAIN_HELP, "tensorboard")] = False,
    overwrite: Annotated[bool, _opt(TRAIN_HELP, "overwrite")] = False,
    resume: Annotated[bool, _opt(TRAIN_HELP, "resume")] = False,
    checkpoint_every: Annotated[int | None, _opt(TRAIN_HELP, "checkpoint_every")] = None,
    on_nonfinite: Annotated[str | None, _opt(TRAIN_HELP, "on_nonfinite")] = None,
    device: Annotated[str, _opt(TRAIN_HELP, "device")] = "auto",
    compile_: Annotated[bool, _opt(TRAIN_HELP, "compile_")] = False,
    loss_weighting: Annotated[str | None, _opt(TRAIN_HELP, "loss_weighting")] = None,
    gate_dropout: Annotated[float | None, _opt(TRAIN_HELP, "gate_dropout")] = None,
    gate_balance: Annotated[float | None, _opt(TRAIN_HELP, "gate_balance")] = None,
) -> None:
    """Train a multi-task model on your own table and write a model directory."""
    from .app.fit import train_model_dir
    from .app.predict import format_metrics
    from .app.spec import build_run_spec
    from .train.distributed import env_rank

    spec = build_run_spec(
        config, train=train, valid=valid, tasks=task, model=model, epochs=epochs,
        batch_size=batch_size, lr=lr, seed=seed, threads=threads, id_columns=id_columns,
        weight_column=weight, numeric=numeric, categorical=categorical, exclude=exclude,
        valid_fraction=valid_fraction, stream=stream or None, buffer_rows=buffer_rows,
        tensorboard=tensorboard or None, checkpoint_every=checkpoint_every,
        on_nonfinite=on_nonfinite, compile=compile_ or None, loss_weighting=loss_weighting,
        gate_dropout=gate_dropout, gate_balance=gate_balance)
    _native()
    metrics = train_model_dir(spec, out, overwrite=overwrite, resume=resume, device=device)
    if env_rank() == 0:
        typer.echo(format_metrics(metrics["valid"]))
        typer.echo(f"model written to {out} (best epoch {metrics['best_epoch']})")


@app.command("evaluate")
def evaluate_cmd(
    model_dir: Annotated[str, typer.Argument(help="Model directory from mmoe train.")],
    file: Annotated[str, typer.Argument(help="Labelled file: .csv, .csv.gz or .parquet.")],
    json_out: Annotated[str | None, typer.Option(
        "--json", help="Also write the metrics as JSON to this file ('-': stdout only).")
    ] = None,
) -> None:
    """Per-task metrics of a trained model on a labelled file."""
    import json

    from ._fileio import write_text
    from .app.predict import evaluate_dir, format_metrics

    _native()
    metrics = evaluate_dir(model_dir, file)
    text = json.dumps(metrics, indent=2)
    if json_out == "-":
        typer.echo(text)
        return
    typer.echo(format_metrics(metrics))
    if json_out:
        write_text(json_out, text + "\n")


@app.command("predict")
def predict_cmd(
    model_dir: Annotated[str, typer.Argument(help="Model directory from mmoe train.")],
    file: Annotated[str, typer.Argument(help="Rows to predict: .csv, .csv.gz or .parquet.")],
    out: Annotated[str, typer.Option(
        "--out", help="Predictions file, CSV or Parquet by extension.")],
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", help="Rows per chunk.")] = 65_536,
) -> None:
    """Predict every row: one column per task, id columns kept."""
    from .app.predict import predict_file

    _native()
    rows = predict_file(model_dir, file, out, chunk_rows)
    typer.echo(f"{rows} predictions written to {out}")


@app.command("export")
def export_cmd(
    model_dir: Annotated[str, typer.Argument(help="Model directory from mmoe train.")],
    fmt: Annotated[str, typer.Option("--format", help="onnx or torchscript.")],
    out: Annotated[str, typer.Option("--out", help="File to write.")],
) -> None:
    """Export to ONNX or TorchScript (outputs named by task), checked against the model."""
    from .app.export import export_model

    _native()
    diff = export_model(model_dir, fmt, out)
    typer.echo(f"{fmt} model written to {out} (parity: max abs diff {diff:.2e})")


# --- mmoe reproduce census | mmoe tune ------------------------------------------------------
def _model_list(models: str | None) -> list[str] | None:
    return [m.strip() for m in models.split(",") if m.strip()] if models else None


# `mmoe reproduce census`'s options
CENSUS_HELP = {
    "group": "1 = (income; marital), 2 = (education; marital).",
    "models": "Comma-separated models (default: the paper's seven; cgc, ple also accepted).",
    "runs": "Runs per model from random init.",
    "data_dir": "Census-Income files (default: $MMOE_DATA_DIR, else the user cache dir).",
    "out": "Output directory (default: results/census_g<group>).",
    "config": ("Config file (e.g. from mmoe tune) overriding the committed settings of the models "
               "it lists."),
    "seed": "First run seed.",
    "threads": "Intra-op threads per run.",
    "epochs": "Override every model's epochs (quick checks).",
    "nrows": "Read only the first N rows of each file (quick checks).",
    "jobs": ("Runs trained at once, one worker process each (default: min(2, CPU cores)); results "
             "do not depend on it."),
}


@reproduce_app.command("census")
def reproduce_census_cmd(
    group: Annotated[int, _opt(CENSUS_HELP, "group")] = 1,
    models: Annotated[str | None, _opt(CENSUS_HELP, "models")] = None,
    runs: Annotated[int, _opt(CENSUS_HELP, "runs")] = 3,
    data_dir: Annotated[str | None, _opt(CENSUS_HELP, "data_dir")] = None,
    out: Annotated[str | None, _opt(CENSUS_HELP, "out")] = None,
    config: Annotated[str | None, _opt(CENSUS_HELP, "config")] = None,
    seed: Annotated[int, _opt(CENSUS_HELP, "seed")] = 0,
    threads: Annotated[int, _opt(CENSUS_HELP, "threads")] = 1,
    epochs: Annotated[int | None, _opt(CENSUS_HELP, "epochs")] = None,
    nrows: Annotated[int | None, _opt(CENSUS_HELP, "nrows")] = None,
    jobs: Annotated[int | None, _opt(CENSUS_HELP, "jobs")] = None,
) -> None:
    """Reproduce the paper's Census-Income Table 1 or 2 (results.json, report.md, figure).

    Under torchrun (e.g. `torchrun --nproc_per_node=2 -m mmoe reproduce census ...`) every run
    trains data-parallel over the ranks and rank 0 writes the outputs.
    """
    from .experiments.census import run_census

    writable_dir(out or f"results/census_g{group}")  # fail now, not after the runs
    _native()
    res = run_census(group, models=_model_list(models), runs=runs, data_dir=data_dir,
                     out=out or f"results/census_g{group}", config=config, seed=seed,
                     threads=threads, epochs=epochs, nrows=nrows, jobs=jobs, log=typer.echo)
    if res.files:  # under torchrun only rank 0 writes
        typer.echo(f"wrote {res.files['results']}, {res.files['report']}")


# `mmoe tune`'s options
TUNE_HELP = {
    "model": "Model to tune.",
    "group": "Census group, 1 or 2.",
    "trials": "Optuna trials.",
    "data_dir": "Census-Income files (default: $MMOE_DATA_DIR).",
    "out": "Config file to write (default: census_g<group>_<model>.toml).",
    "seed": "Sampler and training seed.",
    "threads": "Intra-op threads.",
    "timeout": "Stop starting trials after this many seconds.",
    "sampler": "auto, gp or tpe.",
    "max_epochs": "Upper end of the epochs searched.",
    "max_units": ("Cap on experts x units for MoE models (paper: 2048; smaller bounds the time "
                  "per trial)."),
    "nrows": "Read only the first N rows of each file (quick checks).",
}


@app.command("tune")
def tune_cmd(
    model: Annotated[str, _opt(TUNE_HELP, "model")],
    group: Annotated[int, _opt(TUNE_HELP, "group")] = 1,
    trials: Annotated[int, _opt(TUNE_HELP, "trials")] = 20,
    data_dir: Annotated[str | None, _opt(TUNE_HELP, "data_dir")] = None,
    out: Annotated[str | None, _opt(TUNE_HELP, "out")] = None,
    seed: Annotated[int, _opt(TUNE_HELP, "seed")] = 0,
    threads: Annotated[int, _opt(TUNE_HELP, "threads")] = 1,
    timeout: Annotated[float | None, _opt(TUNE_HELP, "timeout")] = None,
    sampler: Annotated[str, _opt(TUNE_HELP, "sampler")] = "auto",
    max_epochs: Annotated[int, _opt(TUNE_HELP, "max_epochs")] = 10,
    max_units: Annotated[int, _opt(TUNE_HELP, "max_units")] = 2048,
    nrows: Annotated[int | None, _opt(TUNE_HELP, "nrows")] = None,
) -> None:
    """Search a model's census hyperparameters (validation main-task AUC) with Optuna."""
    from .experiments.census.tune import tune

    writable_dir(out or f"census_g{group}_{model}.toml")
    _native()
    res = tune(model, group, trials, data_dir=data_dir,
               out=out or f"census_g{group}_{model}.toml", nrows=nrows, seed=seed,
               threads=threads, timeout=timeout, sampler=sampler, max_epochs=max_epochs,
               max_units=max_units, log=typer.echo)
    typer.echo(f"best validation AUC {res.value:.4f} after {res.trials} trials; "
               f"config written to {res.path}")


# --- mmoe reproduce synthetic -----------------------------------------------------------------
def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{name} must be comma-separated numbers, got {text!r}") from None


# `mmoe reproduce synthetic`'s options
SYNTHETIC_HELP = {
    "runs": "Runs per (model, correlation) (default 16; the paper used 200).",
    "steps": "Adam steps per run.",
    "correlations": "Task correlations p (default 0.5,0.9,1.0).",
    "models": "Comma-separated models (default shared_bottom,omoe,mmoe).",
    "lr": "Comma-separated learning-rate grid, chosen on validation data.",
    "lr_runs": "Pilot runs per (lr, correlation) for choosing the lr.",
    "batch_size": "Rows per step.",
    "n_train": "Training rows per run.",
    "d": "Input dimension (default 100).",
    "c": "Scale of w1, w2 (default 1).",
    "m": "Number of sine terms (default 10).",
    "sigma": "Label noise std (default 0.1).",
    "alpha_std": "Std of the sine frequencies alpha_i (default 1).",
    "seed": "Run r uses seed + r (--independent: seed + 10000*i + r at the i-th correlation).",
    "paired": ("Run r shares its seed (data and initialisation) across the correlations, so only "
               "p differs (default), or draws them independently per correlation."),
    "threads": "Intra-op threads.",
    "out": "Output directory.",
    "progress": "Show a progress bar (default: when stderr is a terminal).",
}


@reproduce_app.command("synthetic")
def reproduce_synthetic_cmd(
    runs: Annotated[int | None, _opt(SYNTHETIC_HELP, "runs")] = None,
    steps: Annotated[int | None, _opt(SYNTHETIC_HELP, "steps")] = None,
    correlations: Annotated[str | None, _opt(SYNTHETIC_HELP, "correlations")] = None,
    models: Annotated[str | None, _opt(SYNTHETIC_HELP, "models")] = None,
    lr: Annotated[str | None, _opt(SYNTHETIC_HELP, "lr")] = None,
    lr_runs: Annotated[int | None, _opt(SYNTHETIC_HELP, "lr_runs")] = None,
    batch_size: Annotated[int | None, _opt(SYNTHETIC_HELP, "batch_size")] = None,
    n_train: Annotated[int | None, _opt(SYNTHETIC_HELP, "n_train")] = None,
    d: Annotated[int | None, _opt(SYNTHETIC_HELP, "d")] = None,
    c: Annotated[float | None, _opt(SYNTHETIC_HELP, "c")] = None,
    m: Annotated[int | None, _opt(SYNTHETIC_HELP, "m")] = None,
    sigma: Annotated[float | None, _opt(SYNTHETIC_HELP, "sigma")] = None,
    alpha_std: Annotated[float | None, _opt(SYNTHETIC_HELP, "alpha_std")] = None,
    seed: Annotated[int, _opt(SYNTHETIC_HELP, "seed")] = 0,
    paired: Annotated[bool, _opt(SYNTHETIC_HELP, "paired", "--paired/--independent")] = True,
    threads: Annotated[int, _opt(SYNTHETIC_HELP, "threads")] = 1,
    out: Annotated[str, _opt(SYNTHETIC_HELP, "out")] = "results/synthetic",
    progress: Annotated[bool | None,
                        _opt(SYNTHETIC_HELP, "progress", "--progress/--no-progress")] = None,
) -> None:
    """Reproduce the paper's synthetic task-relatedness study (Figs. 2, 4, 5)."""
    from tqdm import tqdm

    from .experiments.synthetic import SyntheticConfig, planned_steps, run_synthetic

    writable_dir(out)
    _native()
    given = {"runs": runs, "steps": steps, "lr_runs": lr_runs, "batch_size": batch_size,
             "n_train": n_train, "d": d, "c": c, "m": m, "sigma": sigma,
             "alpha_std": alpha_std,
             "correlations": correlations and _floats(correlations, "--correlations"),
             "models": models and tuple(_model_list(models) or ()),
             "lr_grid": lr and _floats(lr, "--lr")}
    cfg = SyntheticConfig(seed=seed, paired=paired, threads=threads,
                          **{k: v for k, v in given.items() if v is not None})
    # disable=None: tqdm shows the bar only on a terminal
    with tqdm(total=planned_steps(cfg), unit="step",
              disable=None if progress is None else not progress) as bar:
        res = run_synthetic(cfg, out, progress=bar.update)
    for row in res["summary"]:
        typer.echo(f"{row['model']:14s} p={row['correlation']:<4} final loss "
                   f"{row['final_loss_mean']:.4f} ± {row['final_loss_std']:.4f}")
    held = sum(1 for cl in res["claims"] if cl["holds"])
    typer.echo(f"claims holding: {held}/{len(res['claims'])}; wrote {out}/results.json, "
               f"{out}/report.md")


@app.command("inspect")
def inspect_cmd(
    model_dir: Annotated[str, typer.Argument(help="Model directory from mmoe train.")],
    data: Annotated[str, typer.Option(
        "--data", help="Rows to average the gates over: .csv, .csv.gz or .parquet.")],
    out: Annotated[str, typer.Option("--out", help="Directory for the report files.")],
) -> None:
    """Gate health: tasks x experts heatmap, per-expert utilisation, a table and warnings."""
    from .app.gate_report import inspect_model_dir

    _native()
    report, paths = inspect_model_dir(model_dir, data, out)
    typer.echo(report.round(3).to_string())
    for warning in report.attrs.get("warnings", []):
        typer.echo(f"warning: {warning}")
    typer.echo(f"gate report written to {out} ({', '.join(p.name for p in paths.values())})")
