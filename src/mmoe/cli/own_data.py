"""`mmoe train`, `evaluate`, `predict`, `export` and `inspect`: a user's own table."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from .._checks import output_apart
from ._app import app, native, opt

# --- your own data: mmoe train | evaluate | predict | export ----------------------------------
_LIST = "Repeat the flag or separate names with commas."


# `mmoe train`'s options: the help of each, by parameter name
TRAIN_HELP = {
    "out": "Model directory to write.",
    "train": "Training file (.csv, .csv.gz, .parquet) or directory of Parquet shards.",
    "task": ("COLUMN:KIND[:POSITIVE], KIND = binary | regression | multiclass "
             "(e.g. morekids:binary:yes). Repeat per task."),
    "valid": "Validation file (default: hold out part of --train).",
    "model": "Model name (mmoe models).",
    "epochs": "Max epochs (default: from the rows, enough for ~4000 steps, 10 to 200).",
    "batch_size": "Rows per step (default: the power of two nearest rows/64, 32 to 1024).",
    "lr": "Adam learning rate, the peak of a 5% warm-up then cosine decay.",
    "numeric_encoding": ("How numeric columns become inputs: auto (ple), standard, quantile "
                         "(quantile-normal) or ple (piecewise-linear over 64 training-quantile "
                         "bins); a column's --feature NAME:numeric:encoding=... overrides it."),
    "threads": "Intra-op threads.",
    "config": "TOML file with [data], [columns], tasks, [model], [training]; flags override it.",
    "id_columns": f"Id column(s), copied to predictions. {_LIST}",
    "weight": "Sample-weight column.",
    "numeric": f"Columns to treat as numeric. {_LIST}",
    "categorical": f"Columns to treat as categorical. {_LIST}",
    "exclude": f"Columns not used as inputs. {_LIST}",
    "feature": ("A column's spec, NAME:KIND[:KEY=VALUE,...]: KIND numeric | categorical | "
                "hashed | sequence; keys embedding_dim, min_count, buckets, max_len, pooling "
                "(sum | mean), delimiter, share (e.g. history:sequence:share=item_id,max_len=50)."
                " Undeclared columns are inferred and printed. Repeat per column."),
    "group_by": ("Column grouping rows (e.g. user_id) for GAUC, NDCG@10 and MRR in the "
                 "validation metrics (monitor = \"gauc:TASK\" stops early on them)."),
    "valid_fraction": "Share held out without --valid (default 0.1).",
    "stream": "Train batch by batch from the file (bounded memory).",
    "buffer_rows": "Shuffle-buffer rows with --stream.",
    "tensorboard": "Write TensorBoard event files into DIR/tensorboard.",
    "overwrite": ("Replace an existing model directory at --out (after training; only one "
                  "mmoe wrote, holding nothing else) and discard an interrupted run's "
                  "checkpoint."),
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


@app.command("train")
def train_cmd(
    out: Annotated[str, opt(TRAIN_HELP, "out")],
    train: Annotated[str | None, opt(TRAIN_HELP, "train")] = None,
    task: Annotated[list[str] | None, opt(TRAIN_HELP, "task")] = None,
    valid: Annotated[str | None, opt(TRAIN_HELP, "valid")] = None,
    model: Annotated[str | None, opt(TRAIN_HELP, "model")] = None,
    epochs: Annotated[int | None, opt(TRAIN_HELP, "epochs")] = None,
    batch_size: Annotated[int | None, opt(TRAIN_HELP, "batch_size")] = None,
    lr: Annotated[float | None, opt(TRAIN_HELP, "lr")] = None,
    seed: Annotated[int | None, opt(TRAIN_HELP, "seed")] = None,
    threads: Annotated[int | None, opt(TRAIN_HELP, "threads")] = None,
    config: Annotated[str | None, opt(TRAIN_HELP, "config")] = None,
    id_columns: Annotated[list[str] | None, opt(TRAIN_HELP, "id_columns", "--id")] = None,
    weight: Annotated[str | None, opt(TRAIN_HELP, "weight")] = None,
    numeric: Annotated[list[str] | None, opt(TRAIN_HELP, "numeric")] = None,
    categorical: Annotated[list[str] | None, opt(TRAIN_HELP, "categorical")] = None,
    exclude: Annotated[list[str] | None, opt(TRAIN_HELP, "exclude")] = None,
    feature: Annotated[list[str] | None, opt(TRAIN_HELP, "feature")] = None,
    group_by: Annotated[str | None, opt(TRAIN_HELP, "group_by")] = None,
    numeric_encoding: Annotated[str | None, opt(TRAIN_HELP, "numeric_encoding")] = None,
    valid_fraction: Annotated[float | None, opt(TRAIN_HELP, "valid_fraction")] = None,
    stream: Annotated[bool, opt(TRAIN_HELP, "stream")] = False,
    buffer_rows: Annotated[int | None, opt(TRAIN_HELP, "buffer_rows")] = None,
    tensorboard: Annotated[bool, opt(TRAIN_HELP, "tensorboard")] = False,
    overwrite: Annotated[bool, opt(TRAIN_HELP, "overwrite")] = False,
    resume: Annotated[bool, opt(TRAIN_HELP, "resume")] = False,
    checkpoint_every: Annotated[int | None, opt(TRAIN_HELP, "checkpoint_every")] = None,
    on_nonfinite: Annotated[str | None, opt(TRAIN_HELP, "on_nonfinite")] = None,
    device: Annotated[str, opt(TRAIN_HELP, "device")] = "auto",
    compile_: Annotated[bool, opt(TRAIN_HELP, "compile_")] = False,
    loss_weighting: Annotated[str | None, opt(TRAIN_HELP, "loss_weighting")] = None,
    gate_dropout: Annotated[float | None, opt(TRAIN_HELP, "gate_dropout")] = None,
    gate_balance: Annotated[float | None, opt(TRAIN_HELP, "gate_balance")] = None,
) -> None:
    """Train a multi-task model on your own table and write a model directory."""
    from ..app.fit import train_model_dir
    from ..app.predict import format_metrics
    from ..app.spec import build_run_spec
    from ..train.distributed import env_rank

    spec = build_run_spec(
        config, train=train, valid=valid, tasks=task, model=model, epochs=epochs,
        batch_size=batch_size, lr=lr, seed=seed, threads=threads, id_columns=id_columns,
        weight_column=weight, numeric=numeric, categorical=categorical, exclude=exclude,
        features=feature, group_by=group_by, numeric_encoding=numeric_encoding,
        valid_fraction=valid_fraction, stream=stream or None, buffer_rows=buffer_rows,
        tensorboard=tensorboard or None, checkpoint_every=checkpoint_every,
        on_nonfinite=on_nonfinite, compile=compile_ or None, loss_weighting=loss_weighting,
        gate_dropout=gate_dropout, gate_balance=gate_balance)
    native()
    quiet = not logging.getLogger("mmoe").isEnabledFor(logging.INFO)  # mmoe --quiet
    metrics = train_model_dir(spec, out, overwrite=overwrite, resume=resume, device=device,
                              announce=typer.echo, progress=False if quiet else None)
    if env_rank() == 0:
        typer.echo(format_metrics(metrics["valid"]))
        by = ("the combined validation score (mean skill over tasks)"
              if metrics["monitor"] == "combined" else f"validation {metrics['monitor']}")
        typer.echo(f"model written to {out} (best epoch {metrics['best_epoch']} of "
                   f"{metrics['epochs_run']}, by {by})")


@app.command("evaluate")
def evaluate_cmd(
    model_dir: Annotated[str, typer.Argument(help="Model directory from mmoe train.")],
    file: Annotated[str, typer.Argument(
        help="Labelled file (.csv, .csv.gz, .parquet) or directory of Parquet shards.")],
    json_out: Annotated[str | None, typer.Option(
        "--json", help="Also write the metrics as JSON to this file ('-': stdout only).")
    ] = None,
    group_by: Annotated[str | None, typer.Option(
        "--group-by", help="Column grouping rows (e.g. user_id): adds GAUC (groups with one "
        "class skipped, and counted), NDCG@K and MRR over the groups.")] = None,
    k: Annotated[int, typer.Option("--k", help="Cut-off of NDCG@K with --group-by.")] = 10,
) -> None:
    """Per-task metrics of a trained model on a labelled file (AUC, log-loss, calibration;
    with --group-by, per-user GAUC, NDCG@K and MRR)."""
    from .._fileio import json_text, write_text
    from ..app.predict import evaluate_dir, format_metrics
    from ..train.model_dir import own_files

    if json_out and json_out != "-":
        output_apart(json_out, [file, *own_files(model_dir)], name="--json")
    native()
    metrics = evaluate_dir(model_dir, file, group_by=group_by, k=k)
    text = json_text(metrics)  # an undefined metric is null
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
    from ..app.predict import predict_file
    from ..train.model_dir import own_files

    output_apart(out, [file, *own_files(model_dir)])
    native()
    rows = predict_file(model_dir, file, out, chunk_rows)
    typer.echo(f"{rows} predictions written to {out}")


@app.command("export")
def export_cmd(
    model_dir: Annotated[str, typer.Argument(help="Model directory from mmoe train.")],
    fmt: Annotated[str, typer.Option("--format", help="onnx or torchscript.")],
    out: Annotated[str, typer.Option("--out", help="File to write.")],
) -> None:
    """Export to ONNX or TorchScript (outputs named by task), checked against the model."""
    from ..app.export import export_model

    native()
    diff = export_model(model_dir, fmt, out)
    typer.echo(f"{fmt} model written to {out} (parity: max abs diff {diff:.2e})")




@app.command("describe")
def describe_cmd(
    model_dir: Annotated[str, typer.Argument(help="Model directory from mmoe train.")],
) -> None:
    """What a model directory holds: versions, model and size, training settings, the
    schema (inputs and how each is encoded, tasks and classes, columns kept out) and the
    validation metrics of the weights kept."""
    from ..app.schema import describe_model_dir

    typer.echo(describe_model_dir(model_dir))


@app.command("inspect")
def inspect_cmd(
    model_dir: Annotated[str, typer.Argument(help="Model directory from mmoe train.")],
    data: Annotated[str, typer.Option(
        "--data", help="Rows to average the gates over: .csv, .csv.gz or .parquet.")],
    out: Annotated[str, typer.Option("--out", help="Directory for the report files.")],
) -> None:
    """Gate health: tasks x experts heatmap, per-expert utilisation, a table and warnings."""
    from ..app.gate_report import inspect_model_dir

    native()
    report, paths = inspect_model_dir(model_dir, data, out)
    typer.echo(report.round(3).to_string())
    for warning in report.attrs.get("warnings", []):
        typer.echo(f"warning: {warning}")
    typer.echo(f"gate report written to {out} ({', '.join(p.name for p in paths.values())})")
