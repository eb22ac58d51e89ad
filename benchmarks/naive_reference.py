"""The common way MMoE is written in PyTorch, kept as a speed reference (not used by mmoe):
experts in an ``nn.ModuleList`` looped in Python, one embedding module per categorical
column, per-task gates and towers in lists, and a per-sample ``Dataset`` fed through a
``DataLoader`` with the default collate."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset


class RowDataset(Dataset):
    """One row at a time: (numeric, categorical, labels)."""

    def __init__(self, numeric, categorical, labels):
        self.numeric, self.categorical, self.labels = numeric, categorical, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.numeric[i], self.categorical[i], self.labels[i]


class NaiveMMoE(nn.Module):
    def __init__(self, num_numeric, cardinalities, emb_dim, num_experts, units, tower, tasks):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c, emb_dim) for c in cardinalities)
        d = num_numeric + emb_dim * len(cardinalities)
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(d, units), nn.ReLU())
                                     for _ in range(num_experts))
        self.gates = nn.ModuleList(nn.Linear(d, num_experts, bias=False) for _ in range(tasks))
        self.towers = nn.ModuleList(nn.Sequential(nn.Linear(units, tower), nn.ReLU(),
                                                  nn.Linear(tower, 1)) for _ in range(tasks))

    def forward(self, numeric, categorical):
        x = torch.cat([numeric] + [emb(categorical[:, i])
                                   for i, emb in enumerate(self.embeddings)], dim=1)
        experts = torch.stack([e(x) for e in self.experts], dim=1)  # (B, E, H)
        out = []
        for gate, tower in zip(self.gates, self.towers, strict=True):
            g = torch.softmax(gate(x), dim=1).unsqueeze(-1)  # (B, E, 1)
            out.append(tower((g * experts).sum(1)))
        return torch.cat(out, dim=1)  # (B, T)


def train_epoch(model, loader, optimizer) -> None:
    model.train()
    for numeric, categorical, labels in loader:
        loss = F.binary_cross_entropy_with_logits(model(numeric, categorical), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@torch.inference_mode()
def predict(model, numeric, categorical, batch: int = 16384) -> torch.Tensor:
    model.eval()
    return torch.cat([torch.sigmoid(model(numeric[i:i + batch], categorical[i:i + batch]))
                      for i in range(0, len(numeric), batch)])
