"""The paper's §3.2 synthetic generator: geometry, label formula, statistics, seeding."""

import math

import pytest
import torch

from mmoe.data.datasets.synthetic import (
    SyntheticSpec,
    generate,
    label_correlation_study,
    make_tasks,
    pearson,
    synthetic_labels,
)

CORRS = [-1.0, -0.3, 0.0, 0.5, 0.9, 0.99, 1.0]


def test_cosine_of_w1_w2_is_p_exactly_and_norms_are_c():
    spec = SyntheticSpec(d=50, c=2.5, m=3)
    tasks, _ = generate(CORRS, list(range(len(CORRS))), {"train": 4}, spec)
    w = tasks.w.double()  # (R, 2, d)
    cos = torch.cosine_similarity(w[:, 0], w[:, 1], dim=-1)
    assert torch.allclose(cos, torch.tensor(CORRS, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(w.norm(dim=-1), torch.full((len(CORRS), 2), 2.5,
                                                     dtype=torch.float64), atol=1e-5)


def test_u1_u2_orthonormal():
    tasks = make_tasks([0.0] * 3, SyntheticSpec(d=20, c=1.0),
                       [torch.Generator().manual_seed(s) for s in range(3)])
    u1, u2 = tasks.w[:, 0], tasks.w[:, 1]  # at p = 0, w2 = c·u2
    assert torch.allclose((u1 * u2).sum(-1), torch.zeros(3), atol=1e-6)
    assert torch.allclose(u2.norm(dim=-1), torch.ones(3), atol=1e-6)


def test_labels_match_the_formula_row_by_row():
    spec = SyntheticSpec(d=6, m=4, sigma=0.0)
    tasks, splits = generate([0.7, 0.2], [3, 4], {"train": 5}, spec)
    x, y = splits["train"]
    for r in range(2):
        for i in range(5):
            for k in range(2):
                z = float(tasks.w[r, k] @ x[r, i])
                want = z + sum(math.sin(float(tasks.alpha[r, j]) * z + float(tasks.beta[r, j]))
                               for j in range(4))
                assert y[r, i, k].item() == pytest.approx(want, abs=1e-4)


def test_noise_has_std_sigma():
    spec = SyntheticSpec(d=8, m=0, sigma=0.1)
    tasks, splits = generate([0.5], [0], {"train": 20_000}, spec)
    x, y = splits["train"]
    eps = y - synthetic_labels(x, tasks)  # (1, n, 2)
    assert eps.std().item() == pytest.approx(0.1, rel=0.03)
    assert abs(pearson(eps[0, :, 0], eps[0, :, 1]).item()) < 0.03  # independent per task


def test_label_correlation_equals_p_without_sines_and_noise():
    ps = [-0.5, 0.0, 0.5, 0.9, 1.0]
    s = label_correlation_study(ps, SyntheticSpec(d=10, m=0, sigma=0.0), n=5000, trials=8)
    assert s["mean"] == pytest.approx(ps, abs=0.02)
    assert s["std"][-1] == pytest.approx(0.0, abs=1e-6)


def test_label_correlation_rises_with_p_and_is_one_at_p_one_without_noise():
    s = label_correlation_study([0.0, 0.5, 0.9, 1.0], SyntheticSpec(d=10, sigma=0.0),
                                n=2000, trials=4)
    assert s["mean"] == sorted(s["mean"])
    assert s["mean"][-1] == pytest.approx(1.0, abs=1e-5)
    assert abs(s["mean"][0]) < 0.1


def test_shapes_and_split_order():
    tasks, splits = generate([0.5, 0.9, 1.0], [0, 1, 2], {"train": 7, "val": 3},
                             SyntheticSpec(d=12, m=5))
    assert tasks.w.shape == (3, 2, 12)
    assert tasks.alpha.shape == tasks.beta.shape == (3, 5)
    assert list(splits) == ["train", "val"]
    assert splits["train"][0].shape == (3, 7, 12) and splits["train"][1].shape == (3, 7, 2)
    assert splits["val"][0].shape == (3, 3, 12) and splits["val"][1].shape == (3, 3, 2)


def test_seeding_same_seed_same_data_and_independent_of_other_runs():
    sizes = {"train": 6, "test": 4}
    _, a = generate([0.5, 0.9], [11, 12], sizes)
    _, b = generate([0.9], [12], sizes)
    _, c = generate([0.5, 0.9], [11, 13], sizes)
    assert torch.equal(a["train"][0][1], b["train"][0][0])
    assert torch.equal(a["test"][1][1], b["test"][1][0])
    assert not torch.equal(a["train"][0][1], c["train"][0][1])


def test_same_seed_different_p_shares_x_and_task_one():
    _, s = generate([0.5, 1.0], [7, 7], {"train": 10}, SyntheticSpec(d=9))
    x, y = s["train"]
    assert torch.equal(x[0], x[1])
    assert torch.allclose(y[0, :, 0], y[1, :, 0])  # w1 = c·u1 does not depend on p
    assert not torch.allclose(y[0, :, 1], y[1, :, 1])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"d": 1}, "d must be >= 2"),
    ({"m": -1}, "m must be an integer >= 0"),
    ({"c": 0.0}, "c must be > 0"),
    ({"sigma": -0.1}, "sigma must be a number >= 0"),
])
def test_spec_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticSpec(**kwargs)


def test_generate_errors():
    with pytest.raises(ValueError, match=r"correlation must be in \[-1, 1\]"):
        generate([1.5], [0], {"train": 4})
    with pytest.raises(ValueError, match="one seed per run"):
        generate([0.5, 0.9], [0], {"train": 4})
    with pytest.raises(ValueError, match="number of rows must be a positive integer"):
        generate([0.5], [0], {"train": 0})
