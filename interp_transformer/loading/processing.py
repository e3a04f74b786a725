"""TransformerLens's weight processing, as pure functions from a state dict to a new state dict.

Each function rewrites the weights so that the model computes the same log-probabilities
(``center_unembed`` shifts every logit of a position by the same constant) while its weights
become easier to read:

- ``fold_layer_norm``: each LayerNorm's ``w`` and ``b`` move into the weights that read its
  output (``W_Q/W_K/W_V``, ``W_in``/``W_gate``, ``W_U``) and those weights are centred over
  ``d_model``; the LayerNorms become weightless (``LN -> LNPre``, ``RMS -> RMSPre``).
- ``center_writing_weights``: everything that writes to the residual stream (``W_E``, ``W_pos``,
  ``W_O``, ``b_O``, ``W_out``, ``b_out``) has zero mean over ``d_model``; every reader starts
  with a LayerNorm that removes the mean anyway.
- ``center_unembed``: ``W_U`` and ``b_U`` have zero mean over ``d_vocab``.
- ``fold_value_biases``: ``b_V`` moves into ``b_O`` (a pattern row sums to 1, so the heads' value
  biases add a constant ``sum_head b_V W_O`` to the output).
- ``refactor_factored_attn_matrices``: ``W_Q, W_K`` (with their biases) and ``W_V, W_O`` are
  re-factored from the SVD of ``W_QK`` and ``W_OV``; only the products are kept.

Nothing here is applied by default: ``from_pretrained`` loads weights as stored. The functions
never mutate their input. The config is an argument because it says which weights exist;
``process_weights`` applies several in TransformerLens's order and returns the matching config.
"""

from __future__ import annotations

from typing import Callable

import torch
from jaxtyping import Float
from torch import Tensor

from interp_transformer.components.normalization import D_MODEL_AXIS, fold_norm_into_weight as fold_norm_into_weight
from interp_transformer.config import TransformerConfig
from interp_transformer.factored_matrix import FactoredMatrix

StateDict = dict[str, Tensor]
FOLDED_NORMALIZATION = {"LN": "LNPre", "RMS": "RMSPre"}
CENTRED_NORMALIZATION = ("LN", "LNPre")


def fold_layer_norm(state: StateDict, cfg: TransformerConfig) -> StateDict:
    """Fold every LayerNorm's weight and bias into the weights that read it; see the module docstring.

    The model must then be built with ``folded_layer_norm_config(cfg)`` (weightless LayerNorms).
    A model without normalisation, or one already folded, comes back unchanged.
    """
    if cfg.normalization_type not in FOLDED_NORMALIZATION:
        return dict(state)
    if cfg.positional_embedding_type == "shortformer":
        raise ValueError(
            "fold_ln cannot fold ln1 of a shortformer model: its positional embedding is added after ln1, so "
            "ln1's weight and bias must stay where they are (pass fold_ln=False)"
        )
    state = dict(state)
    centre = cfg.normalization_type == "LN"  # RMSNorm does not remove the mean, so readers must not assume it
    for layer in range(cfg.n_layers):
        prefix = f"blocks.{layer}."
        readers = [(f"{prefix}attn.{w}", f"{prefix}attn.{b}") for w, b in (("W_Q", "b_Q"), ("W_K", "b_K"), ("W_V", "b_V"))]
        _fold_into_readers(state, f"{prefix}ln1", readers, centre)
        if not cfg.attn_only:
            readers = [(f"{prefix}mlp.W_in", f"{prefix}mlp.b_in")]
            if f"{prefix}mlp.W_gate" in state:
                readers.append((f"{prefix}mlp.W_gate", None))
            _fold_into_readers(state, f"{prefix}ln2", readers, centre)
    _fold_into_readers(state, "ln_final", [("unembed.W_U", "unembed.b_U")], centre)
    return state


