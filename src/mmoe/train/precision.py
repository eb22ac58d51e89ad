"""Mixed precision for a training step (``TrainConfig.precision``): the forward pass under
``torch.autocast`` in bfloat16 or float16, the loss and the metrics in float32, and for
float16 torch's ``GradScaler`` (a step whose scaled gradients overflow is skipped and the scale
halved; the scale grows again after 2,000 good steps).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """The autocast context and the gradient scaler of one training run.

    Args:
        precision: ``fp32``, ``bf16`` or ``fp16``.
        device: the training device.

    Example:
        >>> p = Precision("bf16", torch.device("cpu"))
        >>> with p.autocast():
        ...     y = torch.nn.Linear(3, 2)(torch.randn(4, 3))
        >>> y.dtype, p.scaler is None
        (torch.bfloat16, True)
    """

    def __init__(self, precision: str, device: torch.device):
        self.dtype = DTYPES.get(precision)
        self.device_type = device.type
        self.scaler = (torch.amp.GradScaler(device.type) if precision == "fp16" else None)

    def autocast(self) -> Any:
        """The forward pass's context (nothing in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss to differentiate (scaled under fp16)."""
        return loss if self.scaler is None else self.scaler.scale(loss)

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Gradients back to their true scale before they are checked and applied."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def skip(self) -> None:
        """A step not taken: under fp16 the scale is updated (halved after an overflow)."""
        if self.scaler is not None:
            self.scaler.update()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Apply the step (the scaler skips it on overflow) and update the scale."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
