"""The synthetic reproduction: the batched-runs trainer, the driver's files, the CLI."""

import json
import math

import numpy as np
import pytest
import torch

from mmoe.cli import main
from mmoe.data.datasets.synthetic import SyntheticSpec, generate
from mmoe.experiments.multirun import batch_orders, train_runs
from mmoe.experiments.synthetic import (
    SyntheticConfig,
    build_synthetic_model,
    planned_steps,
    run_synthetic,
)
from mmoe.experiments.synthetic.claims import check_claims, summarise
from mmoe.experiments.synthetic.config import run_seed


@pytest.mark.parametrize("model", ["shared_bottom", "omoe", "mmoe"])
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_batched_runs_equal_separate_single_model_runs(model, schedule):
    seeds, corr, steps, batch = [3, 4, 5], [0.5, 0.9, 1.0], 6, 16
    _, s = generate(corr, seeds, {"train": 40, "val": 30}, SyntheticSpec(d=10, m=3))
    (x, y), (xv, yv) = s["train"], s["val"]
    lrs = [1e-2, 3e-3, 1e-3]  # one learning rate per run
    res = train_runs(lambda seed: build_synthetic_model(model, 10, seed), seeds, (x, y),
                     {"val": (xv, yv)}, steps=steps, batch_size=batch, lr=lrs, eval_every=3,
                     lr_schedule=schedule, warmup=0.34)
    assert res.curve_steps == [3, 6]
    # cosine: 2 warm-up steps (1/2, 1), then cos decay over the 4 left, to 0 at the last
    factors = ([1.0] * steps if schedule == "constant" else
               [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 3)) for k in range(4)])
    for r, seed in enumerate(seeds):
        net = build_synthetic_model(model, 10, seed)
        opt = torch.optim.Adam(net.parameters(), lr=lrs[r])
        orders = batch_orders([seed], 40, batch)
        for step in range(steps):
            opt.param_groups[0]["lr"] = lrs[r] * factors[step]
            idx = next(orders)[0]  # (B,)
            loss = ((net(x[r, idx]) - y[r, idx]) ** 2).mean(0).sum()  # summed task MSEs
            opt.zero_grad()
            loss.backward()
            opt.step()
        for name, p in net.named_parameters():
            assert torch.allclose(res.params[name][r], p.detach(), atol=1e-5), name
        with torch.no_grad():
            val = ((net(xv[r]) - yv[r]) ** 2).mean().item()  # MSE averaged over the tasks
        assert res.losses["val"][r].item() == pytest.approx(val, rel=1e-4)
        assert res.curves["val"][r, -1].item() == pytest.approx(val, rel=1e-4)
    assert res.run_steps_per_second > 0