def _fold_into_readers(
    state: StateDict, norm: str, readers: list[tuple[str, str | None]], centre: bool
) -> None:
    """``W <- diag(w) W`` (centred over d_model when the norm centres), ``b <- b + b_norm W``; drop the norm's tensors.

    The weight rule is ``components.normalization.fold_norm_into_weight``, shared with the circuit analyses.
    """
    w = state.pop(f"{norm}.w")
    b = state.pop(f"{norm}.b", None)
    for weight_name, bias_name in readers:
        weight = state[weight_name]
        if b is not None and bias_name is not None:
            state[bias_name] = state[bias_name] + (weight * b[:, None]).sum(D_MODEL_AXIS)
        state[weight_name] = fold_norm_into_weight(weight, w, centre)


def folded_layer_norm_config(cfg: TransformerConfig) -> TransformerConfig:
    """The config of a model whose LayerNorms were folded by ``fold_layer_norm``."""
    return cfg.replace(normalization_type=FOLDED_NORMALIZATION.get(cfg.normalization_type, cfg.normalization_type))


def center_writing_weights(state: StateDict, cfg: TransformerConfig) -> StateDict:
    """Remove the mean over ``d_model`` from every weight and bias that writes to the residual stream.

    Output-preserving only when every reader of the residual stream centres it first, i.e.
    with LayerNorm (``LN``/``LNPre``); other configs are refused.
    """
    if cfg.normalization_type not in CENTRED_NORMALIZATION:
        raise ValueError(
            f"center_writing_weights needs a LayerNorm before every reader of the residual stream "
            f"(normalization_type in {CENTRED_NORMALIZATION}); this model has {cfg.normalization_type!r}, "
            "where centring would change its output"
        )
    state = dict(state)
    names = ["embed.W_E"]
    if cfg.positional_embedding_type == "standard":  # shortformer/rotary positions never enter the residual stream
        names.append("pos_embed.W_pos")
    for layer in range(cfg.n_layers):
        names += [f"blocks.{layer}.attn.W_O", f"blocks.{layer}.attn.b_O"]
        if not cfg.attn_only:
            names += [f"blocks.{layer}.mlp.W_out", f"blocks.{layer}.mlp.b_out"]
    for name in names:
        if name in state:
            state[name] = state[name] - state[name].mean(-1, keepdim=True)
    return state


def center_unembed(state: StateDict, cfg: TransformerConfig) -> StateDict:
    """Zero mean over ``d_vocab`` for ``W_U`` and ``b_U``: logits shift by a per-position constant, log-probs do not change."""
    state = dict(state)
    state["unembed.W_U"] = state["unembed.W_U"] - state["unembed.W_U"].mean(-1, keepdim=True)
    state["unembed.b_U"] = state["unembed.b_U"] - state["unembed.b_U"].mean()
    return state


def fold_value_biases(state: StateDict, cfg: TransformerConfig) -> StateDict:
    """``b_O <- b_O + sum_head b_V W_O`` and ``b_V <- 0`` in every layer."""
    state = dict(state)
    for layer in range(cfg.n_layers):
        prefix = f"blocks.{layer}.attn."
        b_V, W_O = _per_query_head(state[prefix + "b_V"], cfg), state[prefix + "W_O"]
        # einsum("head_index d_head, head_index d_head d_model -> d_model")
        state[prefix + "b_O"] = state[prefix + "b_O"] + (b_V[:, :, None] * W_O).sum((0, 1))
        state[prefix + "b_V"] = torch.zeros_like(state[prefix + "b_V"])
    return state


