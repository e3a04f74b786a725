"""SparseAutoencoder: a sparse dictionary over one hook's activations, with hook points on its internals.

Axis words: ``d_in`` (the width read), ``d_sae`` (the number of features), ``d_out`` (the width
written; ``d_in`` for an SAE, the output hook's width for a transcoder).

The maths, as SAELens computes it::

    sae_in     = x - b_dec              (only if apply_b_dec_to_input)
    acts_pre   = sae_in @ W_enc + b_enc                       [... d_sae]
    acts_post  = standard:  relu(acts_pre)
                 topk:      relu of the k largest acts_pre per row, 0 elsewhere
                 jumprelu:  relu(acts_pre) * (acts_pre > threshold)
                 batchtopk: relu of the k * rows largest acts_pre over all rows of the batch
    recons     = acts_post @ W_dec + b_dec                    [... d_out]
    error      = x - recons             (only when spliced with include_error)

BatchTopK picks features per batch, so its output depends on the other rows; SAELens saves it as a
JumpReLU with one shared threshold (``topk_threshold``, a running estimate of the smallest kept
activation during training) and so does ``save`` here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp_transformer.hooks import HookedModule, HookPoint
from interp_transformer.sae.config import SAEConfig

HOOK_NAMES = (
    "hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recons", "hook_sae_error", "hook_sae_output",
)


class SparseAutoencoder(HookedModule):
    """An SAE with SAELens parameter and hook names. Build it from an ``SAEConfig`` or ``load`` a SAELens folder."""

    def __init__(self, cfg: SAEConfig, init_weights: bool = True, seed: int | None = None) -> None:
        super().__init__()
        if not isinstance(cfg, SAEConfig):
            raise TypeError(f"cfg must be an SAEConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        d_out, dtype = cfg.output_width, cfg.dtype
        self.W_enc = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae, dtype=dtype))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dtype))
        self.W_dec = nn.Parameter(torch.zeros(cfg.d_sae, d_out, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(d_out, dtype=dtype))
        if cfg.architecture == "jumprelu":
            self.threshold = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dtype))
        if cfg.architecture == "batchtopk":  # running estimate used when it is saved as a JumpReLU
            self.register_buffer("topk_threshold", torch.zeros((), dtype=dtype))
        self.hook_sae_input = HookPoint()  # [... d_in]
        self.hook_sae_acts_pre = HookPoint()  # [... d_sae]
        self.hook_sae_acts_post = HookPoint()  # [... d_sae]
        self.hook_sae_recons = HookPoint()  # [... d_out]
        self.hook_sae_error = HookPoint()  # [... d_out], only fired when spliced with include_error
        self.hook_sae_output = HookPoint()  # [... d_out], what replaces the activation downstream
        if init_weights:
            self.init_weights(seed)
        self.setup_hooks()

    # ----------------------------------------------------------------- weights
    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> None:
        """Kaiming-uniform decoder with unit-norm rows, encoder its transpose, biases zero (as SAELens)."""
        generator = torch.Generator()
        generator.manual_seed(seed) if seed is not None else generator.seed()
        bound = (1.0 / self.cfg.d_sae) ** 0.5
        W_dec = (torch.rand(self.W_dec.shape, generator=generator) * 2 - 1) * bound
        W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        self.W_dec.copy_(W_dec.to(self.dtype))
        if self.W_enc.shape == self.W_dec.T.shape:
            self.W_enc.copy_(self.W_dec.T)
        else:  # a transcoder's encoder reads another width than its decoder writes
            self.W_enc.copy_(((torch.rand(self.W_enc.shape, generator=generator) * 2 - 1) * bound).to(self.dtype))
        self.b_enc.zero_()
        self.b_dec.zero_()

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    def _apply(self, fn, recurse: bool = True):
        """After ``to(dtype)`` keep ``cfg.dtype`` truthful, as the model does."""
        result = super()._apply(fn, recurse)
        if self.W_enc.dtype != self.cfg.dtype:
            self.cfg = self.cfg.replace(dtype=self.W_enc.dtype)
        return result

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        """Scale every decoder row (one feature's direction) to unit L2 norm, in place."""
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def fold_W_dec_norm(self) -> None:
        """Give decoder rows unit norm and move their norms into the encoder, so reconstructions are unchanged."""
        norms = self.W_dec.norm(dim=-1).clamp_min(1e-12)
        self.W_dec.div_(norms[:, None])
        self.W_enc.mul_(norms[None, :])
        self.b_enc.mul_(norms)
        if self.cfg.architecture == "jumprelu":
            self.threshold.mul_(norms)

    # ----------------------------------------------------------------- forward
    def encode_pre(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """Pre-activations ``(x - b_dec?) @ W_enc + b_enc`` (fires hook_sae_input on x, then hook_sae_acts_pre)."""
        x = self._flatten_heads(x)
        self._check_input(x)
        sae_in = self.hook_sae_input(x)
        if self.cfg.apply_b_dec_to_input:
            sae_in = sae_in - self.b_dec
        return self.hook_sae_acts_pre(sae_in @ self.W_enc + self.b_enc)

    def _flatten_heads(self, x: Tensor) -> Tensor:
        """SAELens's hook_z SAEs read ``[... head_index d_head]`` as one ``d_in = n_heads * d_head`` vector."""
        if (
            self.cfg.reshape_activations == "hook_z" and isinstance(x, Tensor) and x.ndim >= 2
            and x.shape[-1] != self.cfg.d_in and x.shape[-2] * x.shape[-1] == self.cfg.d_in
        ):
            return x.flatten(-2)
        return x

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """Feature activations (fires hook_sae_input, hook_sae_acts_pre and hook_sae_acts_post)."""
        return self.hook_sae_acts_post(self.activation(self.encode_pre(x)))

    def activation(self, acts_pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        """The architecture's nonlinearity on pre-activations (no hooks)."""
        arch = self.cfg.architecture
        if arch == "standard":
            return torch.relu(acts_pre)
        if arch == "jumprelu":
            return torch.relu(acts_pre) * (acts_pre > self.threshold).to(acts_pre.dtype)
        if arch == "topk":
            top = acts_pre.topk(self.cfg.k, dim=-1)
            return torch.zeros_like(acts_pre).scatter(-1, top.indices, torch.relu(top.values))
        return self._batch_topk(acts_pre)

    def _batch_topk(self, acts_pre: Tensor) -> Tensor:
        flat = torch.relu(acts_pre).reshape(-1)
        rows = max(1, acts_pre.numel() // self.cfg.d_sae)
        top = flat.topk(min(self.cfg.k * rows, flat.numel()))
        acts = torch.zeros_like(flat).scatter(0, top.indices, top.values).reshape(acts_pre.shape)
        if self.training and torch.is_grad_enabled():
            self._update_topk_threshold(top.values.detach())
        return acts

    @torch.no_grad()
    def _update_topk_threshold(self, kept: Tensor, lr: float = 0.01) -> None:
        positive = kept[kept > 0]
        if positive.numel():
            smallest = positive.min().to(self.topk_threshold.dtype)
            if self.topk_threshold == 0:
                self.topk_threshold.copy_(smallest)
            else:
                self.topk_threshold.lerp_(smallest, lr)

    def decode(self, feature_acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_out"]:
        """Reconstruction ``feature_acts @ W_dec + b_dec`` (fires hook_sae_recons)."""
        if feature_acts.shape[-1] != self.cfg.d_sae:
            raise ValueError(
                f"decode expects feature activations with last dimension d_sae={self.cfg.d_sae}, "
                f"got shape {tuple(feature_acts.shape)}"
            )
        return self.hook_sae_recons(feature_acts @ self.W_dec + self.b_dec)

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        """The reconstruction of ``x`` (no error term; splicing adds it when asked), in ``x``'s shape for hook_z SAEs."""
        return self.unflatten_heads(self.decode(self.encode(x)), x)

    def unflatten_heads(self, out: Tensor, like: Tensor) -> Tensor:
        """Give a hook_z SAE's flat output the ``[... head_index d_head]`` shape of the activation it replaces."""
        if self.cfg.reshape_activations == "hook_z" and out.shape != like.shape and out.numel() == like.numel():
            return out.reshape(like.shape)
        return out

    def reconstruct_without_hooks(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        """The plain reconstruction, firing none of the hook points (the error term's reference)."""
        x = self._flatten_heads(x).to(self.dtype)
        sae_in = x - self.b_dec if self.cfg.apply_b_dec_to_input else x
        return self.activation(sae_in @ self.W_enc + self.b_enc) @ self.W_dec + self.b_dec

    def _check_input(self, x: Any) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"an SAE takes a tensor of activations, got {type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] != self.cfg.d_in:
            raise ValueError(
                f"this dictionary reads d_in={self.cfg.d_in} features, but the input has shape {tuple(x.shape)}"
                f"{self._where()}; use a dictionary trained on this hook, or the hook whose width is {self.cfg.d_in}"
            )
        if x.dtype != self.dtype:
            raise TypeError(
                f"the input has dtype {x.dtype} but the dictionary's weights are {self.dtype}; "
                f"cast one of them (e.g. sae.to({x.dtype}))"
            )

    def _where(self) -> str:
        return f" (the dictionary was made for {self.cfg.hook_name!r})" if self.cfg.hook_name else ""

    # ----------------------------------------------------------------- disk
    def save(self, folder: str | Path) -> Path:
        """Write SAELens's format: ``folder/cfg.json`` and ``folder/sae_weights.safetensors``."""
        from interp_transformer.sae.saelens_format import save_dictionary

        return save_dictionary(self, folder)

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> "SparseAutoencoder":
        """Load a SAELens-format folder (written by SAELens or by ``save``); never unpickles anything."""
        from interp_transformer.sae.saelens_format import load_dictionary

        return load_dictionary(folder, device=device, dtype=dtype, expected_class=cls)

    def extra_repr(self) -> str:
        c = self.cfg
        return f"architecture={c.architecture!r}, d_in={c.d_in}, d_sae={c.d_sae}, hook_name={c.hook_name!r}"
