"""On a CUDA GPU (skipped, with the reason, where none is visible: see the root conftest):
the same model as on the CPU, the fused ops' reference path, checkpoints across devices,
export from a GPU-trained model, mixed precision, and streamed batches pinned and prefetched.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from mmoe import TaskSpec, TrainConfig, build_model, ops
from mmoe.app.export import export_model
from mmoe.app.fit import train_model_dir
from mmoe.app.spec import build_run_spec
from mmoe.data.table import TensorTable
from mmoe.ops import reference
from mmoe.train import Trainer
from mmoe.train.checkpoint import load_model, save_checkpoint
from mmoe.train.epochs import StreamEpochs, shuffle_batches

pytestmark = pytest.mark.cuda
TASKS = [TaskSpec("y"), TaskSpec("v", "regression")]


def _data(n=4096, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] - x[:, 1] + 0.5 * torch.randn(n, generator=g) > 0).float()
    v = x[:, 2] * x[:, 3] + 0.1 * torch.randn(n, generator=g)
    return TensorTable.from_arrays(x, torch.stack([y, v], 1))


def _fit(device, precision="fp32", train=None):
    torch.manual_seed(0)
    model = build_model("mmoe", 8, TASKS, num_experts=4, expert_units=(32,))
    cfg = TrainConfig(epochs=5, batch_size=256, precision=precision)
    trainer = Trainer(model, cfg, progress=False, device=device)
    return trainer, trainer.fit(_data() if train is None else train, _data(1024, 1))


def test_cuda_training_matches_the_cpu():
    _, cpu = _fit("cpu")
    trainer, gpu = _fit("cuda")
    assert next(trainer.model.parameters()).is_cuda
    assert abs(gpu.history[-1]["valid"]["y"]["auc"] - cpu.history[-1]["valid"]["y"]["auc"]) \
        <= 0.002


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_the_gpu(precision):
    _, full = _fit("cuda")
    _, half = _fit("cuda", precision)
    assert abs(half.history[-1]["valid"]["y"]["auc"] - full.history[-1]["valid"]["y"]["auc"]) \
        <= 0.01


def test_fused_ops_take_the_reference_path_on_cuda():
    g = torch.Generator().manual_seed(0)
    gates = torch.softmax(torch.randn(2, 16, 4, generator=g), -1)
    experts = torch.randn(4, 16, 8, generator=g)
    got = ops.mix(gates.cuda(), experts.cuda(), relu=True).cpu()
    torch.testing.assert_close(got, reference.mix(gates, experts, relu=True))
    cols = [torch.randn(10, 3, generator=g)]
    index = torch.tensor([3, 1, 4])
    torch.testing.assert_close(ops.take_rows([c.cuda() for c in cols], index.cuda())[0].cpu(),
                               reference.take_rows(cols, index)[0])


def test_checkpoints_load_on_any_device(tmp_path):
    trainer, _ = _fit("cuda")
    path = save_checkpoint(tmp_path / "m.pt", trainer.model)
    on_cpu, _ = load_model(path)
    on_gpu, _ = load_model(path, device="cuda")
    assert next(on_cpu.parameters()).device.type == "cpu"
    assert next(on_gpu.parameters()).is_cuda
    x = _data(64, 2)
    with torch.inference_mode():
        torch.testing.assert_close(on_gpu(*x.to("cuda").inputs()).cpu(), on_cpu(*x.inputs()),
                                   atol=1e-4, rtol=1e-4)


def test_export_from_a_gpu_trained_model(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=2000), "c": rng.choice(["x", "y", "z"], 2000)})
    df["y"] = (df["a"] + (df["c"] == "x") > 0.5).astype(int)
    df.to_csv(tmp_path / "t.csv", index=False)
    spec = build_run_spec(train=str(tmp_path / "t.csv"), tasks=["y:binary"], epochs=2)
    train_model_dir(spec, tmp_path / "m", device="cuda")
    assert export_model(tmp_path / "m", "onnx", tmp_path / "m.onnx") <= 1e-5
    assert export_model(tmp_path / "m", "onnx", tmp_path / "raw.onnx", raw=True) <= 1e-5


def test_in_memory_tables_move_once_and_streams_are_prefetched():
    trainer, _ = _fit("cuda")
    table = _data()
    chunks = [table.take(slice(i, i + 512)) for i in range(0, len(table), 512)]
    source = StreamEpochs(lambda e: shuffle_batches(chunks, 256, 2048, seed=0, epoch=e))
    _, streamed = _fit("cuda", train=source)
    assert streamed.history[-1]["valid"]["y"]["auc"] > 0.8