def test_runs_start_from_their_own_seeded_initialisation():
    a = build_synthetic_model("mmoe", 10, 1)
    b = build_synthetic_model("mmoe", 10, 1)
    c = build_synthetic_model("mmoe", 10, 2)
    wa, wb, wc = (m.backbone.experts.layers[0].weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_parameter_matched_models():
    sizes = {m: sum(p.numel() for p in build_synthetic_model(m, 100, 0).backbone.parameters())
             for m in ("shared_bottom", "omoe", "mmoe")}
    # experts 100·16·8 + 16·8 biases; SB 100·113 + 113; gates 100·8 per gate (no bias)
    assert sizes["omoe"] == 100 * 16 * 8 + 16 * 8 + 100 * 8
    assert sizes["mmoe"] == 100 * 16 * 8 + 16 * 8 + 2 * 100 * 8
    assert sizes["shared_bottom"] == 100 * 113 + 113


def test_batch_orders_are_epoch_permutations():
    orders = batch_orders([0, 1], 10, 5)
    first = torch.cat([next(orders), next(orders)], 1)  # one epoch: (R, 10)
    for r in range(2):
        assert sorted(first[r].tolist()) == list(range(10))
    assert not torch.equal(first[0], first[1])


def test_claims_verdicts_on_a_hand_made_summary():
    rows = []
    table = {"shared_bottom": (0.30, 0.25, 0.20, 0.10), "omoe": (0.15, 0.12, 0.08, 0.02),
             "mmoe": (0.08, 0.08, 0.07, 0.01)}
    for m, (a, b, c, sd) in table.items():
        for p, v in zip((0.5, 0.9, 1.0), (a, b, c), strict=True):
            rows.append({"model": m, "correlation": p, "final_loss_mean": v,
                         "final_loss_std": sd})
    claims = check_claims(rows)
    assert all(c["holds"] for c in claims)
    rows[0]["final_loss_mean"] = 0.1  # SB at 0.5 now beats OMoE, and its p=1 loss is higher
    verdicts = {c["claim"]: c["holds"] for c in check_claims(rows)}
    assert verdicts["at p = 0.5: mean final loss MMoE < OMoE < Shared-Bottom"] is False
    assert verdicts["shared_bottom: loss at p = 1.0 no higher than at p = 0.5"] is False
    assert verdicts["at p = 0.9: mean final loss MMoE < OMoE < Shared-Bottom"] is True


def test_claims_carry_bootstrap_intervals_of_their_differences():
    rng = np.random.default_rng(0)
    level = {"mmoe": 0.05, "omoe": 0.08, "shared_bottom": 0.14}
    runs = [{"model": m, "correlation": p, "seed": s, "lr": 0.01,
             "final_loss": level[m] + (0.2 if p == 0.5 else 0.0) * (m == "omoe")
             + 0.005 * rng.standard_normal()}
            for s in range(30) for p in (0.5, 0.9, 1.0) for m in level]
    summary = summarise(runs, SyntheticConfig(runs=30))
    claims = {c["claim"]: c for c in check_claims(summary, runs)}
    at9 = claims["at p = 0.9: mean final loss MMoE < OMoE < Shared-Bottom"]["ci"]
    est, lo, hi = at9["OMoE - MMoE"]
    assert lo < est < hi and lo > 0.02 and hi < 0.04  # 0.03 apart, noise 0.005 / sqrt(30)
    at5 = claims["at p = 0.5: mean final loss MMoE < OMoE < Shared-Bottom"]
    assert at5["holds"] is False and at5["ci"]["Shared-Bottom - OMoE"][2] < 0  # settled: no
    assert claims["omoe: loss at p = 1.0 no higher than at p = 0.5"]["ci"][
        "loss(p=0.5) - loss(p=1.0)"][1] > 0.15


TINY = dict(runs=2, steps=4, batch_size=8, n_train=32, n_val=16, n_test=16, eval_every=2,
            d=10, m=3, fig2_n=50, fig2_trials=3, lr_grid=(1e-3, 1e-2), lr_runs=1)


def test_end_to_end_files_and_schema(tmp_path):
    cfg = SyntheticConfig(**TINY)
    calls = []
    res = run_synthetic(cfg, tmp_path, progress=calls.append)
    assert sum(calls) == planned_steps(cfg) == 3 * 4 * (1 + 1)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["experiment"] == "synthetic"
    assert data["config"]["runs"] == 2 and data["config"]["correlations"] == [0.5, 0.9, 1.0]
    assert {"version", "git_commit", "seeds", "chosen_lr", "claims", "speed", "curves",
            "label_correlation"} <= set(data)
    assert len(data["summary"]) == 9
    for row in data["summary"]:
        assert {"model", "correlation", "final_loss_mean", "final_loss_std",
                "final_loss_median", "runs"} <= set(row)
        assert row["runs"] == 2 and row["final_loss_mean"] > 0
        assert row["model"] in ("shared_bottom", "omoe", "mmoe")
    assert len(data["runs"]) == 18
    assert {"model", "correlation", "seed", "final_loss"} <= set(data["runs"][0])
    # paired runs: run r has seed r at every correlation, shared by the three models
    assert {(r["correlation"], r["seed"]) for r in data["runs"]} == {
        (p, s) for p in (0.5, 0.9, 1.0) for s in (0, 1)}
    assert data["seeds"]["main"] == {"0.5": [0, 1], "0.9": [0, 1], "1.0": [0, 1]}
    mean = {(r["model"], r["correlation"]): r["final_loss_mean"] for r in data["summary"]}
    for m in ("shared_bottom", "omoe", "mmoe"):
        v = [r["final_loss"] for r in data["runs"] if r["model"] == m and r["correlation"] == 0.9]
        assert mean[(m, 0.9)] == pytest.approx(sum(v) / 2)
    assert set(data["chosen_lr"].values()) <= {1e-3, 1e-2}
    assert len(data["lr_selection"]) == 6
    for model, lr in data["chosen_lr"].items():  # chosen on the median pilot validation loss
        rows = [r for r in data["lr_selection"] if r["model"] == model]
        assert lr == min(rows, key=lambda r: r["val_loss_median"])["lr"]
    assert data["curves"]["steps"] == [2, 4]
    assert len(data["curves"]["rows"]) == 9 and len(data["curves"]["rows"][0]["mean"]) == 2
    assert len(data["claims"]) >= 7
    assert all(v > 0 for v in data["speed"]["run_steps_per_second"].values())
    for name in data["figures"].values():
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    report = (tmp_path / "report.md").read_text()
    assert "| MMoE | 0.5 |" in report and "## Claims" in report
    assert "fig4_loss_curves.png" in report
    assert res["summary"] == data["summary"]


def test_same_seed_same_results(tmp_path):
    cfg = SyntheticConfig(**{**TINY, "lr_grid": (1e-3,), "models": ("mmoe",),
                             "correlations": (0.5,)})
    a = run_synthetic(cfg, tmp_path / "a")
    b = run_synthetic(cfg, tmp_path / "b")
    assert [r["final_loss"] for r in a["runs"]] == [r["final_loss"] for r in b["runs"]]
    assert a["lr_selection"] == [] and a["chosen_lr"] == {"mmoe": 1e-3}


def test_cli_tiny_run(tmp_path, capsys):
    out = tmp_path / "syn"
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "synthetic", "--runs", "2", "--steps", "2", "--batch-size", "8",
              "--n-train", "32", "--d", "8", "--m", "2", "--lr", "1e-3",
              "--correlations", "0.5,1.0", "--models", "omoe,mmoe", "--no-progress",
              "--out", str(out)])
    assert exc.value.code == 0
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["models"] == ["omoe", "mmoe"] and data["config"]["d"] == 8
    assert len(data["summary"]) == 4
    assert "claims holding" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--correlations", "0.5,1.5"], "correlation must be in [-1, 1], got 1.5"),
    (["--correlations", "a,b"], "--correlations must be comma-separated numbers"),
    (["--models", "mmoe,foo"], "synthetic model must be one of"),
    (["--runs", "0"], "runs must be a positive integer"),
    (["--lr", "0"], "learning rates must be > 0"),
    (["--d", "1"], "d must be >= 2"),
    (["--batch-size", "64", "--n-train", "32"], "batch_size 64 exceeds n_train 32"),
])
def test_cli_user_errors_exit_2_with_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "synthetic", "--no-progress", "--out", str(tmp_path), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_summary_counts_stuck_runs_and_keeps_them_in_the_mean():
    from mmoe.experiments.synthetic.claims import summarise
    cfg = SyntheticConfig(runs=4, models=("omoe", "mmoe"), correlations=(0.5,), lr_grid=(1e-2,))
    losses = {"omoe": [0.04, 0.05, 0.06, 1.04], "mmoe": [0.03, 0.04, 0.05, 0.05]}
    runs = [{"model": m, "correlation": 0.5, "seed": i, "lr": 1e-2, "final_loss": v}
            for m, vs in losses.items() for i, v in enumerate(vs)]
    rows = {r["model"]: r for r in summarise(runs, cfg)}
    # pooled median 0.05 -> threshold 0.15: only the dead-tower run (1.04) is stuck
    assert rows["omoe"]["stuck_threshold"] == pytest.approx(0.15)
    assert rows["omoe"]["stuck_runs"] == 1 and rows["mmoe"]["stuck_runs"] == 0
    assert rows["omoe"]["final_loss_mean"] == pytest.approx(1.19 / 4)  # stuck run kept
    assert rows["omoe"]["final_loss_mean_unstuck"] == pytest.approx(0.05)
    assert rows["omoe"]["final_loss_max"] == pytest.approx(1.04)