def refactor_factored_attn_matrices(state: StateDict, cfg: TransformerConfig) -> StateDict:
    """Re-factor each head's ``W_QK`` and ``W_OV`` from their SVDs, as TransformerLens does.

    ``[W_Q; b_Q] [W_K; b_K]^T = U S V^T`` becomes ``W_Q|b_Q = U sqrt(S)``, ``W_K|b_K = V sqrt(S)``
    (the biases ride along as an extra input row, so attention scores are unchanged);
    after folding ``b_V`` into ``b_O``, ``W_V W_O = U S V^T`` becomes ``W_V = U S``, ``W_O = V^T``.
    Rotary models are refused: their QK product depends on the positions.
    """
    if getattr(cfg, "positional_embedding_type", "standard") == "rotary":
        raise ValueError("refactor_factored_attn_matrices is undefined for rotary models: W_QK depends on the positions")
    if getattr(cfg, "n_key_value_heads", None) not in (None, cfg.n_heads):
        raise ValueError("refactor_factored_attn_matrices needs one key/value head per query head (no grouped-query attention)")
    state = fold_value_biases(state, cfg)
    for layer in range(cfg.n_layers):
        prefix = f"blocks.{layer}.attn."
        dtype = state[prefix + "W_Q"].dtype
        W_Q_eff = torch.cat([state[prefix + "W_Q"], state[prefix + "b_Q"][:, None, :]], dim=1)  # [head_index d_model+1 d_head]
        W_K_eff = torch.cat([state[prefix + "W_K"], state[prefix + "b_K"][:, None, :]], dim=1)
        U, S, V = FactoredMatrix(W_Q_eff, W_K_eff.transpose(-1, -2)).svd()  # V not transposed (TransformerLens's convention)
        root = S.sqrt()[:, None, :]
        W_Q_even, W_K_even = (U * root).to(dtype), (V * root).to(dtype)
        state[prefix + "W_Q"], state[prefix + "b_Q"] = W_Q_even[:, :-1], W_Q_even[:, -1]
        state[prefix + "W_K"], state[prefix + "b_K"] = W_K_even[:, :-1], W_K_even[:, -1]
        U, S, V = FactoredMatrix(state[prefix + "W_V"], state[prefix + "W_O"]).svd()
        state[prefix + "W_V"] = (U * S[:, None, :]).to(dtype)
        state[prefix + "W_O"] = V.transpose(-1, -2).to(dtype)
    return {name: tensor.contiguous() for name, tensor in state.items()}


def _per_query_head(tensor: Tensor, cfg: TransformerConfig) -> Tensor:
    """Key/value-head tensors repeated to one per query head (a no-op without grouped-query attention)."""
    n_kv_heads = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
    return tensor.repeat_interleave(cfg.n_heads // n_kv_heads, dim=0) if n_kv_heads != cfg.n_heads else tensor


PROCESSING_STEPS: tuple[tuple[str, Callable[[StateDict, TransformerConfig], StateDict]], ...] = (
    ("fold_ln", fold_layer_norm),
    ("center_writing_weights", center_writing_weights),
    ("center_unembed", center_unembed),
    ("fold_value_biases", fold_value_biases),
    ("refactor_factored_attn_matrices", refactor_factored_attn_matrices),
)


def process_weights(
    state: StateDict,
    cfg: TransformerConfig,
    fold_ln: bool = False,
    center_writing_weights: bool = False,
    center_unembed: bool = False,
    fold_value_biases: bool = False,
    refactor_factored_attn_matrices: bool = False,
) -> tuple[StateDict, TransformerConfig]:
    """Apply the chosen steps in TransformerLens's order; the new state dict and the config to build it with.

    TransformerLens's ``from_pretrained`` default is ``fold_ln``, ``center_writing_weights``,
    ``center_unembed`` and ``fold_value_biases`` all True; ours is all False.
    """
    chosen = dict(
        fold_ln=fold_ln,
        center_writing_weights=center_writing_weights,
        center_unembed=center_unembed,
        fold_value_biases=fold_value_biases,
        refactor_factored_attn_matrices=refactor_factored_attn_matrices,
    )
    if center_writing_weights and cfg.normalization_type not in CENTRED_NORMALIZATION:
        raise ValueError(
            f"center_writing_weights=True needs LayerNorm (normalization_type LN or LNPre), not "
            f"{cfg.normalization_type!r}: pass center_writing_weights=False for this model"
        )
    for option, step in PROCESSING_STEPS:
        if chosen[option]:
            state = step(state, cfg)
            if option == "fold_ln":
                cfg = folded_layer_norm_config(cfg)
    return state, cfg
