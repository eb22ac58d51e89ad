"""`mmoe reproduce census`, `mmoe reproduce synthetic` and `mmoe tune`: the paper's experiments."""

from __future__ import annotations

from typing import Annotated

import typer

from .._checks import check, writable_dir
from ._app import app, native, opt, reproduce_app


# --- mmoe reproduce census | mmoe tune ------------------------------------------------------
def _model_list(models: str | None) -> list[str] | None:
    return [m.strip() for m in models.split(",") if m.strip()] if models else None


# `mmoe reproduce census`'s options
CENSUS_HELP = {
    "group": "1 = (income; marital), 2 = (education; marital).",
    "models": "Comma-separated models (default: the paper's seven, then cgc and ple).",
    "runs": "Runs per model from random init (default 10).",
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
    group: Annotated[int, opt(CENSUS_HELP, "group")] = 1,
    models: Annotated[str | None, opt(CENSUS_HELP, "models")] = None,
    runs: Annotated[int | None, opt(CENSUS_HELP, "runs")] = None,
    data_dir: Annotated[str | None, opt(CENSUS_HELP, "data_dir")] = None,
    out: Annotated[str | None, opt(CENSUS_HELP, "out")] = None,
    config: Annotated[str | None, opt(CENSUS_HELP, "config")] = None,
    seed: Annotated[int, opt(CENSUS_HELP, "seed")] = 0,
    threads: Annotated[int, opt(CENSUS_HELP, "threads")] = 1,
    epochs: Annotated[int | None, opt(CENSUS_HELP, "epochs")] = None,
    nrows: Annotated[int | None, opt(CENSUS_HELP, "nrows")] = None,
    jobs: Annotated[int | None, opt(CENSUS_HELP, "jobs")] = None,
) -> None:
    """Reproduce the paper's Census-Income Table 1 or 2 (results.json, report.md, figure).

    Under torchrun (e.g. `torchrun --nproc_per_node=2 -m mmoe reproduce census ...`) every run
    trains data-parallel over the ranks and rank 0 writes the outputs.
    """
    from ..experiments.census import run_census
    from ..experiments.census.config import DEFAULT_RUNS

    writable_dir(out or f"results/census_g{group}")  # fail now, not after the runs
    native()
    res = run_census(group, models=_model_list(models),
                     runs=DEFAULT_RUNS if runs is None else runs, data_dir=data_dir,
                     out=out or f"results/census_g{group}", config=config, seed=seed,
                     threads=threads, epochs=epochs, nrows=nrows, jobs=jobs, log=typer.echo)
    if res.files:  # under torchrun only rank 0 writes
        typer.echo(f"wrote {res.files['results']}, {res.files['report']}")


# `mmoe tune`'s options
TUNE_HELP = {
    "train": ("Your table: training file or directory of Parquet shards (tunes on it; without "
              "--train or --config, tunes a census model)."),
    "valid": "Validation file (default: a held-out share of --train).",
    "task": "Your table: COLUMN:KIND[:POSITIVE], repeat per task.",
    "config": "Your table: a config file (mmoe train --config) whose settings are trial 0.",
    "budget": "Your table: search time, e.g. 600, 90s, 10m, 1h (no trial starts after it).",
    "families": "Your table: models searched, comma-separated (mmoe, ple, shared_bottom).",
    "model": ("Census: the model to tune; several comma-separated, or 'all' (the paper's "
              "seven, CGC and PLE), tune each under the same protocol into one config file."),
    "group": "Census group, 1 or 2.",
    "trials": "Trials (census default 20; your table: as many as the budget allows).",
    "data_dir": "Census-Income files (default: $MMOE_DATA_DIR).",
    "out": ("Config file to write (default: best.toml for your table, "
            "census_g<group>_<model>.toml for census)."),
    "seed": "Sampler and training seed.",
    "threads": "Intra-op threads.",
    "timeout": "Census: stop starting trials after this many seconds.",
    "sampler": "Census: auto, gp or tpe.",
    "max_epochs": "Census: upper end of the epochs searched.",
    "max_units": ("Census: cap on experts x units for MoE models (paper: 2048; smaller bounds "
                  "the time per trial)."),
    "nrows": "Census: read only the first N rows of each file (quick checks).",
}


