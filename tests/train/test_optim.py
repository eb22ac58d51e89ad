"""LeanAdam follows torch's fused Adam bit for bit and shares its state_dict."""

import copy

import pytest
import torch

from mmoe.train.optim import LeanAdam


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*shape, generator=g))
            for shape in ((3, 4), (5,), (2, 2, 2))]


def _grads(step, params):
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(p.shape, generator=g) for p in params]


def _run(opt_cls, params, steps, skip=(), **options):
    """Steps with the same gradients; at step i in ``skip`` the second parameter has none."""
    opt = opt_cls(params, lr=0.1, weight_decay=0.01, **options)
    for i in range(steps):
        opt.zero_grad(set_to_none=True)
        for j, (p, g) in enumerate(zip(params, _grads(i, params), strict=True)):
            if not (i in skip and j == 1):
                p.grad = g
        opt.step()
    return opt


@pytest.mark.parametrize("skip", [(), (0,), (3, 4)])
def test_same_trajectory_and_state_as_torch_fused_adam(skip):
    mine, theirs = _params(), _params()
    lean = _run(LeanAdam, mine, 8, skip)
    torch_opt = _run(torch.optim.Adam, theirs, 8, skip, fused=True)
    for a, b in zip(mine, theirs, strict=True):
        assert torch.equal(a, b)
    ours, ref = lean.state_dict(), torch_opt.state_dict()
    assert ours["param_groups"][0]["lr"] == ref["param_groups"][0]["lr"]
    for k, state in ref["state"].items():
        for name, value in state.items():
            assert torch.equal(ours["state"][k][name], value), (k, name)
    assert lean._plan is not None  # the direct call was in use


def test_loaded_state_continues_like_torch():
    """A state saved by torch's Adam, loaded into LeanAdam (and the reverse), continues on
    the same trajectory; the lists gathered before the load are not reused."""
    mine, theirs = _params(), _params()
    torch_opt = _run(torch.optim.Adam, theirs, 3, fused=True)
    lean = _run(LeanAdam, mine, 2)  # its own state first, then replaced
    with torch.no_grad():
        for a, b in zip(mine, theirs, strict=True):
            a.copy_(b)
    lean.load_state_dict(copy.deepcopy(torch_opt.state_dict()))  # not shared tensors
    assert lean._plan is None
    for opt, params in ((lean, mine), (torch_opt, theirs)):
        for i in range(3, 6):
            opt.zero_grad(set_to_none=True)
            for p, g in zip(params, _grads(i, params), strict=True):
                p.grad = g
            opt.step()
    for a, b in zip(mine, theirs, strict=True):
        assert torch.equal(a, b)


def test_learning_rate_changes_take_effect():
    mine, theirs = _params(), _params()
    for params, cls, extra in ((mine, LeanAdam, {}), (theirs, torch.optim.Adam, {"fused": True})):
        opt = cls(params, lr=0.1, **extra)
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        for i in range(6):
            opt.zero_grad()
            for p, g in zip(params, _grads(i, params), strict=True):
                p.grad = g
            opt.step()
            scheduler.step()
    for a, b in zip(mine, theirs, strict=True):
        assert torch.equal(a, b)


def test_zero_grad_drops_or_zeroes_every_gradient():
    params = _params()
    opt = LeanAdam(params, lr=0.1)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_step_hooks_run_on_torchs_step():
    """With a step hook registered, the step is torch's (with its hooks), still the same
    trajectory."""
    mine, theirs = _params(), _params()
    seen = []
    lean = LeanAdam(mine, lr=0.1)
    lean.register_step_post_hook(lambda opt, args, kwargs: seen.append(1))
    torch_opt = torch.optim.Adam(theirs, lr=0.1, fused=True)
    for opt, params in ((lean, mine), (torch_opt, theirs)):
        for i in range(3):
            opt.zero_grad()
            for p, g in zip(params, _grads(i, params), strict=True):
                p.grad = g
            opt.step()
    assert seen == [1, 1, 1]
    for a, b in zip(mine, theirs, strict=True):
        assert torch.equal(a, b)
