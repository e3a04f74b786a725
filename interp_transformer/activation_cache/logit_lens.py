"""The logit lens: read each accumulated residual stream through the final LayerNorm and the unembed.

Each stream is normalised with its own statistics (and the final LayerNorm's weights), then
multiplied by ``W_U`` and offset by ``b_U``, so the last entry (``"final_post"``) reproduces
the model's logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor

from interp_transformer import slicing
from interp_transformer.activation_cache.analysis import require_model, weight_like

if TYPE_CHECKING:
    import pandas as pd

    from interp_transformer.activation_cache.cache import ActivationCache


class LensLogits(NamedTuple):
    logits: Float[Tensor, "layer *batch_and_pos d_vocab"]
    labels: list[str]


def logit_lens(
    cache: "ActivationCache", layer: int | None = None, incl_mid: bool = False, pos_slice: slicing.SliceInput = None
) -> LensLogits:
    """Logits for every stream ``accumulated_resid`` returns (same ``layer``, ``incl_mid``, ``pos_slice``)."""
    streams, labels = cache.accumulated_resid(layer, incl_mid=incl_mid, pos_slice=pos_slice, return_labels=True)
    return LensLogits(_unembed(cache, streams), labels)


def logit_lens_top_tokens(
    cache: "ActivationCache",
    k: int = 5,
    layer: int | None = None,
    incl_mid: bool = False,
    pos_slice: slicing.SliceInput = -1,
) -> "pd.DataFrame":
    """The top ``k`` predictions of each stream at each kept position, one row per (stream, prompt, position, rank).

    Columns: ``label, batch, pos, rank, token, str_token, logit, prob`` (``str_token`` is empty
    without a tokenizer). ``pos_slice`` defaults to the last position. One stream is unembedded
    at a time, so memory holds one ``[batch pos d_vocab]`` block, not one per layer.
    """
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= cache.cfg.d_vocab_out:
        raise ValueError(f"k must be an int in [1, d_vocab_out={cache.cfg.d_vocab_out}], got {k!r}")
    import pandas as pd  # imported on use: pandas costs a third of a second at package import

    streams, labels = cache.accumulated_resid(layer, incl_mid=incl_mid, pos_slice=pos_slice, return_labels=True)
    positions = _kept_positions(cache, pos_slice)
    tokenizer = getattr(cache.model, "tokenizer", None)
    frames = []
    for label, stream in zip(labels, streams):
        logits = _unembed(cache, stream[None])[0].float()
        grid = _as_batch_pos(logits, cache.has_batch_dim, slicing.keeps_axis(pos_slice))  # [batch pos d_vocab]
        top = grid.topk(k, dim=-1)
        probs = grid.softmax(dim=-1).gather(-1, top.indices)
        batch, pos, rank = torch.meshgrid(
            torch.arange(grid.shape[0]), torch.tensor(positions), torch.arange(k), indexing="ij"
        )
        tokens = top.indices.flatten().tolist()
        frames.append(
            pd.DataFrame(
                {
                    "label": label,
                    "batch": batch.flatten().tolist(),
                    "pos": pos.flatten().tolist(),
                    "rank": rank.flatten().tolist(),
                    "token": tokens,
                    "str_token": [tokenizer.decode([t]) for t in tokens] if tokenizer is not None else "",
                    "logit": top.values.flatten().tolist(),
                    "prob": probs.flatten().tolist(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _unembed(cache: "ActivationCache", streams: Tensor) -> Tensor:
    model = require_model(cache, "the logit lens (W_U, b_U)")
    normalized = cache.apply_ln_to_stack(streams, layer=None, recompute_ln=True)
    W_U, b_U = weight_like(model.W_U, normalized), weight_like(model.b_U, normalized)
    return normalized @ W_U + b_U


def _kept_positions(cache: "ActivationCache", pos_slice: slicing.SliceInput) -> list[int]:
    resid = cache["resid_pre", 0]
    n_pos = resid.shape[-2]
    kept = slicing.apply_slice(torch.arange(n_pos), pos_slice, 0)
    return [int(kept)] if kept.ndim == 0 else kept.tolist()


def _as_batch_pos(logits: Tensor, has_batch_dim: bool, pos_kept: bool) -> Tensor:
    if not pos_kept:
        logits = logits.unsqueeze(-2)
    if not has_batch_dim:
        logits = logits.unsqueeze(0)
    return logits
