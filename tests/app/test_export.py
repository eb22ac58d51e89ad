"""Export of every registered model to ONNX (checked with onnxruntime) and TorchScript."""

import numpy as np
import pandas as pd
import pytest
import torch

from mmoe import TaskSpec, available_models, build_model
from mmoe.app.export import ExportWrapper, export_model, sample_inputs
from mmoe.data.encoders import TableEncoder
from mmoe.train.model_dir import save_model_dir

from .conftest import make_table


def _model_dir(tmp_path, name, numeric=True):
    df = make_table(100, 0)
    # a funnel step after buys (esmm and aitm need one): positive only where buys is
    df["again"] = ((df["buys"] == "yes") & (np.arange(len(df)) % 3 == 0)).astype(int)
    if not numeric:
        df = df[["city", "buys", "spend", "segment", "again"]]
    tasks = [TaskSpec("buys", "binary", positive="yes"), TaskSpec("spend", "regression"),
             TaskSpec("segment", "multiclass"), TaskSpec("again", "binary", after="buys")]
    enc = TableEncoder(tasks, exclude=["user_id", "w"], scale_regression=True).fit(df)
    torch.manual_seed(0)
    model = build_model(name, enc.input_spec(), enc.tasks, num_experts=3)
    return save_model_dir(tmp_path / name, model, enc, {}, {}), model, enc


@pytest.mark.parametrize("name", sorted(available_models()))
def test_onnx_parity_every_model(tmp_path, name):
    ort = pytest.importorskip("onnxruntime")
    try:
        directory, model, enc = _model_dir(tmp_path, name)
    except ValueError as err:  # a model needing options we do not pass
        pytest.skip(f"{name}: {err}")
    out = tmp_path / "m.onnx"
    diff = export_model(directory, "onnx", out)
    assert diff <= 1e-5
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["buys", "spend", "segment", "again",
                                                      "buys_and_again"]
    inputs = sample_inputs(model, 33, seed=7)  # another batch size than traced
    got = session.run(None, {"numeric": inputs[0].numpy(), "categorical": inputs[1].numpy()})
    with torch.inference_mode():
        ref = ExportWrapper(model.eval(), enc)(*inputs)
    np.testing.assert_allclose(got[0], ref[0].numpy(), atol=1e-5)
    std = enc.label_stats["spend"][1]
    np.testing.assert_allclose(got[1] / std, ref[1].numpy() / std, atol=1e-5)
    np.testing.assert_allclose(got[2], ref[2].numpy(), atol=1e-5)
    assert got[2].shape == (33, 3)
    np.testing.assert_allclose(got[3:], [r.numpy() for r in ref[3:]], atol=1e-5)
    # pCTR * pCVR = pCTCVR whatever the head (aitm's pCVR is clipped at 1 where its joint
    # exceeds pCTR: then the product is pCTR)
    np.testing.assert_allclose(got[0] * got[3], np.minimum(got[4], got[0]), atol=1e-5)


def test_torchscript_and_categorical_only_inputs(tmp_path):
    directory, model, enc = _model_dir(tmp_path, "mmoe", numeric=False)
    # the eager model may run the native CPU kernels, the trace runs torch ops: rounding only
    assert export_model(directory, "torchscript", tmp_path / "m.pt") <= 1e-6
    assert export_model(directory, "onnx", tmp_path / "m.onnx") <= 1e-5
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    codes = torch.tensor([[1], [2], [0]])
    out = loaded(codes)
    assert len(out) == 5 and out[2].shape == (3, 3)


def test_existing_output_kept_on_failure(tmp_path):
    directory, _, _ = _model_dir(tmp_path, "mmoe")
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    with pytest.raises(ValueError, match="--format"):
        export_model(directory, "tflite", out)
    assert out.read_bytes() == b"old"
    assert pd.Series([p.name for p in tmp_path.iterdir()]).str.startswith(".").sum() == 0


def test_export_never_writes_over_the_model_it_exports(tmp_path):
    from mmoe.train.model_dir import read_manifest

    directory, _, _ = _model_dir(tmp_path, "mmoe")
    before = (directory / "model.pt").read_bytes()
    for out in (directory / "model.pt", directory / "manifest.json", directory):
        with pytest.raises(ValueError, match="is the input"):
            export_model(directory, "torchscript", out)
    assert (directory / "model.pt").read_bytes() == before and read_manifest(directory)
    (tmp_path / "dir_out").mkdir()
    with pytest.raises(ValueError, match="is a directory; give a file name"):
        export_model(directory, "torchscript", tmp_path / "dir_out")
