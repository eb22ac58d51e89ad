"""`--overwrite` replaces only a model directory mmoe wrote (its manifest present, nothing else
in it); any other directory is refused with one line, before training, and left as it was."""

import json

import pytest

from mmoe import TaskSpec, build_model
from mmoe._fileio import atomic_dir, write_text
from mmoe.data.encoders import TableEncoder
from mmoe.train.model_dir import check_output_dir, load_model_dir, save_model_dir

from .conftest import make_table, one_line_error, run_cli


def _snapshot(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _train(data, out, *extra):
    return ["train", "--train", data, "--task", "buys:binary:yes", "--epochs", "1",
            "--threads", "1", "--out", out, *extra]


@pytest.fixture
def user_folder(tmp_path):
    """A folder a person owns: their training data and notes."""
    folder = tmp_path / "project"
    folder.mkdir()
    make_table(80, seed=2).to_csv(folder / "train.csv", index=False)
    (folder / "notes.md").write_text("what I tried\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "more.txt").write_text("more\n")
    return folder


def test_overwrite_refuses_a_folder_mmoe_did_not_write(user_folder, capsys):
    before = _snapshot(user_folder)
    line = one_line_error(_train(user_folder / "train.csv", user_folder, "--overwrite"), capsys,
                          f"'{user_folder}'", "not a model directory written by mmoe",
                          "manifest.json")
    assert "--overwrite replaces only" in line
    assert _snapshot(user_folder) == before
    assert sorted(p.name for p in user_folder.parent.iterdir()) == ["project"]


def test_overwrite_refuses_a_model_dir_holding_a_users_file(small_model, model_copy, capsys):
    (model_copy / "my_notes.txt").write_text("keep me\n")
    before = _snapshot(model_copy)
    one_line_error(_train(small_model["data"], model_copy, "--overwrite"), capsys,
                   "'my_notes.txt'", "mmoe did not write")
    assert _snapshot(model_copy) == before
    (model_copy / "my_notes.txt").unlink()
    (model_copy / "extra").mkdir()  # an empty folder of the user's: also theirs
    one_line_error(_train(small_model["data"], model_copy, "--overwrite"), capsys, "'extra'")


def test_overwrite_refuses_a_fake_manifest(user_folder, capsys):
    for text in ("{not json", json.dumps({"format": "something-else", "files": {}}),
                 "[" * 200_000, json.dumps({"format": "mmoe-model-dir", "files": []})):
        (user_folder / "manifest.json").write_text(text)
        one_line_error(_train(user_folder / "train.csv", user_folder, "--overwrite"), capsys,
                       "not a model directory written by mmoe")
        assert (user_folder / "train.csv").is_file() and (user_folder / "notes.md").is_file()


def test_overwrite_replaces_a_model_dir_and_an_empty_dir_is_used(small_model, model_copy,
                                                                  tmp_path, capsys):
    code, _, err = run_cli(_train(small_model["data"], model_copy, "--seed", "5", "--overwrite"),
                           capsys)
    assert code == 0, err
    assert load_model_dir(model_copy).config["training"]["seed"] == 5
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(_train(small_model["data"], empty), capsys)
    assert code == 0, err
    assert load_model_dir(empty).config["training"]["epochs"] == 1


def test_library_save_model_dir_refuses_too(user_folder):
    df = make_table(40, seed=0)
    enc = TableEncoder([TaskSpec("buys", "binary", positive="yes")],
                       exclude=["user_id"]).fit(df)
    model = build_model("mmoe", enc.input_spec(), enc.tasks)
    before = _snapshot(user_folder)
    with pytest.raises(ValueError, match="not a model directory written by mmoe"):
        save_model_dir(user_folder, model, enc, {}, {}, overwrite=True)
    with pytest.raises(ValueError, match="not a model directory written by mmoe"):
        check_output_dir(user_folder, overwrite=True)
    assert _snapshot(user_folder) == before


def test_atomic_dir_asks_before_replacing(tmp_path):
    with atomic_dir(tmp_path / "d") as stage:
        write_text(stage / "v1.txt", "1")

    def refuse(path):
        raise ValueError(f"'{path}' is not ours")

    with pytest.raises(ValueError, match="is not ours"), \
            atomic_dir(tmp_path / "d", replace=refuse) as stage:
        write_text(stage / "v2.txt", "2")
    assert _snapshot(tmp_path / "d") == {"v1.txt": b"1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    seen = []
    with atomic_dir(tmp_path / "d", replace=seen.append) as stage:
        write_text(stage / "v2.txt", "2")
    assert seen == [tmp_path / "d"] and _snapshot(tmp_path / "d") == {"v2.txt": b"2"}
