"""The schema a run reads (printed before training, saved as schema.json) and
`mmoe describe DIR`."""

import json

import numpy as np
import pandas as pd
import pytest

from mmoe.cli import main
from mmoe.train.model_dir import read_manifest


@pytest.fixture
def trained(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 240
    df = pd.DataFrame({"user_id": [f"u{i}" for i in range(n)], "age": rng.normal(40, 9, n),
                       "city": rng.choice(["a", "b"], n), "w": rng.uniform(0.5, 1.5, n),
                       "buys": rng.choice(["no", "yes"], n), "spend": rng.normal(size=n),
                       "segment": rng.choice(["high", "low", "mid"], n)})
    df.to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "m"
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--train", str(tmp_path / "t.csv"), "--task", "buys:binary:yes",
              "--task", "spend:regression", "--task", "segment:multiclass", "--id", "user_id",
              "--weight", "w", "--epochs", "2", "--out", str(out)])
    assert exit_.value.code in (0, None)
    return out, capsys.readouterr().out


def test_train_prints_the_schema_and_saves_it(trained):
    out, printed = trained
    assert "column" in printed and "piecewise-linear" in printed  # the inputs
    assert "buys     buys          binary      positive 'yes' (vs 'no')" in printed
    assert "segment  segment       multiclass  3 classes: high, low, mid" in printed
    assert "not inputs: user_id (id), w (sample weight)" in printed
    saved = json.loads((out / "schema.json").read_text())
    assert [i["column"] for i in saved["inputs"]] == ["age", "city"]
    assert saved["inputs"][0]["encoding"] == "ple" and saved["inputs"][0]["width"] > 1
    assert [(t["name"], t["kind"]) for t in saved["tasks"]] == [
        ("buys", "binary"), ("spend", "regression"), ("segment", "multiclass")]
    assert saved["tasks"][0]["positive"] == "yes"
    assert saved["not_inputs"] == {"user_id": "id", "w": "sample weight"}
    files = read_manifest(out)["files"]  # checksummed like the rest
    assert "schema.json" in files and "learning_curves.png" in files
    assert (out / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_describe(trained, capsys):
    out, _ = trained
    with pytest.raises(SystemExit) as exit_:
        main(["describe", str(out)])
    assert exit_.value.code in (0, None)
    text = capsys.readouterr().out
    assert text.startswith(f"model directory: {out} (mmoe ")
    assert "model: mmoe, " in text and " parameters; 8 experts x (32,)" in text
    # the settings as run: the batch chosen for the rows, not "None"
    assert "training: 2 epochs run of 2, best epoch " in text and "batch 32," in text
    assert "by combined;" in text
    assert "validation metrics (24 rows):" in text and "segment" in text


def test_describe_refuses_what_is_not_a_model_directory(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["describe", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("mmoe: error: ") and err.count("\n") == 1
