"""torch-rechub's MMoE on the encoded funnel arrays of benchmarks/recsys_throughput.py with
parts switched off (benchmarks/recsys_variants.py runs it), in the peers' own environment:

    PEERS_PYTHON benchmarks/peers/rechub_variants.py ENCODED.npz VARIANT SEED OUT.npy

VARIANT is ``+``-joined words: ``base``; ``nobn`` (no batch norm in any of its MLPs),
``nobn_expert`` (none in the experts and towers), ``nobn_gate`` (none in the gates);
``init<STD>`` (every embedding starts at N(0, STD²), torch-rechub's default 1e-4);
``lr<LR>`` (Adam's rate, default the npz's). Trains as benchmarks/peers/recsys_peer.py does
and writes the validation split's probabilities (N, 2).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import recsys_peer as rp  # noqa: E402


def _drop_batch_norm(words: set[str]) -> None:
    """Make torch-rechub's MLP leave out its BatchNorm1d layers where ``words`` say."""
    import torch_rechub.basic.layers as layers

    built = layers.MLP.__init__

    def init(self, input_dim, output_layer=True, dims=None, dropout=0, activation="relu"):
        built(self, input_dim, output_layer, dims, dropout, activation)
        gate = activation == "softmax"  # torch-rechub's MMoE gates are softmax MLPs
        if "nobn" in words or ("nobn_gate" if gate else "nobn_expert") in words:
            self.mlp = nn.Sequential(*[m for m in self.mlp
                                       if not isinstance(m, nn.BatchNorm1d)])

    layers.MLP.__init__ = init


def main(encoded: str, variant: str, seed: str, out: str) -> None:
    words = set(variant.split("+"))
    data, config = rp._load(encoded)
    torch.set_num_threads(config["threads"])
    config["seed"] = int(seed)
    if words & {"nobn", "nobn_gate", "nobn_expert"}:
        _drop_batch_norm(words)
    from torch_rechub.basic.initializers import RandomNormal
    from torch_rechub.trainers import MTLTrainer
    from torch_rechub.utils.data import DataGenerator

    std = next((float(w[4:]) for w in words if w.startswith("init")), 1e-4)
    lr = next((float(w[2:]) for w in words if w.startswith("lr")), config["lr"])
    model = rp.rechub_model(config, initializer=RandomNormal(0, std))
    x_valid = rp._inputs(data, "valid", config)
    train_dl, _, _ = DataGenerator(rp._inputs(data, "train", config),
                                   data["train_labels"]).generate_dataloader(
        x_val=x_valid, y_val=data["valid_labels"], x_test=x_valid,
        y_test=data["valid_labels"], batch_size=config["batch"], num_workers=0)
    trainer = MTLTrainer(model, ["classification", "classification"],
                         optimizer_params={"lr": lr, "weight_decay": 0.0},
                         n_epoch=config["epochs"], earlystop_patience=10**6, device="cpu",
                         model_path=config["scratch"])
    for _ in range(config["epochs"]):
        trainer.train_one_epoch(train_dl)
    model.eval()
    with torch.no_grad():
        preds = [model({k: torch.as_tensor(v[i:i + 16384]) for k, v in x_valid.items()})
                 .numpy() for i in range(0, len(data["valid_labels"]), 16384)]
    np.save(out, np.concatenate(preds).astype(np.float64))


if __name__ == "__main__":
    main(*sys.argv[1:5])
