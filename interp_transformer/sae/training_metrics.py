"""What ``train_sae`` logs, accumulated between logs and summed over processes before it is reported.

- ``l0``: features active per row (mean).
- ``explained_variance``: ``1 - sum ||x - recons||^2 / sum ||x - mean(x)||^2`` over the rows since the
  previous log (``mean`` over those rows): the fraction of variance the reconstruction explains.
- ``dead_fraction``: features silent for ``dead_after_tokens`` tokens or more, as a fraction of ``d_sae``.
- ``loss``, ``mse``, ``sparsity_loss`` (standard: the L1 term before its coefficient), ``aux_loss``
  (TopK kinds: AuxK before its coefficient): means over rows.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

SUMS = ("rows", "squared_error", "sum_of_squares", "active", "loss", "sparsity_loss", "aux_loss")


class MetricWindow:
    def __init__(self, d_in: int, device: torch.device) -> None:
        self.d_in, self.device = d_in, device
        self._reset()

    def _reset(self) -> None:
        self.sums = torch.zeros(len(SUMS), dtype=torch.float64, device=self.device)
        self.sum_x = torch.zeros(self.d_in, dtype=torch.float64, device=self.device)

    @torch.no_grad()
    def add(self, x: Tensor, error: Tensor, active: Tensor, loss: Tensor, sparsity: Tensor, aux: Tensor) -> None:
        """One step's rows: inputs, ``recons - x``, which features are active (bool), and the step's loss terms."""
        x64 = x.double()
        values = (x.shape[0], error.double().pow(2).sum(), x64.pow(2).sum(), active.sum(), loss.double() * x.shape[0], sparsity.double() * x.shape[0], aux.double() * x.shape[0])
        self.sums += torch.stack([torch.as_tensor(v, dtype=torch.float64, device=self.device) for v in values])
        self.sum_x += x64.sum(0)

    def finish(self, team, state, training) -> dict[str, float]:
        """The metrics since the last call (summed over processes); starts a new window."""
        packed = torch.cat([self.sums, self.sum_x])
        if team.world_size > 1:
            dist.all_reduce(packed)
        sums = dict(zip(SUMS, packed[: len(SUMS)].tolist()))
        sum_x = packed[len(SUMS) :]
        rows = sums["rows"]
        total_variance = sums["sum_of_squares"] - float(sum_x.pow(2).sum()) / rows
        self._reset()
        dead = state.tokens_since_fired >= training.dead_after_tokens
        return {
            "step": state.step,
            "tokens": state.step * training.batch_size,
            "loss": sums["loss"] / rows,
            "mse": sums["squared_error"] / rows,
            "sparsity_loss": sums["sparsity_loss"] / rows,
            "aux_loss": sums["aux_loss"] / rows,
            "l0": sums["active"] / rows,
            "explained_variance": 1 - sums["squared_error"] / total_variance if total_variance > 0 else float("nan"),
            "dead_fraction": float(dead.float().mean()),
        }