@app.command("tune")
def tune_cmd(
    train: Annotated[str | None, opt(TUNE_HELP, "train")] = None,
    valid: Annotated[str | None, opt(TUNE_HELP, "valid")] = None,
    task: Annotated[list[str] | None, opt(TUNE_HELP, "task")] = None,
    config: Annotated[str | None, opt(TUNE_HELP, "config")] = None,
    budget: Annotated[str, opt(TUNE_HELP, "budget")] = "10m",
    families: Annotated[str, opt(TUNE_HELP, "families")] = "mmoe,ple,shared_bottom",
    model: Annotated[str | None, opt(TUNE_HELP, "model")] = None,
    group: Annotated[int, opt(TUNE_HELP, "group")] = 1,
    trials: Annotated[int | None, opt(TUNE_HELP, "trials")] = None,
    data_dir: Annotated[str | None, opt(TUNE_HELP, "data_dir")] = None,
    out: Annotated[str | None, opt(TUNE_HELP, "out")] = None,
    seed: Annotated[int, opt(TUNE_HELP, "seed")] = 0,
    threads: Annotated[int, opt(TUNE_HELP, "threads")] = 1,
    timeout: Annotated[float | None, opt(TUNE_HELP, "timeout")] = None,
    sampler: Annotated[str, opt(TUNE_HELP, "sampler")] = "auto",
    max_epochs: Annotated[int, opt(TUNE_HELP, "max_epochs")] = 10,
    max_units: Annotated[int, opt(TUNE_HELP, "max_units")] = 2048,
    nrows: Annotated[int | None, opt(TUNE_HELP, "nrows")] = None,
) -> None:
    """Search hyperparameters with Optuna and write a config file: on your table (--train,
    --task or --config; judged by the combined validation score, trials pruned on their
    validation history; reuse it with mmoe train --config), or for a census model (--model,
    --group; validation main-task AUC)."""
    if train or config:
        return _tune_table(train, valid, task, config, budget, families, trials, out, seed,
                           threads)
    if model is None:
        raise ValueError("mmoe tune needs --train and --task (or --config) to tune on your "
                         "table, or --model (and --group) to tune a census model")
    from ..experiments.census.tune import ALL_MODELS, tune, tune_all

    names = ALL_MODELS if model == "all" else tuple(m.strip() for m in model.split(","))
    if len(names) > 1:
        check(timeout is None, "--timeout would give the models unequal budgets; "
                      "tune several models with --trials only")
        path = out or f"census_g{group}.toml"
        writable_dir(path)
        native()
        results = tune_all(names, group, 16 if trials is None else trials, data_dir=data_dir,
                           out=path, nrows=nrows, seed=seed, threads=threads,
                           sampler=sampler, max_epochs=max_epochs, max_units=max_units,
                           log=typer.echo)
        for name, res in results.items():
            typer.echo(f"{name}: best validation AUC {res.value:.4f} after {res.trials} "
                       "trials")
        typer.echo(f"config written to {path}")
        return None
    writable_dir(out or f"census_g{group}_{model}.toml")
    native()
    res = tune(model, group, 20 if trials is None else trials, data_dir=data_dir,
               out=out or f"census_g{group}_{model}.toml", nrows=nrows, seed=seed,
               threads=threads, timeout=timeout, sampler=sampler, max_epochs=max_epochs,
               max_units=max_units, log=typer.echo)
    typer.echo(f"best validation AUC {res.value:.4f} after {res.trials} trials; "
               f"config written to {res.path}")
    return None


