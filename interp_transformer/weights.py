"""Stacked weight views across layers (``model.W_Q[layer, head]``) for circuit analyses."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from interp_transformer.factored_matrix import FactoredMatrix

MLP_VIEWS = frozenset({"W_in", "W_out", "b_in", "b_out"})


class StackedWeights:
    """Mixin for a model with ``embed``, ``pos_embed``, ``blocks`` and ``unembed``.

    Each view is a fresh stacked tensor that still carries gradients to the parameters. Every attention
    view has one entry per query head, ``[layer head_index ...]``: with grouped-query attention the
    key/value weights are repeated to the query heads that share them (the per-layer parameters
    ``blocks[L].attn.W_K`` keep their ``n_key_value_heads`` entries), as in TransformerLens.
    """

    def _stack(self, module: str, param: str) -> Tensor:
        return torch.stack([getattr(getattr(block, module), param) for block in self.blocks])

    def _stack_per_query_head(self, param: str) -> Tensor:
        """A key/value weight stacked over layers with one entry per query head, as the forward pass pairs them.

        With grouped-query attention (``n_key_value_heads < n_heads``) query head ``h`` reads key/value head
        ``h // (n_heads // n_key_value_heads)``; repeating each key/value head that many times (TransformerLens's
        ``repeat_interleave``) makes ``W_K[layer, h]`` the weight head ``h`` really uses.
        """
        stacked = self._stack("attn", param)
        n_kv_heads = self.cfg.n_key_value_heads or self.cfg.n_heads
        if n_kv_heads == self.cfg.n_heads:
            return stacked
        return stacked.repeat_interleave(self.cfg.n_heads // n_kv_heads, dim=1)

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
        return self._stack_per_query_head("W_K")

    @property
    def W_V(self) -> Float[Tensor, "layer head_index d_model d_head"]:
        return self._stack_per_query_head("W_V")

    @property
    def W_O(self) -> Float[Tensor, "layer head_index d_head d_model"]:
        return self._stack("attn", "W_O")

    @property
    def b_Q(self) -> Float[Tensor, "layer head_index d_head"]:
        return self._stack("attn", "b_Q")

    @property
    def b_K(self) -> Float[Tensor, "layer head_index d_head"]:
        return self._stack_per_query_head("b_K")

    @property
    def b_V(self) -> Float[Tensor, "layer head_index d_head"]:
        return self._stack_per_query_head("b_V")

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
    def QK(self) -> FactoredMatrix:
        """``W_Q W_K^T`` of every query head as stored (its own key head under grouped-query attention): FactoredMatrix ``[layer head_index d_model d_model]``."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        """``W_V W_O`` of every query head as stored (its own value head under grouped-query attention): FactoredMatrix ``[layer head_index d_model d_model]``."""
        return FactoredMatrix(self.W_V, self.W_O)
