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
                         "(quantile-normal), ple (piecewise-linear over 64 training-quantile "
                         "bins) or periodic (learnt-frequency embeddings); a column's "
                         "--feature NAME:numeric:encoding=... overrides it."),
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
    "precision": ("fp32 (default), bf16 or fp16: the forward pass under autocast (loss and "
                  "metrics in float32; fp16 with a gradient scaler). For GPUs; on a CPU bf16 "
                  "is slower than fp32."),
    "ensemble": ("Train K models from seeds SEED..SEED+K-1 and predict with the mean of their "
                 "logits (K times the time; predict, export and serve take the ensemble). "
                 "Default: 5 for at most 10,000 training rows, else 1."),
    "loss_weighting": ("static (task weights), uncertainty (Kendall et al. 2018), gradnorm "
                       "(Chen et al. 2018) or pcgrad (Yu et al. 2020). Default: uncertainty "
                       "for at most 10,000 training rows and two tasks or more sharing layers "
                       "(not single_task), else static."),
    "gate_dropout": ("Gated models: drop each expert's gate weight with this probability in "
                     "training and renormalise. Default: 0.1 for 10,001 to 500,000 training "
                     "rows, else 0."),
    "gate_balance": "Gated models: weight of a load-balancing penalty on the gates.",
    "num_experts": "Experts per bank (default 8).",
    "expert_units": "Hidden units of each expert, per layer, e.g. 64,32 (default 32).",
    "tower_units": "Hidden units of each task tower, per layer (default 16).",
    "embedding_dim": "Width of each categorical embedding (default 8).",
    "dropout": ("Dropout in experts and towers. Default: 0.1 for 10,001 to 500,000 training "
                "rows, else 0."),
    "batch_norm": "Batch norm on the encoded input.",
    "hidden_norm": ("Batch norm in every hidden layer of the experts and towers, categorical "
                    "embeddings started small (better on recommender logs, docs/recsys.md)."),
    "wide": ("Hashed ids and sequences also get a learnt bias per id and task, added to the "
             "task's logit (Wide & Deep's wide part)."),
    "cross": ("Also feed the model the element-wise products of every two hashed-id or "
              "sequence columns of one width (a history times the candidate item)."),
    "option": ("A model option, KEY=VALUE with a TOML value (e.g. experts_per_group=2); "
               "repeat per option; see mmoe models."),
    "weight_decay": "Adam weight decay (default 0).",
    "lr_schedule": "cosine (default: 5% warm-up, then cosine to zero) or constant.",
    "warmup": "Share of the steps spent warming up (default 0.05).",
    "monitor": ("What picks the best epoch and stops early: combined (default), a task, or "
                "METRIC:TASK (e.g. gauc:click)."),
    "patience": "Stop after N epochs without improvement (default: never).",
    "keep_last": "Keep the last epoch's weights instead of the best epoch's.",
}
DATA, COLUMNS, MODEL, TRAINING, RUN = ("Data", "Tasks and columns", "Model", "Training",
                                       "Output and runs")


def _units(text: str | None, flag: str) -> list[int] | None:
    """``64,32`` -> [64, 32]."""
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, e.g. 64,32; got "
                         f"{text!r}") from None


def _options(items: list[str] | None) -> dict | None:
    """``--option KEY=VALUE`` (TOML values) as a table."""
    import tomllib

    if not items:
        return None
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"] if sep else None
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value.strip()  # plain text
        if not sep or not key.strip():
            raise ValueError(f"--option must be KEY=VALUE, got {item!r}")
    return out