def _tune_table(train, valid, task, config, budget, families, trials, out, seed,
                threads) -> None:
    import shlex
    import sys

    from ..app.spec import build_run_spec
    from ..app.tune import parse_budget, tune_table

    seconds = parse_budget(budget)
    out = out or "best.toml"
    writable_dir(out)
    base = build_run_spec(config, train=train, valid=valid, tasks=task, threads=threads)
    native()
    res = tune_table(base, seconds, trials=trials, seed=seed,
                     families=tuple(f.strip() for f in families.split(",") if f.strip()),
                     out=out, command=shlex.join(["mmoe", *sys.argv[1:]]), log=typer.echo)
    typer.echo(f"best combined validation score {res.value:.4f} after {res.trials} trials "
               f"({res.pruned} pruned); config written to {res.path}; train it: mmoe train "
               f"--config {res.path} --out MODEL")


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
    "lr_schedule": ("Learning rate over the steps: cosine (default: linear warm-up over "
                    "--warmup of the steps, then cosine decay to zero), or constant."),
    "warmup": "Share of the steps spent warming up (cosine only; default 0.05).",
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
    runs: Annotated[int | None, opt(SYNTHETIC_HELP, "runs")] = None,
    steps: Annotated[int | None, opt(SYNTHETIC_HELP, "steps")] = None,
    correlations: Annotated[str | None, opt(SYNTHETIC_HELP, "correlations")] = None,
    models: Annotated[str | None, opt(SYNTHETIC_HELP, "models")] = None,
    lr: Annotated[str | None, opt(SYNTHETIC_HELP, "lr")] = None,
    lr_runs: Annotated[int | None, opt(SYNTHETIC_HELP, "lr_runs")] = None,
    lr_schedule: Annotated[str | None, opt(SYNTHETIC_HELP, "lr_schedule")] = None,
    warmup: Annotated[float | None, opt(SYNTHETIC_HELP, "warmup")] = None,
    batch_size: Annotated[int | None, opt(SYNTHETIC_HELP, "batch_size")] = None,
    n_train: Annotated[int | None, opt(SYNTHETIC_HELP, "n_train")] = None,
    d: Annotated[int | None, opt(SYNTHETIC_HELP, "d")] = None,
    c: Annotated[float | None, opt(SYNTHETIC_HELP, "c")] = None,
    m: Annotated[int | None, opt(SYNTHETIC_HELP, "m")] = None,
    sigma: Annotated[float | None, opt(SYNTHETIC_HELP, "sigma")] = None,
    alpha_std: Annotated[float | None, opt(SYNTHETIC_HELP, "alpha_std")] = None,
    seed: Annotated[int, opt(SYNTHETIC_HELP, "seed")] = 0,
    paired: Annotated[bool, opt(SYNTHETIC_HELP, "paired", "--paired/--independent")] = True,
    threads: Annotated[int, opt(SYNTHETIC_HELP, "threads")] = 1,
    out: Annotated[str, opt(SYNTHETIC_HELP, "out")] = "results/synthetic",
    progress: Annotated[bool | None,
                        opt(SYNTHETIC_HELP, "progress", "--progress/--no-progress")] = None,
) -> None:
    """Reproduce the paper's synthetic task-relatedness study (Figs. 2, 4, 5)."""
    from .._progress import progress_bar
    from ..experiments.synthetic import SyntheticConfig, planned_steps, run_synthetic

    writable_dir(out)
    native()
    given = {"runs": runs, "steps": steps, "lr_runs": lr_runs, "batch_size": batch_size,
             "lr_schedule": lr_schedule, "warmup": warmup,
             "n_train": n_train, "d": d, "c": c, "m": m, "sigma": sigma,
             "alpha_std": alpha_std,
             "correlations": correlations and _floats(correlations, "--correlations"),
             "models": models and tuple(_model_list(models) or ()),
             "lr_grid": lr and _floats(lr, "--lr")}
    cfg = SyntheticConfig(seed=seed, paired=paired, threads=threads,
                          **{k: v for k, v in given.items() if v is not None})
    # a bar on a terminal, else a log line every 30 s
    with progress_bar(planned_steps(cfg), "synthetic study", "step", progress) as bar:
        res = run_synthetic(cfg, out, progress=bar.update)
    for row in res["summary"]:
        typer.echo(f"{row['model']:14s} p={row['correlation']:<4} final loss "
                   f"{row['final_loss_mean']:.4f} ± {row['final_loss_std']:.4f}")
    held = sum(1 for cl in res["claims"] if cl["holds"])
    typer.echo(f"claims holding: {held}/{len(res['claims'])}; wrote {out}/results.json, "
               f"{out}/report.md")




# --- mmoe reproduce funnel -------------------------------------------------------------------
FUNNEL_HELP = {
    "out": "Output directory (results.json, report.md, funnel.png; the data in DIR/data).",
    "rows": "Impressions generated (train/valid/test split by time 0.8/0.1/0.1).",
    "users": "Users of the generated world.",
    "items": "Items of the generated world.",
    "runs": "Seeds per model.",
    "seed": "The world's seed and the first run's seed.",
    "epochs": "Epochs per run (the best validation click AUC is kept).",
    "models": ("Comma-separated models (default: single_task, shared_bottom, mmoe, ple, esmm, "
               "esmm_mmoe, aitm)."),
    "data": "A directory from `mmoe data generate funnel` to use instead of generating one.",
    "threads": "Intra-op threads.",
}


@reproduce_app.command("funnel")
def reproduce_funnel_cmd(
    out: Annotated[str, opt(FUNNEL_HELP, "out")] = "results/funnel",
    rows: Annotated[int, opt(FUNNEL_HELP, "rows")] = 500_000,
    users: Annotated[int, opt(FUNNEL_HELP, "users")] = 30_000,
    items: Annotated[int, opt(FUNNEL_HELP, "items")] = 8_000,
    runs: Annotated[int, opt(FUNNEL_HELP, "runs")] = 3,
    seed: Annotated[int, opt(FUNNEL_HELP, "seed")] = 0,
    epochs: Annotated[int, opt(FUNNEL_HELP, "epochs")] = 2,
    models: Annotated[str | None, opt(FUNNEL_HELP, "models")] = None,
    data: Annotated[str | None, opt(FUNNEL_HELP, "data")] = None,
    threads: Annotated[int, opt(FUNNEL_HELP, "threads")] = 2,
) -> None:
    """ESMM, AITM and the plain multi-task models on a generated click -> purchase funnel,
    scored against its true probabilities; checks the ESMM and AITM papers' claims."""
    from ..data.datasets.funnel import FunnelSpec
    from ..experiments.funnel import MODELS, FunnelConfig, run_funnel

    writable_dir(out)
    native()
    cfg = FunnelConfig(FunnelSpec(rows=rows, users=users, items=items, seed=seed), runs=runs,
                       epochs=epochs, threads=threads, data=data,
                       models=tuple(_model_list(models) or MODELS))
    run_funnel(cfg, out, log=typer.echo)
    typer.echo(f"wrote {out}/results.json, {out}/report.md, {out}/funnel.png")
