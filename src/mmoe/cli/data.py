"""``mmoe data``: fetch public data sets (and convert the recommender ones to Parquet),
generate synthetic ones with known answers."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import data_app


@data_app.command("fetch")
def data_fetch_cmd(
    name: Annotated[str, typer.Argument(
        help="census-income, ali-ccp or aliexpress.")],
    data_dir: Annotated[str | None, typer.Option(
        "--data-dir", help="Directory of the published files: those already there are used "
                           "without the network (default: $MMOE_DATA_DIR, else the user "
                           "cache dir).")] = None,
    out: Annotated[str | None, typer.Option(
        "--out", help="ali-ccp, aliexpress: where the Parquet shards and mmoe.toml go "
                      "(default: DATA_DIR/parquet; aliexpress: one folder per country).")
    ] = None,
    url: Annotated[str | None, typer.Option(
        "--url", help="A mirror's directory URL (default: the data set's $MMOE_..._URL; "
                      "ali-ccp and aliexpress have no public direct link: download them from "
                      "Tianchi into --data-dir, or give a mirror).")] = None,
    max_rows: Annotated[int | None, typer.Option(
        "--max-rows", help="ali-ccp: convert only the first N impressions of each file.")
    ] = None,
    country: Annotated[list[str] | None, typer.Option(
        "--country", help="aliexpress: NL, ES, FR or US (repeat or comma-separate; default "
                          "all four).")] = None,
) -> None:
    """Fetch a public data set: downloads resume where they stopped and are checksum-verified
    (files already present are checked and kept); ali-ccp and aliexpress are then converted
    to Parquet shards (train/, valid/, test/) with an mmoe.toml that states every column's
    feature spec: `mmoe train --config OUT/mmoe.toml --out MODEL`."""
    from tqdm import tqdm

    from ..data.datasets.prepare import CONVERTED, prepare

    countries = None
    if country:
        countries = [c.strip().upper() for item in country for c in item.split(",") if c.strip()]
    bars: dict[str, tqdm] = {}

    def downloading(file: str, done: int, total: int | None) -> None:
        bar = bars.get(file)
        if bar is None:
            bar = bars[file] = tqdm(total=total, desc=file, unit="B", unit_scale=True,
                                    disable=None, leave=False)
        bar.update(done - bar.n)

    rows = tqdm(unit="row", unit_scale=True, desc="converting",
                disable=None if name in CONVERTED else True)
    with rows:
        ready = prepare(name, data_dir, out, base_url=url, max_rows=max_rows,
                        countries=countries, log=typer.echo, progress=rows.update,
                        download_progress=downloading)
    for bar in bars.values():
        bar.close()
    for path in ready:
        typer.echo(f"{name}: ready in {path}")
        if (path / "mmoe.toml").is_file():
            typer.echo(f"train on it: mmoe train --config {path / 'mmoe.toml'} --out MODEL")


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
    shared_dims: Annotated[int, typer.Option(
        "--shared-dims", min=0, max=5,
        help="How related the tasks are: latent coordinates click and purchase share, "
        "of 5 each (0: different latents, 5: the same).")] = 2,
    attribute_share: Annotated[float, typer.Option(
        "--attribute-share", min=0.0, max=1.0,
        help="Share of the users' and items' latent variance that their observed attributes "
        "(age, gender, city; brand, category) explain (0: no attribute columns).")
    ] = 0.9,
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
                      history_len=history_len, shard_rows=shard_rows, shared_dims=shared_dims,
                      attribute_share=attribute_share)
    with tqdm(total=rows, unit="row", unit_scale=True, disable=None) as bar:
        path = generate_funnel(spec, out, progress=bar.update)
    oracle = {split: oracle_metrics(path / split) for split in ("valid", "test")}
    write_json(path / "oracle.json", oracle)
    typer.echo(f"{rows} impressions written to {path} (train/, valid/, test/)")
    typer.echo("oracle on test (the true probabilities as predictions):")
    typer.echo(format_metrics(oracle["test"]))
    typer.echo(f"train on it: mmoe train --config {path / 'mmoe.toml'} --out DIR")


@generate_app.command("table")
def generate_table_cmd(
    out: Annotated[str, typer.Option("--out", help="Directory to create (must not exist).")],
    rows: Annotated[int, typer.Option("--rows", help="Customers (rows).", min=10)] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Fixes every row.")] = 0,
) -> None:
    """A customer table to try mmoe on: an id, numbers with missing values, text categories,
    and three related tasks (churned: binary, spend: regression, segment: 3 classes) in
    DIR/train.csv, DIR/valid.csv, DIR/test.csv. The equations: mmoe.data.datasets.customers."""
    from ..data.datasets.customers import write_customers

    path = write_customers(out, rows, seed)
    typer.echo(f"{rows} customers written to {path} (train.csv, valid.csv, test.csv)")
    typer.echo(f"train on it: mmoe train --train {path}/train.csv --valid {path}/valid.csv "
               "--task churned:binary:yes --task spend:regression --task segment:multiclass "
               "--id customer_id --out DIR")
