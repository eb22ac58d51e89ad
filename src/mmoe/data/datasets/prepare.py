"""``mmoe data fetch NAME``: a public data set's files fetched (or found) and, for the
recommender sets, converted to Parquet shards with an ``mmoe.toml`` to train on.

A converted directory records its settings in ``dataset.json``; fetching again with the same
settings finds it and does nothing, with other settings it refuses rather than mix the two.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ... import _checks
from ..fetch import ALIEXPRESS_COUNTRIES, dataset, fetch_dataset, resolve_data_dir

CONVERTED = ("ali-ccp", "aliexpress")


def _done(out: Path, settings: dict[str, Any]) -> bool:
    """Whether ``out`` already holds a conversion with ``settings`` (fails on other ones)."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return False
    info = out / "dataset.json"
    recorded = json.loads(info.read_text()) if info.is_file() else None
    same = recorded is not None and all(recorded.get(k) == v for k, v in settings.items())
    _checks.check(same, f"'{out}' exists and is not a conversion with these settings "
                  f"({', '.join(f'{k}={v}' for k, v in settings.items())}); remove it or "
                  "choose another --out")
    return True


def _extracted(directory: Path) -> bool:
    return all((directory / f"{kind}_{split}.csv").is_file()
               for kind in ("sample_skeleton", "common_features") for split in ("train", "test"))


def prepare(name: str, data_dir: str | os.PathLike | None = None,
            out: str | os.PathLike | None = None, *, base_url: str | None = None,
            max_rows: int | None = None, countries: Sequence[str] | None = None,
            log: Callable[[str], None] = lambda line: None,
            progress: Callable[[int], None] | None = None,
            download_progress: Callable[[str, int, int | None], None] | None = None,
            ) -> list[Path]:
    """Fetch data set ``name`` into ``data_dir`` and, for Ali-CCP and AliExpress, convert it.

    Args:
        name: ``census-income``, ``ali-ccp`` or ``aliexpress``.
        data_dir: where the published files are (or go): ``--data-dir``, else
            ``$MMOE_DATA_DIR``, else the user cache dir.
        out: where the converted data set goes (default ``DATA_DIR/parquet``; AliExpress:
            one sub-directory per country).
        base_url: a mirror's directory URL (else the data set's ``$MMOE_..._URL``).
        max_rows: Ali-CCP: read at most this many impressions of each file.
        countries: AliExpress: which countries (default all four).
        log: called with one line per step.
        progress: called with the rows of each converted block.
        download_progress: called as ``(file, bytes so far, total or None)`` while downloading.

    Returns:
        The directories ready to use: the data directory (census-income), or the converted
        data sets (one per AliExpress country).
    """
    ds = dataset(name)
    _checks.check(max_rows is None or name == "ali-ccp", "--max-rows applies to ali-ccp only")
    _checks.check(countries is None or name == "aliexpress",
                  "--country applies to aliexpress only")
    countries = tuple(countries or ALIEXPRESS_COUNTRIES)
    files = None
    if name == "aliexpress":
        from .aliexpress import archive_name

        files = [archive_name(c) for c in countries]
    directory = resolve_data_dir(data_dir, ds.name)
    if name == "ali-ccp" and _extracted(directory):
        log(f"{directory}: the extracted CSV files are there; the archives are not needed")
    else:
        fetch_dataset(ds.name, directory, files=files, base_url=base_url, log=log,
                      progress=download_progress)
    if name not in CONVERTED:
        return [directory]
    target = Path(out) if out is not None else directory / "parquet"
    if name == "ali-ccp":
        from .ali_ccp import convert_ali_ccp

        if not _done(target, {"data_set": "ali-ccp", "max_rows": max_rows}):
            log(f"converting to {target} ...")
            convert_ali_ccp(directory, target, max_rows=max_rows, progress=progress)
        return [target]
    from .aliexpress import convert_aliexpress

    todo = [c for c in countries if not _done(target / c, {"data_set": f"aliexpress-{c}"})]
    if todo:
        log(f"converting {', '.join(todo)} to {target} ...")
        convert_aliexpress(directory, target, todo, progress=progress)
    return [target / c for c in countries]
