"""A run spec as the TOML config file `mmoe train --config` reads (the inverse of
:func:`~mmoe.app.spec.build_run_spec`): what `mmoe tune` writes.

Every setting is written, so the file states the run whole and a later change of a default
does not change it; data paths are absolute, so the file works from any directory.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

import tomli_w

from .spec import RunSpec


def _plain(value: Any) -> Any:
    """Without ``None`` (TOML has no null): dropped from tables and lists; tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value if v is not None]
    return value


def config_text(spec: RunSpec, comment: str = "") -> str:
    """TOML text of ``spec``; ``comment`` lines go first, each prefixed with ``#``.

    Example:
        >>> from mmoe.app.spec import build_run_spec
        >>> spec = build_run_spec(train="/d/t.csv", tasks=["y:binary:yes"], lr=0.01)
        >>> path = tmp_path / "run.toml"
        >>> _ = path.write_text(config_text(spec, "tuned"))
        >>> build_run_spec(str(path)) == spec
        True
    """
    d = spec.to_dict()
    data = {k: v for k, v in d["data"].items()}
    for key in ("train", "valid"):
        if data.get(key):
            data[key] = os.path.abspath(data[key])
    data["tensorboard"] = spec.tensorboard
    tasks = [{k: v for k, v in asdict(t).items() if k != "classes" or v} for t in spec.tasks]
    doc = {"tasks": tasks, "data": data, "columns": d["columns"], "features": d["features"],
           "model": d["model"], "training": d["training"]}
    head = "".join(f"# {line}".rstrip() + "\n" for line in comment.splitlines())
    return head + tomli_w.dumps(_plain(doc))
