"""Train a peer library's MMoE on the encoded funnel arrays written by
benchmarks/recsys_throughput.py, in the peers' own environment (never mmoe's): torch-rechub's
``MMOE`` through its ``MTLTrainer``, or DeepCTR-Torch's ``MMOE`` through its ``fit``.

    PEERS_PYTHON benchmarks/peers/recsys_peer.py rechub ENCODED.npz OUT.json [step]

Both get the same table rows (mmoe's hashing), the same widths, experts, towers, batch, lr
and epochs as mmoe (read from the npz's config), no weight decay or L2 (mmoe has none), and
their own default initialisation. Training time is each library's own training call (its
data loader included, as its users run it); ``step_only`` times the model's forward,
backward and Adam step alone on the same batches, without the library's loader. With
``step``, only that is measured (no training, no predictions): for tables where a peer's
full epoch would take hours.
Writes the test predictions (N, 2) and the timings to OUT.json / OUT.npy.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

TASKS = ("click", "purchase")


def _load(path):
    data = np.load(path)
    config = json.loads(str(data["config"]))
    return data, config


def _inputs(data, split, config):
    """The split's columns as the peers' feature dicts want them."""
    x = {"user_id": data[f"{split}_user"], "item_id": data[f"{split}_item"],
         "history": data[f"{split}_history"]}
    for j, name in enumerate(config["categorical"]):
        x[name] = data[f"{split}_categorical"][:, j]
    for j, name in enumerate(config["numeric"]):
        x[name] = data[f"{split}_numeric"][:, j].astype(np.float32)
    return x


def _step_only(model, forward, x_all, y_all, batch, steps, lr):
    """Median seconds of forward + backward + Adam step on ``steps`` batches."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    times = []
    n = len(y_all)
    for s in range(steps):
        idx = slice((s * batch) % (n - batch), (s * batch) % (n - batch) + batch)
        xb = {k: torch.as_tensor(v[idx]) for k, v in x_all.items()}
        yb = torch.as_tensor(y_all[idx], dtype=torch.float32)
        t = time.perf_counter()
        pred = forward(xb)
        loss = sum(torch.nn.functional.binary_cross_entropy(pred[:, i], yb[:, i])
                   for i in range(2)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return float(np.median(times[5:]))


def rechub_model(config, **embedding):
    """torch-rechub's MMOE over the npz's columns (``embedding``: extra arguments of every
    embedding feature, e.g. its ``initializer``), made under the config's seed."""
    from torch_rechub.basic.features import DenseFeature, SequenceFeature, SparseFeature
    from torch_rechub.models.multi_task import MMOE

    d = config["dim"]
    features = [SparseFeature("user_id", config["user_rows"], d, **embedding),
                SparseFeature("item_id", config["item_rows"], d, **embedding),
                SequenceFeature("history", config["item_rows"], d, pooling="mean",
                                shared_with="item_id", padding_idx=0, **embedding)]
    features += [SparseFeature(c, n, d, **embedding)
                 for c, n in zip(config["categorical"], config["categorical_rows"], strict=True)]
    features += [DenseFeature(c) for c in config["numeric"]]
    torch.manual_seed(config["seed"])
    return MMOE(features, ["classification", "classification"], config["experts"],
                {"dims": config["expert_units"]},
                [{"dims": config["tower_units"]} for _ in TASKS])


def rechub(data, config, train=True):
    from torch_rechub.trainers import MTLTrainer
    from torch_rechub.utils.data import DataGenerator

    model = rechub_model(config)
    x_train, y_train = _inputs(data, "train", config), data["train_labels"]
    x_test = _inputs(data, "test", config)
    dg = DataGenerator(x_train, y_train)
    train_dl, _, _ = dg.generate_dataloader(x_val=_inputs(data, "valid", config),
                                            y_val=data["valid_labels"],
                                            x_test=x_test, y_test=data["test_labels"],
                                            batch_size=config["batch"], num_workers=0)
    if not train:
        return None, None, _step_only(model, model, x_train, y_train, config["batch"], 40,
                                      config["lr"])
    trainer = MTLTrainer(model, ["classification", "classification"],
                         optimizer_params={"lr": config["lr"], "weight_decay": 0.0},
                         n_epoch=config["epochs"], earlystop_patience=10**6, device="cpu",
                         model_path=config["scratch"])
    start = time.perf_counter()
    for _ in range(config["epochs"]):
        trainer.train_one_epoch(train_dl)
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        preds = [model({k: torch.as_tensor(v[i:i + 16384]) for k, v in x_test.items()}).numpy()
                 for i in range(0, len(data["test_labels"]), 16384)]
    step = _step_only(model, model, x_train, y_train, config["batch"], 40, config["lr"])
    return np.concatenate(preds), seconds, step


def deepctr(data, config, train=True):
    from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat
    from deepctr_torch.models import MMOE

    d = config["dim"]
    columns = [SparseFeat("user_id", config["user_rows"], d),
               SparseFeat("item_id", config["item_rows"], d),
               VarLenSparseFeat(SparseFeat("history", config["item_rows"], d,
                                           embedding_name="item_id"),
                                maxlen=config["history_len"], combiner="mean")]
    columns += [SparseFeat(c, n, d) for c, n in zip(config["categorical"],
                                                    config["categorical_rows"], strict=True)]
    columns += [DenseFeat(c, 1) for c in config["numeric"]]
    model = MMOE(columns, num_experts=config["experts"],
                 expert_dnn_hidden_units=tuple(config["expert_units"]),
                 gate_dnn_hidden_units=(), tower_dnn_hidden_units=tuple(config["tower_units"]),
                 l2_reg_linear=0.0, l2_reg_embedding=0.0, seed=config["seed"],
                 task_types=("binary", "binary"), task_names=TASKS, device="cpu")
    model.compile(torch.optim.Adam(model.parameters(), lr=config["lr"]), "binary_crossentropy")
    names = [c.name for c in columns]
    x_train = {k: v for k, v in _inputs(data, "train", config).items()}
    x_test = _inputs(data, "test", config)

    def forward(xb):
        return model(torch.cat([xb[k].reshape(len(xb[k]), -1).float() for k in names], 1))

    if not train:
        return None, None, _step_only(model, forward, x_train, data["train_labels"],
                                      config["batch"], 40, config["lr"])
    start = time.perf_counter()
    model.fit({k: x_train[k] for k in names}, data["train_labels"].astype(np.float32),
              batch_size=config["batch"], epochs=config["epochs"], verbose=0)
    seconds = time.perf_counter() - start
    preds = model.predict({k: x_test[k] for k in names}, batch_size=16384)
    step = _step_only(model, forward, x_train, data["train_labels"], config["batch"], 40,
                      config["lr"])
    return np.asarray(preds), seconds, step


def main(which: str, encoded: str, out: str, mode: str = "full") -> None:
    data, config = _load(encoded)
    torch.set_num_threads(config["threads"])
    preds, seconds, step = {"rechub": rechub, "deepctr": deepctr}[which](
        data, config, train=mode != "step")
    rows = len(data["train_labels"]) * config["epochs"]
    if preds is not None:
        np.save(out.replace(".json", ".npy"), preds.astype(np.float64))
    with open(out, "w") as f:
        json.dump({"library": which, "train_seconds": seconds,
                   "samples_per_s": None if seconds is None else rows / seconds,
                   "step_seconds": step, "step_samples_per_s": config["batch"] / step,
                   "torch": torch.__version__}, f)


if __name__ == "__main__":
    main(*sys.argv[1:5])
