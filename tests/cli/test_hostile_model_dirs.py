"""Hostile model directories: a manifest naming files outside the directory (``..``, absolute
paths, symbolic links), JSON nested 200k levels deep, wrong types in manifest.json, config.json
and metrics.json (re-signed, as someone with write access would), and hypothesis fuzzing of the
three files. Nothing outside the directory is read, and every outcome is a result or one line."""

import hashlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmoe.train.model_dir import load_model_dir

from .conftest import one_line_error, run_cli

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
DEEP = "[" * 200_000 + "]" * 200_000


def _manifest(directory):
    return json.loads((directory / "manifest.json").read_text())


def _sign(directory, manifest=None):
    """Recompute every listed file's checksum (where the file can be read)."""
    manifest = manifest or _manifest(directory)
    for name in list(manifest["files"]):
        file = directory / name
        if file.is_file():
            manifest["files"][name] = hashlib.sha256(file.read_bytes()).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))


def _commands(model_dir, data, tmp_path):
    """Every command that loads a model directory."""
    return [["evaluate", model_dir, data],
            ["predict", model_dir, data, "--out", tmp_path / "p.csv"],
            ["inspect", model_dir, "--data", data, "--out", tmp_path / "g"],
            ["export", model_dir, "--format", "torchscript", "--out", tmp_path / "x.pt"]]


def _result_or_one_line(argv, capsys):
    code, _, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert code in (0, 2), (code, err)
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("mmoe: error: "), err
    return code, err


@pytest.mark.parametrize("name", ["../../../../etc/hostname", "/etc/hostname",
                                  "a/../../rows.csv", "./config.json", "", "dir\\x", "a\0b"])
def test_manifest_names_outside_the_directory_are_refused(small_model, model_copy, tmp_path,
                                                          capsys, name):
    outside = tmp_path / "rows.csv"
    outside.write_bytes(small_model["data"].read_bytes())
    manifest = _manifest(model_copy)
    manifest["files"][name] = hashlib.sha256(outside.read_bytes()).hexdigest()
    (model_copy / "manifest.json").write_text(json.dumps(manifest))
    line = one_line_error(["evaluate", model_copy, small_model["data"]], capsys, "corrupted",
                          "manifest.json", "not a plain file name inside the directory")
    assert len(line) < 400
    with pytest.raises(ValueError, match="not a plain file name"):
        load_model_dir(model_copy)


def test_manifest_names_reached_through_symbolic_links_are_refused(small_model, model_copy,
                                                                   tmp_path, capsys):
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "hostname").write_text("secret\n")
    (model_copy / "link").symlink_to(outside / "hostname")
    (model_copy / "sub").symlink_to(outside)
    manifest = _manifest(model_copy)
    manifest["files"].update({"link": "", "sub/hostname": ""})
    _sign(model_copy, manifest)
    one_line_error(["evaluate", model_copy, small_model["data"]], capsys, "corrupted",
                   "symbolic link")
    del manifest["files"]["link"]
    _sign(model_copy, manifest)
    one_line_error(["evaluate", model_copy, small_model["data"]], capsys, "'sub/hostname'",
                   "symbolic link")


@pytest.mark.parametrize("file", ["manifest.json", "config.json", "metrics.json"])
def test_json_nested_200k_levels_is_one_line(small_model, model_copy, capsys, file):
    (model_copy / file).write_text(DEEP)
    if file != "manifest.json":
        _sign(model_copy)
    one_line_error(["evaluate", model_copy, small_model["data"]], capsys, "corrupted",
                   f"{file} is not valid JSON", "nested too deeply")


@pytest.mark.parametrize("config", [
    [], "text", None, 5, {"columns": None}, {"columns": []}, {"columns": {"id": 5}},
    {"columns": {"id": "user_id"}}, {"columns": {"categorical": [1, 2]}},
    {"columns": {"categorical": {"a": 1}}}, {"columns": {"id": [None]}},
])
def test_hostile_config_types_are_one_line(small_model, model_copy, tmp_path, capsys, config):
    (model_copy / "config.json").write_text(json.dumps(config))
    _sign(model_copy)
    for argv in _commands(model_copy, small_model["data"], tmp_path):
        one_line_error(argv, capsys, "corrupted", "config.json")


