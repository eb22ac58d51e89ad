"""Hostile or broken weights files: every file mmoe loads with torch.load (a model
directory's model.pt, an interrupted run's checkpoint) is replaced by a malicious pickle or a
truncated copy; nothing runs and every command refuses it with one clear line."""

import hashlib
import json
import pickle

import pytest
import torch

from mmoe.app.fit import partial_dir
from mmoe.cli import main

from .conftest import make_table


class Evil:
    """Unpickling this would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _evil_files(tmp_path, marker):
    """A plain pickle and a torch.save zip, both shaped like an mmoe checkpoint."""
    payload = {"format": "mmoe-checkpoint", "format_version": 1, "state_dict": Evil(marker)}
    plain = pickle.dumps(payload)
    torch.save(payload, tmp_path / "zip.pt")
    return {"pickle": plain, "torch.save": (tmp_path / "zip.pt").read_bytes()}


def _cli(argv, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return exc.value.code, err


def _plant(model_dir, data: bytes):
    """Replace model.pt and re-sign the manifest, as an attacker with write access would."""
    (model_dir / "model.pt").write_bytes(data)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["files"]["model.pt"] = hashlib.sha256(data).hexdigest()
    (model_dir / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    data = root / "rows.csv"
    make_table(150, seed=4).to_csv(data, index=False)
    out = root / "m"
    args = ["train", "--train", data, "--task", "buys:binary:yes", "--task", "spend:regression",
            "--epochs", "1", "--batch-size", "32", "--threads", "1", "--out", out]
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    assert exc.value.code == 0
    return {"data": data, "out": out, "args": args, "model_pt": (out / "model.pt").read_bytes(),
            "manifest": (out / "manifest.json").read_text()}


@pytest.fixture
def model_dir(trained, tmp_path):
    """A fresh copy of the trained model directory for one test to damage."""
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(trained["out"], copy)
    return copy


def _uses(model_dir, data, tmp_path):
    """Every command that loads a model directory."""
    return [["predict", model_dir, data, "--out", tmp_path / "p.csv"],
            ["evaluate", model_dir, data],
            ["export", model_dir, "--format", "torchscript", "--out", tmp_path / "m.ts"]]


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_malicious_model_pt_never_runs(trained, model_dir, tmp_path, capsys, kind):
    marker = tmp_path / "pwned"
    _plant(model_dir, _evil_files(tmp_path, marker)[kind])
    for argv in _uses(model_dir, trained["data"], tmp_path):
        code, err = _cli(argv, capsys)
        assert code == 2 and "cannot be read safely" in err and "model.pt" in err, err
        assert len(err.splitlines()) == 1
    assert not marker.exists()
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "m.ts").exists()


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_malicious_training_checkpoint_never_runs(trained, tmp_path, capsys, kind):
    marker = tmp_path / "pwned"
    out = tmp_path / "new"
    partial_dir(out).mkdir()
    (partial_dir(out) / "checkpoint.pt").write_bytes(_evil_files(tmp_path, marker)[kind])
    args = [*trained["args"][:-1], out, "--resume"]
    code, err = _cli(args, capsys)
    assert code == 2 and "cannot be read safely" in err and "checkpoint.pt" in err, err
    assert "--overwrite" in err  # the way out
    assert not marker.exists() and not out.exists()
    assert (partial_dir(out) / "checkpoint.pt").exists()  # evidence is not deleted


@pytest.mark.parametrize("cut", [0, 1, 100, 0.5, -1])
def test_truncated_model_pt_is_a_clear_error(trained, model_dir, tmp_path, capsys, cut):
    data = trained["model_pt"]
    n = int(len(data) * cut) if isinstance(cut, float) else cut % len(data)
    _plant(model_dir, data[:n])  # checksum re-signed: the loader itself must notice
    code, err = _cli(["evaluate", model_dir, trained["data"]], capsys)
    assert code == 2 and "model.pt" in err and ("cannot be read safely" in err
                                                or "not an mmoe checkpoint" in err), err


def test_truncated_training_checkpoint_is_a_clear_error(trained, tmp_path, capsys):
    out = tmp_path / "new"
    partial_dir(out).mkdir()
    data = trained["model_pt"]
    (partial_dir(out) / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    code, err = _cli([*trained["args"][:-1], out, "--resume"], capsys)
    assert code == 2 and "checkpoint.pt" in err and "cannot be read safely" in err, err


def test_flipped_byte_in_model_pt_fails_the_checksum(trained, model_dir, capsys):
    data = bytearray(trained["model_pt"])
    data[len(data) // 2] ^= 0xFF
    (model_dir / "model.pt").write_bytes(bytes(data))
    code, err = _cli(["evaluate", model_dir, trained["data"]], capsys)
    assert code == 2 and "model.pt' does not match its checksum" in err, err


def test_model_pt_from_another_model_is_refused(trained, model_dir, tmp_path, capsys):
    # a valid checkpoint, but of a different model: strict loading refuses it
    from mmoe import TaskSpec, build_model
    from mmoe.train.checkpoint import save_checkpoint

    other = build_model("mmoe", 3, [TaskSpec("buys", "binary")], num_experts=2)
    save_checkpoint(tmp_path / "other.pt", other)
    _plant(model_dir, (tmp_path / "other.pt").read_bytes())
    code, err = _cli(["evaluate", model_dir, trained["data"]], capsys)
    assert code == 2 and "m" in err and "disagree on the tasks" in err, err
