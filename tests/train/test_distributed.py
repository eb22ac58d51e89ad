"""Two CPU processes under torchrun take exactly the steps of one process (same global batch)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmoe.train.distributed import DistContext, shard

WORKER = Path(__file__).with_name("ddp_worker.py")


def _run(args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, *args], check=True, env=env, cwd=tmp_path,
                   capture_output=True, timeout=240)


@pytest.mark.slow
@pytest.mark.parametrize(("weighting", "picked"), [("static", "static"),
                                                   ("default", "uncertainty")])
def test_two_process_ddp_equals_one_process(tmp_path, weighting, picked):
    """The summed loss, and the small table's default (learnt task weights, whose gradients
    the ranks average): the same steps, the same learnt weights."""
    _run([str(WORKER), str(tmp_path / "one.pt"), weighting], tmp_path)
    _run(["-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
          str(WORKER), str(tmp_path / "two.pt"), weighting], tmp_path)
    one = torch.load(tmp_path / "one.pt", weights_only=True)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    assert one["world"] == 1 and two["world"] == 2
    assert one["weighting"] == two["weighting"] == picked
    assert one["learnt"].keys() == two["learnt"].keys() == (
        {"log_var"} if picked == "uncertainty" else set())
    for k, v in one["learnt"].items():
        torch.testing.assert_close(two["learnt"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    for k, v in one["state"].items():
        torch.testing.assert_close(two["state"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    assert "gauc" in one["valid"]["a"]  # grouped validation ran
    for task, metrics in one["valid"].items():
        for name, value in metrics.items():
            assert two["valid"][task][name] == pytest.approx(value, rel=1e-5, abs=1e-6)
    for task, loss in one["loss"].items():
        assert two["loss"][task] == pytest.approx(loss, rel=1e-5)


def test_shards_partition_rows_in_order():
    for n in (0, 1, 7, 53):
        parts = [shard(10, 10 + n, DistContext(r, 3)) for r in range(3)]
        assert parts[0].start == 10 and parts[-1].stop == 10 + n
        assert all(a.stop == b.start for a, b in zip(parts, parts[1:], strict=False))
        assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1
