"""Stacked weight views across layers (``model.W_Q[layer, head]``) for circuit analyses."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

if TYPE_CHECKING:
    from interp_transformer.circuits.factored_matrix import FactoredMatrix


MLP_VIEWS = frozenset({"W_in", "W_out", "b_in", "b_out"})


class StackedWeights:
    """Mixin for a model with ``embed``, ``pos_embed``, ``blocks`` and ``unembed``.

    Each view is a fresh stacked tensor that still carries gradients to the parameters.
    """

    def _stack(self, module: str, param: str) -> Tensor:
        return torch.stack([getattr(getattr(block, module), param) for block in self.blocks])

    def __getattr__(self, name: str):
        # A property's AttributeError lands here; explain the attention-only case instead of a bare "no attribute".
        if name in MLP_VIEWS and self.cfg.attn_only:
            raise AttributeError(f"{name} does not exist: this model is attention-only (cfg.attn_only=True), it has no MLPs")
        return super().__getattr__(name)

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.embed.W_E

    @property
    def W_pos(self) -> Float[Tensor, "n_ctx d_model"]:
        return self.pos_embed.W_pos

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        return self.unembed.W_U

    @property
    def b_U(self) -> Float[Tensor, "d_vocab"]:
        return self.unembed.b_U

    @property
    def W_Q(self) -> Float[Tensor, "layer head_index d_model d_head"]:
        return self._stack("attn", "W_Q")

    @property
    def W_K(self) -> Float[Tensor, "layer head_index d_model d_head"]:
        return self._stack("attn", "W_K")

    @property
    def W_V(self) -> Float[Tensor, "layer head_index d_model d_head"]:
        return self._stack("attn", "W_V")

    @property
    def W_O(self) -> Float[Tensor, "layer head_index d_head d_model"]:
        return self._stack("attn", "W_O")

    @property
    def b_Q(self) -> Float[Tensor, "layer head_index d_head"]:
        return self._stack("attn", "b_Q")

    @property
    def b_K(self) -> Float[Tensor, "layer head_index d_head"]:
        return self._stack("attn", "b_K")

    @property
    def b_V(self) -> Float[Tensor, "layer head_index d_head"]:
        return self._stack("attn", "b_V")

    @property
    def b_O(self) -> Float[Tensor, "layer d_model"]:
        return self._stack("attn", "b_O")

    @property
    def W_in(self) -> Float[Tensor, "layer d_model d_mlp"]:
        return self._stack("mlp", "W_in")

    @property
    def W_out(self) -> Float[Tensor, "layer d_mlp d_model"]:
        return self._stack("mlp", "W_out")

    @property
    def b_in(self) -> Float[Tensor, "layer d_mlp"]:
        return self._stack("mlp", "b_in")

    @property
    def b_out(self) -> Float[Tensor, "layer d_model"]:
        return self._stack("mlp", "b_out")

    @property
    def QK(self) -> "FactoredMatrix":
        """``W_Q W_K^T`` of every head as stored: FactoredMatrix ``[layer head_index d_model d_model]``."""
        from interp_transformer.circuits.factored_matrix import FactoredMatrix

        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self) -> "FactoredMatrix":
        """``W_V W_O`` of every head as stored: FactoredMatrix ``[layer head_index d_model d_model]``."""
        from interp_transformer.circuits.factored_matrix import FactoredMatrix

        return FactoredMatrix(self.W_V, self.W_O)