def test_runs_per_correlation_must_not_overlap_the_next_correlations_seeds():
    with pytest.raises(ValueError, match="runs must be <= 10000"):
        SyntheticConfig(runs=10_001)


def test_independent_runs_draw_fresh_seeds_per_correlation(tmp_path):
    cfg = SyntheticConfig(**{**TINY, "lr_grid": (1e-3,), "models": ("mmoe",),
                             "paired": False})
    data = run_synthetic(cfg, tmp_path)
    assert data["seeds"]["main"] == {"0.5": [0, 1], "0.9": [10_000, 10_001],
                                     "1.0": [20_000, 20_001]}
    assert {(r["correlation"], r["seed"]) for r in data["runs"]} == {
        (0.5, 0), (0.5, 1), (0.9, 10_000), (0.9, 10_001), (1.0, 20_000), (1.0, 20_001)}


def test_paired_runs_differ_only_by_the_correlation():
    tasks, s = generate([0.5, 1.0], [run_seed(0, 0, 3), run_seed(0, 1, 3)], {"train": 20})
    assert torch.equal(s["train"][0][0], s["train"][0][1])  # same x
    assert torch.equal(tasks.alpha[0], tasks.alpha[1]) and torch.equal(tasks.w[0, 0], tasks.w[1, 0])
    assert not torch.equal(tasks.w[0, 1], tasks.w[1, 1])  # only w2 moves with p
