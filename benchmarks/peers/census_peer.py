"""Train torch-rechub's MMoE on the encoded census arrays written by
benchmarks/gpu_throughput.py, in the peers' own environment (never mmoe's), on a device.

    PEERS_PYTHON benchmarks/peers/census_peer.py ENCODED.npz OUT.json

Matched to mmoe's run (read from the npz's config): the same rows and codes, embeddings of
``dim`` for every categorical column, the numeric columns standardised, ``experts`` experts
of ``expert_units``, towers of ``tower_units``, Adam at ``lr``, ``batch`` rows per step,
``epochs`` epochs through torch-rechub's own ``MTLTrainer`` (its data loader included).
Writes samples/s (per epoch, the first left out when there are several), the peak GPU memory
and the test predictions (OUT.npy).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch


def main(encoded: str, out: str) -> None:
    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models.multi_task import MMOE
    from torch_rechub.trainers import MTLTrainer
    from torch_rechub.utils.data import DataGenerator

    data = np.load(encoded)
    config = json.loads(str(data["config"]))
    device = config["device"]
    torch.set_num_threads(config["threads"])

    def inputs(split: str) -> dict[str, np.ndarray]:
        x = {f"c{j}": data[f"{split}_categorical"][:, j]
             for j in range(data[f"{split}_categorical"].shape[1])}
        x.update({f"n{j}": data[f"{split}_numeric"][:, j].astype(np.float32)
                  for j in range(data[f"{split}_numeric"].shape[1])})
        return x

    features = [SparseFeature(f"c{j}", n, config["dim"])
                for j, n in enumerate(config["categorical_rows"])]
    features += [DenseFeature(f"n{j}") for j in range(data["train_numeric"].shape[1])]
    torch.manual_seed(config["seed"])
    model = MMOE(features, ["classification", "classification"], config["experts"],
                 {"dims": config["expert_units"]},
                 [{"dims": config["tower_units"]} for _ in range(2)])
    x_train, y_train = inputs("train"), data["train_labels"]
    dg = DataGenerator(x_train, y_train)
    train_dl, _, _ = dg.generate_dataloader(x_val=inputs("valid"), y_val=data["valid_labels"],
                                            x_test=inputs("test"), y_test=data["test_labels"],
                                            batch_size=config["batch"], num_workers=0)
    trainer = MTLTrainer(model, ["classification", "classification"],
                         optimizer_params={"lr": config["lr"], "weight_decay": 0.0},
                         n_epoch=config["epochs"], earlystop_patience=10**6, device=device,
                         model_path=config["scratch"])
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(config["epochs"]):
        start = time.perf_counter()
        trainer.train_one_epoch(train_dl)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    model.eval()
    x_test = inputs("test")
    with torch.no_grad():
        preds = [model({k: torch.as_tensor(v[i:i + 16384]).to(device) for k, v in
                        x_test.items()}).cpu().numpy()
                 for i in range(0, len(data["test_labels"]), 16384)]
    np.save(out.replace(".json", ".npy"), np.concatenate(preds).astype(np.float64))
    kept = seconds[1:] or seconds
    with open(out, "w") as f:
        json.dump({"library": "torch-rechub", "epoch_seconds": seconds,
                   "samples_per_s": len(y_train) / float(np.median(kept)),
                   "peak_gpu_mb": (torch.cuda.max_memory_allocated() / 2**20
                                   if device.startswith("cuda") else None),
                   "torch": torch.__version__}, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
