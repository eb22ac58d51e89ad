"""Feature encoder: numeric columns and categorical embeddings into one dense vector."""

from __future__ import annotations

import torch
from torch import nn


class FeatureEncoder(nn.Module):
    """Concatenate numeric inputs with one embedding per categorical column.

    Numeric columns arrive standardised (the data layer fits the statistics on the training
    data). Categorical columns arrive as integer codes in ``[0, cardinality)``, code 0 being
    out-of-vocabulary or missing. All categorical columns share one embedding table with a
    per-column offset, so encoding is a single lookup whatever the number of columns.

    Args:
        num_numeric: number of numeric columns.
        cardinalities: codes per categorical column (including the OOV code 0).
        embedding_dim: width of every embedding.

    Shapes:
        numeric (B, num_numeric) float, categorical (B, len(cardinalities)) long
        -> (B, num_numeric + len(cardinalities) * embedding_dim).

    Example:
        >>> enc = FeatureEncoder(3, (5, 2), embedding_dim=4)
        >>> enc(torch.randn(6, 3), torch.zeros(6, 2, dtype=torch.long)).shape
        torch.Size([6, 11])
    """

    def __init__(self, num_numeric: int, cardinalities: tuple[int, ...] = (),
                 embedding_dim: int = 8):
        super().__init__()
        self.num_numeric = num_numeric
        self.num_categorical = len(cardinalities)
        self.out_features = num_numeric + len(cardinalities) * embedding_dim
        if cardinalities:
            offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.long).cumsum(0)
            self.register_buffer("offsets", offsets, persistent=False)  # (n_cat,)
            self.embedding = nn.Embedding(sum(cardinalities), embedding_dim)
        else:
            self.embedding = None

    def forward(self, numeric: torch.Tensor | None,
                categorical: torch.Tensor | None = None) -> torch.Tensor:
        parts = []
        if self.num_numeric:
            parts.append(numeric)  # (B, n_num)
        if self.embedding is not None:
            # index_select rather than nn.Embedding's forward: same values, and its backward
            # (index_add) is several times faster on CPU than embedding_dense_backward.
            rows = (categorical + self.offsets).flatten()  # (B * n_cat,)
            emb = self.embedding.weight.index_select(0, rows)  # (B * n_cat, D)
            parts.append(emb.view(categorical.shape[0], -1))  # (B, n_cat * D)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
