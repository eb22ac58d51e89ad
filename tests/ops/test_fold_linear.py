"""The folded first layer (embedding lookups x weight as one gathered table) and the fused
experts+gates product give the same values and gradients as the plain computation."""

import pytest
import torch

import mmoe.ops
from mmoe import InputSpec, TaskSpec, build_model
from mmoe.nn import FeatureEncoder, StackedLinear, shared_input_linear
from mmoe.ops.torch_paths import gather_sum

CARDS = (3, 7, 2, 5)


def _batch(b=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    cat = torch.stack([torch.randint(0, c, (b,), generator=g) for c in CARDS], 1)
    return torch.randn(b, 3, generator=g), cat


def test_gather_sum_and_its_gradient_equal_the_explicit_sum():
    table = torch.randn(6, 4, requires_grad=True)
    rows = torch.tensor([[0, 5, 5], [2, 2, 1]])
    out = gather_sum(table, rows)
    assert torch.allclose(out, table[rows].sum(1))
    grad = torch.randn(2, 4)
    out.backward(grad)
    expected = torch.zeros(6, 4)
    for b in range(2):
        for r in rows[b]:
            expected[r] += grad[b]
    assert torch.allclose(table.grad, expected)


@pytest.mark.parametrize("cards", [CARDS, (3, 40, 5, 20, 17)])  # one-hot and index_add
def test_encoder_linear_equals_dense_product_in_value_and_gradients(cards, kernels):
    torch.manual_seed(0)
    enc = FeatureEncoder(3, cards, embedding_dim=4)
    g = torch.Generator().manual_seed(1)
    numeric = torch.randn(64, 3, generator=g)
    cat = torch.stack([torch.randint(0, c, (64,), generator=g) for c in cards], 1)
    assert enc.folds(cat.shape[0])  # vocabulary <= 64 * n_cat / 2
    w = torch.randn(2, enc.out_features, 5, requires_grad=True)  # two groups of 5 outputs
    folded = enc.fold_linear(numeric, cat, [w], [None])[0]
    grad = torch.randn_like(folded)
    folded.backward(grad)
    g_emb, g_w = enc.embedding.weight.grad.clone(), w.grad.clone()
    enc.embedding.weight.grad, w.grad = None, None
    plain = enc(numeric, cat) @ w  # (2, 64, 5)
    plain.backward(grad)
    assert torch.allclose(folded, plain, atol=1e-5)
    assert torch.allclose(g_emb, enc.embedding.weight.grad, atol=1e-5)
    assert torch.allclose(g_w, w.grad, atol=1e-5)


def test_encoder_does_not_fold_when_the_vocabulary_outnumbers_the_lookups():
    enc = FeatureEncoder(0, (1000,), embedding_dim=4)
    assert not enc.folds(64)
    cat = torch.randint(0, 1000, (64, 1))
    w = torch.randn(1, 4, 3)  # folding anyway still gives the dense product
    assert torch.allclose(enc.fold_linear(None, cat, [w], [None])[0], enc(None, cat) @ w,
                          atol=1e-6)


def test_shared_input_linear_equals_each_layer_alone():
    torch.manual_seed(0)
    a, b = StackedLinear(3, 6, 4), StackedLinear(2, 6, 5, bias=False)
    x = torch.randn(9, 6)
    ya, yb = shared_input_linear(x, [a, b])
    assert torch.allclose(ya, a(x)) and torch.allclose(yb, b(x))
    assert ya.shape == (3, 9, 4) and yb.shape == (2, 9, 5)


@pytest.mark.parametrize("name", ["mmoe", "omoe", "shared_bottom", "single_task"])
@pytest.mark.parametrize("units", [(8, 6), (8,)])  # one layer: its ReLU fused into the mixing
def test_training_forward_and_gradients_equal_with_and_without_folding(name, units, kernels,
                                                                      monkeypatch):
    spec = InputSpec(numeric=("a", "b", "c"),
                     categorical=tuple((f"c{i}", c) for i, c in enumerate(CARDS)),
                     embedding_dim=4)
    tasks = (TaskSpec("y1", "binary"), TaskSpec("y2", "regression"))
    torch.manual_seed(0)
    model = build_model(name, spec, tasks, num_experts=3, expert_units=units)
    model.train()
    numeric, cat = _batch()
    seen = []
    real = mmoe.ops.fold_linear  # the torch or the native folded layer
    monkeypatch.setattr(mmoe.ops, "fold_linear", lambda *args: seen.append(1) or real(*args))

    def run():
        model.zero_grad()
        out = model(numeric, cat)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return out.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}

    out_f, grads_f = run()
    assert seen, "the folded path was not taken"
    monkeypatch.setattr(FeatureEncoder, "folds", lambda self, b: False)
    out_p, grads_p = run()
    assert torch.allclose(out_f, out_p, atol=1e-5)
    for k in grads_p:
        assert torch.allclose(grads_f[k], grads_p[k], atol=1e-5), k


def test_mix_experts_gradients_match_einsum_and_vmap(kernels):
    from mmoe.nn import mix_experts
    g = torch.softmax(torch.randn(2, 5, 3, dtype=torch.float64), -1).requires_grad_()
    x = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(mix_experts, (g, x))
    assert torch.allclose(mix_experts(g, x), torch.einsum("gbe,ebh->gbh", g, x))
    gr, xr = torch.randn(4, 2, 5, 3), torch.randn(4, 3, 5, 4)  # vmapped over 4 runs
    assert torch.allclose(torch.func.vmap(mix_experts)(gr, xr),
                          torch.einsum("rgbe,rebh->rgbh", gr, xr), atol=1e-6)
    # relu=True: the experts' ReLU fused in (pre-activations kept away from the kink)
    z = (x.detach() + 0.2 * x.detach().sign()).requires_grad_()
    assert torch.autograd.gradcheck(lambda g, z: mix_experts(g, z, relu=True), (g, z))
    assert torch.allclose(mix_experts(g, z, relu=True),
                          torch.einsum("gbe,ebh->gbh", g, torch.relu(z)))
    assert torch.allclose(torch.func.vmap(lambda g, z: mix_experts(g, z, relu=True))(gr, xr),
                          torch.einsum("rgbe,rebh->rgbh", gr, torch.relu(xr)), atol=1e-6)
