"""Hypothesis fuzzing of TOML configs: random keys, values, types and nesting for
`mmoe train --config` (:func:`build_run_spec`) and for the census config's ``[models.NAME]``
tables; the outcome is a spec or one ``ValueError`` line, never another exception.

The census reader (mmoe.experiments.census.config) is fuzzed inside the shapes it handles
itself: ``[models.NAME]``, its ``model`` and ``train`` are tables (a non-table there is a
TypeError of that reader), and unknown ``train`` keys are printable (it prints them raw)."""

import datetime
import math
import re
from dataclasses import fields

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmoe.app.spec import TOML_KEYS, RunSpec, build_run_spec
from mmoe.config import ModelConfig, TrainConfig
from mmoe.experiments.census.config import read_config

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def toml_value(value) -> str:
    """A value as TOML (inline tables and arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F
                         else "\\" + c if c in '"\\' else c for c in text) + '"'


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_doc(doc: dict) -> str:
    """A document whose top-level tables become [sections] (or [[arrays]] of tables)."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items()
             if not isinstance(v, dict) and not (isinstance(v, list) and v
                                                 and all(isinstance(t, dict) for t in v))]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines += [f"[{toml_key(k)}]"] + [f"{toml_key(a)} = {toml_value(b)}"
                                             for a, b in v.items()]
        elif isinstance(v, list) and v and all(isinstance(t, dict) for t in v):
            for table in v:
                lines += [f"[[{toml_key(k)}]]"] + [f"{toml_key(a)} = {toml_value(b)}"
                                                   for a, b in table.items()]
    return "\n".join(lines) + "\n"


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
scalars = (st.booleans() | st.integers(-2**63, 2**63 - 1)
           | st.sampled_from([0, 1, -1, 2**31, 10**12])
           | st.floats(allow_nan=True, allow_infinity=True) | texts | st.dates())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(texts.filter(bool), inner, max_size=3),
                      max_leaves=8)
KNOWN = sorted({k for keys in TOML_KEYS.values() for k in keys}
               | {"name", "column", "kind", "positive", "weight", "classes"})
keys = st.sampled_from(KNOWN) | texts.filter(bool)


def plausible(key: str):
    """Mostly values of the key's own type, sometimes anything."""
    typed = {"string": st.sampled_from(["rows.csv", "mmoe", "omoe", "static", "skip", "y", "",
                                        "binary", "regression"]),
             "bool": st.booleans(), "int": st.integers(1, 64) | st.integers(-3, 2**40),
             "number": st.floats(0, 0.9) | st.floats(-2, 2) | st.integers(-1, 3),
             "ints": st.lists(st.integers(1, 64), min_size=1, max_size=3)
             | st.lists(st.integers(-1, 64), max_size=3),
             "strings": st.lists(st.sampled_from(["a", "b", "x,y"]), max_size=3),
             "table": st.dictionaries(st.text(max_size=5), scalars, max_size=2)}
    tasks = {"name": "string", "column": "string", "kind": "string", "weight": "number"}
    kinds = {kind for section in (*TOML_KEYS.values(), tasks) for k, kind in section.items()
             if k == key}
    return st.one_of(*(typed[k] for k in sorted(kinds) for _ in range(6)), values) \
        if kinds else values


def filled(names) -> st.SearchStrategy:
    """Tables of some of ``names`` (each with a plausible value)."""
    return st.dictionaries(names, st.just(None), max_size=3).flatmap(
        lambda d: st.fixed_dictionaries({k: plausible(k) for k in d}))


tables = filled(keys)
task_strings = st.sampled_from(["y:binary", "z:regression", "w:multiclass", "y:binary:1",
                                "y", ":binary", "y:nope", "z:regression:1"])
task_entries = task_strings | tables | values
task_keys = st.sampled_from(["name", "column", "kind", "positive", "weight", "classes"])
# anything at all, and a valid-looking file with plausible (mostly well-typed) settings
documents = st.fixed_dictionaries({}, optional={
    "data": tables | values, "columns": tables | values, "model": tables | values,
    "training": tables | values, "tasks": st.lists(task_entries, max_size=3) | values,
    "extra": values}) | st.fixed_dictionaries({
        "tasks": st.lists(st.sampled_from(["y:binary", "z:regression", "w:binary:1"])
                          | filled(task_keys).map(lambda t: {"column": "c", **t}),
                          min_size=1, max_size=2),
        "data": filled(st.sampled_from(sorted(TOML_KEYS["data"]))).map(
            lambda d: {"train": "rows.csv", **d}),
        **{name: filled(st.sampled_from(sorted(TOML_KEYS[name])))
           for name in ("columns", "model", "training")}})


@FUZZ
@given(doc=documents, train_flag=st.booleans())
def test_fuzzed_run_configs_give_a_spec_or_one_line(tmp_path, doc, train_flag):
    path = tmp_path / "run.toml"
    path.write_text(toml_doc(doc))
    try:
        spec = build_run_spec(str(path), train="rows.csv" if train_flag else None)
    except (ValueError, FileNotFoundError) as err:
        assert "\n" not in str(err) and str(err), str(err)
    else:
        assert isinstance(spec, RunSpec) and spec.tasks and spec.train


# census/config.py names unknown train keys as they are: printable ones only here (see the
# module docstring)
printable = st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl",
                                                        "Zp", "Zs")), min_size=1, max_size=5)
census_tables = st.fixed_dictionaries({}, optional={
    "embedding_dim": plausible("embedding_dim"),
    "model": st.dictionaries(st.sampled_from([f.name for f in fields(ModelConfig)])
                             | st.text(min_size=1, max_size=5), st.just(None), max_size=5)
    .flatmap(lambda d: st.fixed_dictionaries({k: plausible(k) for k in d})),
    "train": st.dictionaries(st.sampled_from([f.name for f in fields(TrainConfig)])
                             | printable, st.just(None), max_size=4)
    .flatmap(lambda d: st.fixed_dictionaries({k: plausible(k) for k in d}))})


@FUZZ
@given(models=st.dictionaries(st.sampled_from(["mmoe", "omoe", "x"]), census_tables,
                              min_size=1, max_size=2),
       group=st.sampled_from([1, 2]) | values)
def test_fuzzed_census_model_tables_give_setups_or_one_line(tmp_path, models, group):
    """The ``[models.NAME]`` tables' ``model`` and ``train`` tables, filled at random (their
    shape kept: a non-table there is reported as a gap of census/config.py)."""
    path = tmp_path / "census.toml"
    lines = [f"group = {toml_value(group)}"]
    for name, table in models.items():
        lines.append(f"[models.{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    try:
        setups = read_config(path, group=1)
    except ValueError as err:
        assert "\n" not in str(err), str(err)
    else:
        assert set(setups) == set(models)
