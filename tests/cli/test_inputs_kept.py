"""No command overwrites its own inputs: an output that resolves (symbolic and hard links
included) to an input file, a model directory or one of its files is refused with one line,
and the input is left byte for byte as it was."""

import os

import pytest

from mmoe.train.model_dir import read_manifest

from .conftest import one_line_error, run_cli


def _bytes(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture
def data_copy(small_model, tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(small_model["data"].read_bytes())
    return path


def test_export_into_the_model_directory_is_refused(model_copy, tmp_path, capsys):
    before = _bytes(model_copy)
    link = tmp_path / "link"
    link.symlink_to(model_copy)
    for out in (model_copy / "model.pt", link / "model.pt", model_copy / "manifest.json",
                model_copy / "gates.png", model_copy, link):
        one_line_error(["export", model_copy, "--format", "torchscript", "--out", out], capsys,
                       f"--out '{out}'", "input", "writing it would destroy the input")
    assert _bytes(model_copy) == before and read_manifest(model_copy)
    assert sorted(p.name for p in model_copy.iterdir()) == sorted(before)


def test_inspect_out_the_model_directory_or_around_it_is_refused(model_copy, data_copy,
                                                                 tmp_path, capsys):
    before, rows = _bytes(model_copy), data_copy.read_bytes()
    one_line_error(["inspect", model_copy, "--data", data_copy, "--out", model_copy], capsys,
                   f"--out '{model_copy}'", f"is the input '{model_copy}'")
    # the folder holding the model (and the data): replacing it would delete both
    one_line_error(["inspect", model_copy, "--data", data_copy, "--out", tmp_path], capsys,
                   f"--out '{tmp_path}' holds the input")
    one_line_error(["inspect", model_copy, "--data", data_copy, "--out", data_copy], capsys,
                   f"--out '{data_copy}'", "is the input")
    assert _bytes(model_copy) == before and read_manifest(model_copy)
    assert data_copy.read_bytes() == rows
    # a folder of its own inside the model directory touches none of the model's files
    code, _, err = run_cli(["inspect", model_copy, "--data", data_copy, "--out",
                            model_copy / "gates"], capsys)
    assert code == 0, err
    assert _bytes(model_copy) == before and read_manifest(model_copy)
    assert (model_copy / "gates" / "gates.png").read_bytes() != before["gates.png"]


@pytest.mark.parametrize("how", ["same path", "relative", "symlink", "hard link"])
def test_predict_out_the_input_file_is_refused(small_model, data_copy, tmp_path, capsys,
                                               monkeypatch, how):
    original = data_copy.read_bytes()
    out = data_copy
    if how == "relative":
        monkeypatch.chdir(tmp_path)
        out = "./rows.csv"
    elif how == "symlink":
        out = tmp_path / "alias.csv"
        out.symlink_to(data_copy)
    elif how == "hard link":
        out = tmp_path / "alias.csv"
        os.link(data_copy, out)
    one_line_error(["predict", small_model["dir"], data_copy, "--out", out], capsys,
                   f"--out '{out}' is the input")
    assert data_copy.read_bytes() == original


def test_predict_and_evaluate_outputs_into_the_model_directory_are_refused(
        model_copy, data_copy, capsys):
    before = _bytes(model_copy)
    one_line_error(["predict", model_copy, data_copy, "--out", model_copy / "metrics.json"],
                   capsys, f"is the input '{model_copy / 'metrics.json'}'")
    one_line_error(["predict", model_copy, data_copy, "--out", model_copy / "model.pt"],
                   capsys, "model.pt")
    one_line_error(["evaluate", model_copy, data_copy, "--json", model_copy / "metrics.json"],
                   capsys, f"--json '{model_copy / 'metrics.json'}' is the input")
    one_line_error(["evaluate", model_copy, data_copy, "--json", data_copy], capsys,
                   f"--json '{data_copy}' is the input")
    assert _bytes(model_copy) == before and read_manifest(model_copy)