@pytest.mark.parametrize("metrics", [[], "x", None, 1.5])
def test_hostile_metrics_types_are_one_line(small_model, model_copy, capsys, metrics):
    (model_copy / "metrics.json").write_text(json.dumps(metrics))
    _sign(model_copy)
    one_line_error(["evaluate", model_copy, small_model["data"]], capsys, "corrupted",
                   "metrics.json")


@pytest.mark.parametrize(("change", "needle"), [
    ({"files": {"model.pt": 5}}, "does not list"),
    ({"format_version": True}, "format version True"),
    ({"format_version": 1.0}, "format version 1.0"),
    ({"format_version": "1"}, "format version '1'"),
    ({"format_version": 2, "mmoe_version": "9\nTraceback (most recent call last):"},
     "format version 2"),
    ({"files": None}, "lists no files"),
])
def test_hostile_manifest_types_are_one_line(small_model, model_copy, capsys, change, needle):
    manifest = {**_manifest(model_copy), **change}
    (model_copy / "manifest.json").write_text(json.dumps(manifest))
    one_line_error(["evaluate", model_copy, small_model["data"]], capsys, needle)


def test_a_checksum_that_is_not_text_is_corruption(small_model, model_copy, capsys):
    manifest = _manifest(model_copy)
    manifest["files"]["config.json"] = {"sha256": manifest["files"]["config.json"]}
    (model_copy / "manifest.json").write_text(json.dumps(manifest))
    one_line_error(["evaluate", model_copy, small_model["data"]], capsys, "corrupted",
                   "'config.json'", "checksum")


# ---- fuzzing -------------------------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False), st.text(max_size=12),
                    st.sampled_from(["../../etc/hostname", "/etc/hostname", "model.pt", "",
                                     "mmoe-model-dir", "a\nb", "é😀"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def _paths(doc, prefix=()):
    """Every key path into a JSON document."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _paths(value, (*prefix, i))


def _replace(doc, path, value):
    if not path:
        return value
    doc[path[0]] = _replace(doc[path[0]], path[1:], value)
    return doc


@st.composite
def mutations(draw, original):
    """The original document with one value (or the whole) replaced by random JSON, or raw
    text that is not JSON at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from([DEEP.encode(), b"{", b"", b"\xff\xfe", b"NaN",
                                     b"[" * 5000]))
    doc = json.loads(json.dumps(original))
    path = draw(st.sampled_from(list(_paths(doc))))
    return json.dumps(_replace(doc, path, draw(values))).encode()


@pytest.mark.parametrize("file", ["manifest.json", "config.json", "metrics.json"])
def test_fuzzed_model_dir_json_is_a_result_or_one_line(small_model, tmp_path_factory, capsys,
                                                       file):
    import shutil

    root = tmp_path_factory.mktemp("fuzz")
    copy = shutil.copytree(small_model["dir"], root / "m")
    original = json.loads((copy / file).read_text())

    @FUZZ
    @given(data=mutations(original))
    def check(data):
        (copy / file).write_bytes(data)
        if file != "manifest.json":  # re-signed: the loader itself must cope
            _sign(copy, json.loads((small_model["dir"] / "manifest.json").read_text()))
        for argv in (["evaluate", copy, small_model["data"]],
                     ["predict", copy, small_model["data"], "--out", root / "p.csv"]):
            _result_or_one_line(argv, capsys)

    check()


names = st.one_of(
    st.text(st.sampled_from("ab./\\\0~:é"), max_size=12),
    st.lists(st.sampled_from(["..", ".", "", "etc", "hostname", "config.json", "/"]),
             min_size=1, max_size=5).map("/".join))


def test_fuzzed_manifest_file_names_never_reach_outside(small_model, tmp_path_factory,
                                                        capsys):
    import shutil

    root = tmp_path_factory.mktemp("fuzz_names")
    copy = shutil.copytree(small_model["dir"], root / "m")
    original = _manifest(copy)
    (root / "hostname").write_text("outside\n")
    outside = hashlib.sha256(b"outside\n").hexdigest()

    @FUZZ
    @given(name=names)
    def check(name):
        manifest = json.loads(json.dumps(original))
        manifest["files"][name] = outside
        (copy / "manifest.json").write_text(json.dumps(manifest))
        code, err = _result_or_one_line(["evaluate", copy, small_model["data"]], capsys)
        assert code == 2, name  # no name reaches the file outside, whose checksum it has
        assert "corrupted" in err and "manifest.json" in err or "missing" in err or \
            "does not match its checksum" in err, err

    check()