@app.command("train")
def train_cmd(
    out: Annotated[str, opt(TRAIN_HELP, "out", panel=RUN)],
    train: Annotated[str | None, opt(TRAIN_HELP, "train", panel=DATA)] = None,
    task: Annotated[list[str] | None, opt(TRAIN_HELP, "task", panel=COLUMNS)] = None,
    valid: Annotated[str | None, opt(TRAIN_HELP, "valid", panel=DATA)] = None,
    model: Annotated[str | None, opt(TRAIN_HELP, "model", panel=MODEL)] = None,
    epochs: Annotated[int | None, opt(TRAIN_HELP, "epochs", panel=TRAINING)] = None,
    batch_size: Annotated[int | None, opt(TRAIN_HELP, "batch_size", panel=TRAINING)] = None,
    lr: Annotated[float | None, opt(TRAIN_HELP, "lr", panel=TRAINING)] = None,
    seed: Annotated[int | None, opt(TRAIN_HELP, "seed", panel=TRAINING)] = None,
    threads: Annotated[int | None, opt(TRAIN_HELP, "threads", panel=RUN)] = None,
    config: Annotated[str | None, opt(TRAIN_HELP, "config", panel=DATA)] = None,
    id_columns: Annotated[list[str] | None, opt(TRAIN_HELP, "id_columns", "--id",
                                                panel=COLUMNS)] = None,
    weight: Annotated[str | None, opt(TRAIN_HELP, "weight", panel=COLUMNS)] = None,
    numeric: Annotated[list[str] | None, opt(TRAIN_HELP, "numeric", panel=COLUMNS)] = None,
    categorical: Annotated[list[str] | None, opt(TRAIN_HELP, "categorical", panel=COLUMNS)] = None,
    exclude: Annotated[list[str] | None, opt(TRAIN_HELP, "exclude", panel=COLUMNS)] = None,
    feature: Annotated[list[str] | None, opt(TRAIN_HELP, "feature", panel=COLUMNS)] = None,
    group_by: Annotated[str | None, opt(TRAIN_HELP, "group_by", panel=COLUMNS)] = None,
    numeric_encoding: Annotated[str | None, opt(TRAIN_HELP, "numeric_encoding",
                                                panel=COLUMNS)] = None,
    valid_fraction: Annotated[float | None, opt(TRAIN_HELP, "valid_fraction", panel=DATA)
                              ] = None,
    stream: Annotated[bool, opt(TRAIN_HELP, "stream", panel=DATA)] = False,
    buffer_rows: Annotated[int | None, opt(TRAIN_HELP, "buffer_rows", panel=DATA)] = None,
    tensorboard: Annotated[bool, opt(TRAIN_HELP, "tensorboard", panel=RUN)] = False,
    overwrite: Annotated[bool, opt(TRAIN_HELP, "overwrite", panel=RUN)] = False,
    resume: Annotated[bool, opt(TRAIN_HELP, "resume", panel=RUN)] = False,
    checkpoint_every: Annotated[int | None, opt(TRAIN_HELP, "checkpoint_every", panel=RUN)] = None,
    on_nonfinite: Annotated[str | None, opt(TRAIN_HELP, "on_nonfinite", panel=TRAINING)] = None,
    device: Annotated[str, opt(TRAIN_HELP, "device", panel=RUN)] = "auto",
    compile_: Annotated[bool, opt(TRAIN_HELP, "compile_", panel=RUN)] = False,
    precision: Annotated[str | None, opt(TRAIN_HELP, "precision", panel=RUN)] = None,
    loss_weighting: Annotated[str | None, opt(TRAIN_HELP, "loss_weighting", panel=TRAINING)] = None,
    gate_dropout: Annotated[float | None, opt(TRAIN_HELP, "gate_dropout", panel=MODEL)] = None,
    gate_balance: Annotated[float | None, opt(TRAIN_HELP, "gate_balance", panel=MODEL)] = None,
    num_experts: Annotated[int | None, opt(TRAIN_HELP, "num_experts", panel=MODEL)] = None,
    expert_units: Annotated[str | None, opt(TRAIN_HELP, "expert_units", panel=MODEL)] = None,
    tower_units: Annotated[str | None, opt(TRAIN_HELP, "tower_units", panel=MODEL)] = None,
    embedding_dim: Annotated[int | None, opt(TRAIN_HELP, "embedding_dim", panel=MODEL)] = None,
    dropout: Annotated[float | None, opt(TRAIN_HELP, "dropout", panel=MODEL)] = None,
    batch_norm: Annotated[bool, opt(TRAIN_HELP, "batch_norm", panel=MODEL)] = False,
    hidden_norm: Annotated[bool, opt(TRAIN_HELP, "hidden_norm", panel=MODEL)] = False,
    wide: Annotated[bool, opt(TRAIN_HELP, "wide", panel=MODEL)] = False,
    cross: Annotated[bool, opt(TRAIN_HELP, "cross", panel=MODEL)] = False,
    option: Annotated[list[str] | None, opt(TRAIN_HELP, "option", panel=MODEL)] = None,
    weight_decay: Annotated[float | None, opt(TRAIN_HELP, "weight_decay", panel=TRAINING)
                            ] = None,
    lr_schedule: Annotated[str | None, opt(TRAIN_HELP, "lr_schedule", panel=TRAINING)] = None,
    warmup: Annotated[float | None, opt(TRAIN_HELP, "warmup", panel=TRAINING)] = None,
    monitor: Annotated[str | None, opt(TRAIN_HELP, "monitor", panel=TRAINING)] = None,
    patience: Annotated[int | None, opt(TRAIN_HELP, "patience", panel=TRAINING)] = None,
    keep_last: Annotated[bool, opt(TRAIN_HELP, "keep_last", panel=TRAINING)] = False,
    ensemble: Annotated[int | None, opt(TRAIN_HELP, "ensemble", panel=TRAINING)] = None,
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
        on_nonfinite=on_nonfinite, compile=compile_ or None, precision=precision,
        loss_weighting=loss_weighting,
        gate_dropout=gate_dropout, gate_balance=gate_balance, num_experts=num_experts,
        expert_units=_units(expert_units, "--expert-units"),
        tower_units=_units(tower_units, "--tower-units"), embedding_dim=embedding_dim,
        dropout=dropout, batch_norm=batch_norm or None, hidden_norm=hidden_norm or None,
        wide=wide or None,
        cross=cross or None, options=_options(option),
        weight_decay=weight_decay, lr_schedule=lr_schedule, warmup=warmup, monitor=monitor,
        patience=patience, restore_best=False if keep_last else None, ensemble=ensemble)
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
    raw: Annotated[bool, typer.Option(
        "--raw", help="ONNX only: one graph from the raw columns (numbers as double with NaN, "
        "categories as text) to each task's answer in the label's units, the encoding "
        "inside; checked against mmoe predict. Hashed and sequence columns are refused."
    )] = False,
) -> None:
    """Export to ONNX or TorchScript (outputs named by task), checked against the model."""
    from ..app.export import export_model

    native()
    diff = export_model(model_dir, fmt, out, raw=raw)
    what = "raw-column onnx" if raw else fmt
    typer.echo(f"{what} model written to {out} (parity: max abs diff {diff:.2e})")




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
