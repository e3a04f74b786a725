"""HookedTransformer: builds the components, runs the forward pass, exposes stacked weight views."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Self, Sequence, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from interp_transformer import tokenization
from interp_transformer.components.attention import attention_allowed
from interp_transformer.components.block import make_block
from interp_transformer.components.embed import Embed, PosEmbed
from interp_transformer.components.factories import make_layer_norm
from interp_transformer.components.kv_cache import KeyValueCache
from interp_transformer.components.unembed import Unembed
from interp_transformer.config import TransformerConfig
from interp_transformer.hooks import HookedModule, HookPoint
from interp_transformer.loading.native import save_native
from interp_transformer.loading.pretrained import load_weights
from interp_transformer.weights import StackedWeights

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ModelInput = Union[str, Sequence[str], Int[Tensor, "batch pos"]]
ReturnType = Literal["logits", "loss", "both", None]
RETURN_TYPES = ("logits", "loss", "both", None)


class LogitsAndLoss(NamedTuple):
    logits: Float[Tensor, "batch pos d_vocab"]
    loss: Tensor


class HookedTransformer(StackedWeights, HookedModule):
    """A GPT-2-style decoder with a hook point at every residual-stream, attention and MLP site."""

    def __init__(
        self,
        cfg: TransformerConfig,
        tokenizer: "PreTrainedTokenizerBase | None" = None,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(cfg, TransformerConfig):
            raise TypeError(f"cfg must be a TransformerConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.hook_embed = HookPoint()  # [batch pos d_model]
        if cfg.positional_embedding_type != "rotary":  # rotary positions live in the attention layers
            self.pos_embed = PosEmbed(cfg)
            self.hook_pos_embed = HookPoint()  # [batch pos d_model]
        self.blocks = nn.ModuleList(make_block(cfg, layer) for layer in range(cfg.n_layers))
        self.ln_final = make_layer_norm(cfg) or nn.Identity()
        self.unembed = Unembed(cfg)
        self.tokenizer = None
        if tokenizer is not None:
            self.set_tokenizer(tokenizer)
        if init_weights:  # loaders skip this: they overwrite every parameter anyway
            self.init_weights()
        self.setup_hooks()

    # ----------------------------------------------------------------- weights
    @torch.no_grad()
    def init_weights(self) -> None:
        """Weight matrices ~ N(0, init_range), biases 0, LayerNorm weights 1; reproducible from ``cfg.seed``."""
        generator = torch.Generator()
        if self.cfg.seed is not None:
            generator.manual_seed(self.cfg.seed)
        else:
            generator.seed()
        for name, param in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("W_"):
                values = torch.randn(param.shape, generator=generator, dtype=torch.float32) * self.cfg.init_range
                param.copy_(values.to(param.dtype))
            elif leaf == "w":
                param.fill_(1.0)
            else:
                param.zero_()

    @property
    def device(self) -> torch.device:
        return self.embed.W_E.device

    def _apply(self, fn, recurse: bool = True):
        """After ``to(dtype)``, ``half()``, ``bfloat16()`` …, make ``cfg.dtype`` (here and in every component) say so."""
        result = super()._apply(fn, recurse)
        dtype = self.embed.W_E.dtype
        if dtype != self.cfg.dtype:
            cfg = self.cfg.replace(dtype=dtype)
            for module in self.modules():
                if isinstance(getattr(module, "cfg", None), TransformerConfig):
                    module.cfg = cfg
        return result

    # ---------------------------------------------------------------- tokenizer
    def set_tokenizer(self, tokenizer: "PreTrainedTokenizerBase") -> None:
        self.tokenizer = tokenization.prepare_tokenizer(tokenizer)

    def to_tokens(
        self,
        input: str | Sequence[str],
        prepend_bos: bool | None = None,
        padding_side: Literal["left", "right"] | None = None,
        truncate: bool = True,
    ) -> Int[Tensor, "batch pos"]:
        return self.tokenize(input, prepend_bos, padding_side, truncate).tokens

    def tokenize(
        self,
        input: str | Sequence[str],
        prepend_bos: bool | None = None,
        padding_side: Literal["left", "right"] | None = None,
        truncate: bool = True,
    ) -> tokenization.Tokenized:
        """Tokens and their attention mask (1 = real token) for a string or a batch of strings.

        With ``truncate`` (the default) prompts longer than ``n_ctx`` keep their first ``n_ctx``
        tokens, and the first time that happens to this model a UserWarning says so.
        """
        tokenized = tokenization.tokenize(
            self._require_tokenizer(),
            input,
            prepend_bos=self.cfg.default_prepend_bos if prepend_bos is None else prepend_bos,
            padding_side=padding_side,
            max_length=self.cfg.n_ctx if truncate else None,
        )
        if tokenized.untruncated_length is not None and not getattr(self, "_warned_truncation", False):
            self._warned_truncation = True
            warnings.warn(
                f"input of {tokenized.untruncated_length} tokens is longer than the model's context n_ctx={self.cfg.n_ctx}; "
                f"kept its first {self.cfg.n_ctx} tokens (this warning is shown once per model). Shorten the input, or "
                "pass truncate=False to to_tokens/tokenize to get an error instead",
                UserWarning,
                stacklevel=3,
            )
        return tokenized.to(self.device)

    def to_str_tokens(
        self, input: str | Sequence[str] | Tensor | Sequence[int], prepend_bos: bool | None = None
    ) -> list[str] | list[list[str]]:
        """Each token as a string. A string, ``[pos]``, ``[1 pos]`` or 0-d tokens give a flat list (as in
        TransformerLens); a list of strings or ``[batch pos]`` tokens give one list per prompt."""
        if isinstance(input, str):
            input = self.to_tokens(input, prepend_bos=prepend_bos)[0]
        elif isinstance(input, (list, tuple)) and input and all(isinstance(text, str) for text in input):
            return [self.to_str_tokens(text, prepend_bos=prepend_bos) for text in input]
        return tokenization.to_str_tokens(self._require_tokenizer(), input)

    def to_string(self, tokens: Tensor | Sequence[int]) -> str | list[str]:
        return tokenization.to_string(self._require_tokenizer(), tokens)

    def to_single_token(self, string: str) -> int:
        return tokenization.to_single_token(self._require_tokenizer(), string)

    def get_token_position(
        self,
        single_token: str | int,
        input: str | Tensor,
        mode: Literal["first", "last"] = "first",
        prepend_bos: bool | None = None,
    ) -> int:
        """Index of ``single_token`` in ``input`` (a string, or tokens of one prompt)."""
        if isinstance(input, str):
            input = self.to_tokens(input, prepend_bos=prepend_bos)
        elif not isinstance(input, Tensor):
            raise TypeError(f"get_token_position looks in one prompt: a string or its tokens [pos], got {type(input).__name__}")
        if isinstance(single_token, str):
            single_token = self.to_single_token(single_token)
        return tokenization.get_token_position(single_token, input, mode)

    def _require_tokenizer(self) -> "PreTrainedTokenizerBase":
        if self.tokenizer is None:
            raise ValueError(
                "this model has no tokenizer; pass token ids instead of strings, or attach one with "
                "model.set_tokenizer(AutoTokenizer.from_pretrained(...))"
            )
        return self.tokenizer

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input: ModelInput,
        return_type: ReturnType = "logits",
        loss_per_token: bool = False,
        prepend_bos: bool | None = None,
        padding_side: Literal["left", "right"] | None = None,
        attention_mask: Int[Tensor, "batch pos"] | None = None,
        start_at_layer: int | None = None,
        stop_at_layer: int | None = None,
        tokens: Int[Tensor, "batch pos"] | None = None,
        past_kv_cache: KeyValueCache | None = None,
    ) -> Any:
        """Run the model.

        ``input`` is a string, a list of strings (padded, with the mask built for you) or
        token ids ``[batch pos]``; with ``start_at_layer`` it is the residual stream
        ``[batch pos d_model]`` entering that block (pass ``tokens`` to get a loss).
        ``return_type`` is ``"logits"``, ``"loss"``, ``"both"`` (a ``LogitsAndLoss``) or None.
        With ``stop_at_layer`` the residual stream entering that block is returned
        instead and later blocks never run.

        With ``past_kv_cache`` (a ``KeyValueCache``), the tokens continue the cached sequence:
        they attend to the cached keys and values, their positions follow the cached ones
        (counting real tokens only, so left padding is skipped), and the cache grows by them.
        ``attention_mask`` then covers the new tokens only.
        """
        if return_type not in RETURN_TYPES:
            raise ValueError(f"return_type must be one of {RETURN_TYPES}, got {return_type!r}")
        if not isinstance(loss_per_token, bool):
            raise TypeError(f"loss_per_token must be True or False, got {loss_per_token!r}")
        start, stop = self._layer_range(start_at_layer, stop_at_layer)
        if past_kv_cache is not None and (start_at_layer is not None or stop_at_layer is not None):
            raise ValueError("past_kv_cache needs the whole model to run: it cannot be combined with start_at_layer or stop_at_layer")
        key_mask, past_len = None, 0
        if start_at_layer is None:
            tokens, attention_mask = self._prepare_tokens(input, prepend_bos, padding_side, attention_mask)
            attention_mask = key_mask = self._check_attention_mask(attention_mask, tokens.shape)
            if past_kv_cache is not None:
                past_len = self._check_past_kv_cache(past_kv_cache, tokens.shape[1])
                key_mask = past_kv_cache.extend_attention_mask(attention_mask, tokens.shape[0], tokens.shape[1])
            residual, shortformer_pos = self._embed(tokens, key_mask, past_len)
        else:
            residual = self._check_residual(input)
            if tokens is not None:
                tokens = self._check_tokens(tokens)
            attention_mask = key_mask = self._check_attention_mask(attention_mask, residual.shape[:2])
            shortformer_pos = self._shortformer_pos_for(residual, attention_mask)
        query_len = residual.shape[1]
        allowed = attention_allowed(query_len, past_len + query_len, key_mask, residual.device)
        positions = token_positions(residual.shape[0], query_len, past_len, key_mask, residual.device)
        entries = past_kv_cache.entries if past_kv_cache is not None else [None] * self.cfg.n_layers
        for block in self.blocks[start:stop]:
            residual = block(residual, allowed, shortformer_pos, entries[block.layer], positions)
        if stop_at_layer is not None:
            return residual
        if return_type in ("loss", "both") and tokens is None:
            raise ValueError("a loss needs the input tokens; pass tokens=... when starting from a residual stream")
        normalized = self.ln_final(residual)
        if return_type is None:  # hooks up to ln_final have fired; skip the unembedding, the largest matmul
            return None
        logits = self.unembed(normalized)
        if return_type == "logits":
            return logits
        loss = lm_cross_entropy_loss(logits, tokens, attention_mask, per_token=loss_per_token)
        return loss if return_type == "loss" else LogitsAndLoss(logits, loss)

    def embed_tokens(
        self, tokens: Int[Tensor, "batch pos"], attention_mask: Int[Tensor, "batch pos"] | None = None
    ) -> Float[Tensor, "batch pos d_model"]:
        """The residual stream entering block 0: token plus positional embeddings (token only for shortformer)."""
        return self._embed(tokens, attention_mask)[0]

    def _embed(
        self, tokens: Tensor, attention_mask: Tensor | None, past_len: int = 0
    ) -> tuple[Float[Tensor, "batch pos d_model"], Float[Tensor, "batch pos d_model"] | None]:
        """Residual stream entering block 0, and the positional embedding when it goes to attention instead.

        ``attention_mask`` covers the ``past_len`` cached positions too, when there are any.
        """
        embed = self.hook_embed(self.embed(tokens))
        if self.cfg.positional_embedding_type == "rotary":
            return embed, None
        pos_embed = self.hook_pos_embed(self.pos_embed(tokens, past_len, attention_mask))
        if self.cfg.positional_embedding_type == "shortformer":
            return embed, pos_embed
        return embed + pos_embed, None

    def _shortformer_pos_for(self, residual: Tensor, attention_mask: Tensor | None) -> Tensor | None:
        if self.cfg.positional_embedding_type != "shortformer":
            return None
        placeholder_tokens = torch.zeros(residual.shape[:2], dtype=torch.long, device=residual.device)
        return self.hook_pos_embed(self.pos_embed(placeholder_tokens, attention_mask=attention_mask))

    def _prepare_tokens(
        self,
        input: ModelInput,
        prepend_bos: bool | None,
        padding_side: str | None,
        attention_mask: Tensor | None,
    ) -> tuple[Tensor, Tensor | None]:
        if isinstance(input, (list, tuple)) and not input:
            raise ValueError("the input list is empty: pass at least one string (or a [batch pos] tensor of token ids)")
        if isinstance(input, str) or (isinstance(input, (list, tuple)) and isinstance(input[0], str)):
            if attention_mask is not None:
                raise ValueError("attention_mask is built from the strings; pass it only with token ids")
            # An empty string is the prediction after BOS, as in TransformerLens; tokenize refuses it only
            # when it would leave no token at all (prepend_bos=False).
            tokenized = self.tokenize(input, prepend_bos, padding_side)
            mask = tokenized.attention_mask
            return self._check_tokens(tokenized.tokens), (None if bool(mask.all()) else mask)
        if not isinstance(input, Tensor):
            raise TypeError(
                f"input must be a string, a list of strings or a [batch pos] tensor of token ids, got {type(input).__name__}"
            )
        return self._check_tokens(input), attention_mask

    def _check_tokens(self, tokens: Tensor) -> Int[Tensor, "batch pos"]:
        if tokens.dtype in (torch.bool,) or tokens.is_floating_point() or tokens.is_complex():
            raise TypeError(f"tokens must be an integer tensor (torch.long), got dtype {tokens.dtype}")
        if tokens.ndim != 2:
            fix = " (add a batch axis with tokens.unsqueeze(0))" if tokens.ndim == 1 else ""
            raise ValueError(f"tokens must have shape [batch pos], got {tuple(tokens.shape)}{fix}")
        if 0 in tokens.shape:
            raise ValueError(f"tokens have shape {tuple(tokens.shape)}: there must be at least one prompt and one position")
        if tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(
                f"sequence length {tokens.shape[1]} is longer than the model's context n_ctx={self.cfg.n_ctx}; "
                "truncate the input (to_tokens truncates by default)"
            )
        if tokens.numel():
            low, high = int(tokens.min()), int(tokens.max())
            if low < 0 or high >= self.cfg.d_vocab:
                bad = low if low < 0 else high
                raise ValueError(f"token id {bad} is out of range; ids must be in [0, d_vocab={self.cfg.d_vocab})")
        return tokens.to(self.device, torch.long)

    def _check_residual(self, residual: Any) -> Float[Tensor, "batch pos d_model"]:
        if not isinstance(residual, Tensor) or residual.ndim != 3 or residual.shape[-1] != self.cfg.d_model:
            shape = tuple(residual.shape) if isinstance(residual, Tensor) else type(residual).__name__
            raise ValueError(f"with start_at_layer, input must be a residual stream [batch pos d_model={self.cfg.d_model}], got {shape}")
        if residual.shape[1] > self.cfg.n_ctx:
            raise ValueError(f"sequence length {residual.shape[1]} is longer than n_ctx={self.cfg.n_ctx}")
        if 0 in residual.shape:
            raise ValueError(f"the residual stream has shape {tuple(residual.shape)}: it needs at least one prompt and one position")
        if residual.dtype != self.cfg.dtype:
            raise TypeError(
                f"the residual stream has dtype {residual.dtype}, the model runs in {self.cfg.dtype}; "
                f"cast it with .to({self.cfg.dtype})"
            )
        if residual.device != self.device:
            raise ValueError(f"the residual stream is on {residual.device}, the model on {self.device}; move it with .to(model.device)")
        return residual

    def _check_attention_mask(self, mask: Tensor | None, batch_pos: tuple[int, int]) -> Tensor | None:
        if mask is None:
            return None
        if not isinstance(mask, Tensor) or tuple(mask.shape) != tuple(batch_pos):
            shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"attention_mask must have the tokens' shape {tuple(batch_pos)}, got {shape}")
        if mask.is_floating_point() or not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("attention_mask must hold integers 0 (padding) and 1 (real token)")
        if not bool(mask.any(-1).all()):
            raise ValueError("attention_mask has a row with no real tokens; every prompt needs at least one")
        return mask.to(self.device, torch.long)

    def _check_past_kv_cache(self, cache: KeyValueCache, new_len: int) -> int:
        if not isinstance(cache, KeyValueCache):
            raise TypeError(f"past_kv_cache must be a KeyValueCache, got {type(cache).__name__}")
        if len(cache.entries) != self.cfg.n_layers:
            raise ValueError(f"past_kv_cache has {len(cache.entries)} layers, the model has {self.cfg.n_layers}")
        past_len = len(cache)
        if past_len + new_len > self.cfg.n_ctx:
            raise ValueError(
                f"{past_len} cached + {new_len} new positions exceed the model's context n_ctx={self.cfg.n_ctx}"
            )
        return past_len

    def _layer_range(self, start: int | None, stop: int | None) -> tuple[int, int]:
        n = self.cfg.n_layers
        for name, value in (("start_at_layer", start), ("stop_at_layer", stop)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise TypeError(f"{name} must be an int or None, got {value!r} ({type(value).__name__})")
            if value is not None and not -n <= value <= n:
                raise ValueError(f"{name}={value} is out of range for a model with {n} layers (use -{n}..{n})")
        first, last = range(n)[slice(start, stop)].start, range(n)[slice(start, stop)].stop
        if first > last:  # slicing would run no block and hand the input back as if it were the answer
            raise ValueError(
                f"start_at_layer={start} comes after stop_at_layer={stop} (blocks {first} and {last} of {n}); "
                "start must not be later than stop"
            )
        return first, last

    # -------------------------------------------------------------- generation
    def generate(
        self,
        input: ModelInput,
        max_new_tokens: int = 10,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stop_at_eos: bool = True,
        use_past_kv_cache: bool = True,
        **kwargs: Any,
    ) -> Int[Tensor, "batch pos"]:
        """Prompt plus sampled tokens ``[batch pos]`` (``temperature=0`` is greedy); see ``generation.generate``."""
        from interp_transformer.generation import generate

        return generate(self, input, max_new_tokens, temperature, top_k, top_p, stop_at_eos, use_past_kv_cache, **kwargs)

    # ------------------------------------------------------------ persistence
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        fold_ln: bool = False,
        center_writing_weights: bool = False,
        center_unembed: bool = False,
        fold_value_biases: bool = False,
        refactor_factored_attn_matrices: bool = False,
    ) -> Self:
        """Load a supported model by hub name, embedded-model name or local directory, as an instance of ``cls``.

        Weights are used as stored unless processing is asked for (``fold_ln``,
        ``center_writing_weights``, ``center_unembed``, ``fold_value_biases``,
        ``refactor_factored_attn_matrices``; all default False, unlike TransformerLens).
        The loader (``loading.load_weights``) is a pure function returning ``(cfg, state_dict, tokenizer)``;
        this builds ``cls(cfg)`` and loads the state strictly (every parameter, nothing else).
        """
        cfg, state_dict, tokenizer = load_weights(
            name_or_path, dtype=dtype, fold_ln=fold_ln, center_writing_weights=center_writing_weights,
            center_unembed=center_unembed, fold_value_biases=fold_value_biases,
            refactor_factored_attn_matrices=refactor_factored_attn_matrices,
        )
        model = cls(cfg, tokenizer=tokenizer, init_weights=False)
        model.load_state_dict(state_dict, strict=True)
        return model.to(device) if device is not None else model

    @classmethod
    def from_pretrained_no_processing(
        cls, name_or_path: str | Path, dtype: torch.dtype | str | None = None, device: torch.device | str | None = None
    ) -> Self:
        """Weights exactly as stored. Same as our ``from_pretrained`` default; named for TransformerLens users."""
        return cls.from_pretrained(name_or_path, dtype=dtype, device=device)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write weights (safetensors), config and checksums; ``from_pretrained(directory)`` reads them back."""
        return save_native(self, directory)


def token_positions(
    batch: int, query_len: int, past_len: int, key_mask: Int[Tensor, "batch key_pos"] | None, device: torch.device
) -> Int[Tensor, "batch pos"]:
    """Each new token's position: counting real tokens only when there is padding, after ``past_len`` cached ones."""
    if key_mask is None:
        return torch.arange(past_len, past_len + query_len, device=device).expand(batch, query_len)
    return (key_mask.cumsum(-1) - 1).clamp(min=0)[:, -query_len:]


def lm_cross_entropy_loss(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"] | None = None,
    per_token: bool = False,
) -> Tensor:
    """Next-token cross-entropy. Pairs that touch padding are excluded (zero in the per-token loss)."""
    if not isinstance(tokens, Tensor) or tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        what = f"dtype {tokens.dtype}" if isinstance(tokens, Tensor) else type(tokens).__name__
        raise TypeError(f"tokens must be an integer tensor of token ids, got {what}")
    if tokens.shape != logits.shape[:2]:
        raise ValueError(f"tokens {tuple(tokens.shape)} do not match the logits' [batch pos] {tuple(logits.shape[:2])}")
    if tokens.shape[1] < 2:
        raise ValueError(f"a next-token loss needs at least 2 positions, got {tokens.shape[1]}: there is nothing to predict")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= logits.shape[-1]):
        bad = int(tokens.min()) if int(tokens.min()) < 0 else int(tokens.max())
        raise ValueError(f"token id {bad} is out of range; ids must be in [0, d_vocab={logits.shape[-1]})")
    log_probs = F.log_softmax(logits[:, :-1].float(), dim=-1)
    loss = -log_probs.gather(-1, tokens[:, 1:, None].to(logits.device)).squeeze(-1)
    if attention_mask is None:
        return loss if per_token else loss.mean()
    valid = (attention_mask[:, :-1] * attention_mask[:, 1:]).to(loss.dtype)
    loss = loss * valid
    if per_token:
        return loss
    if not bool(valid.any()):  # the mean over no pairs would be nan
        raise ValueError("no prompt has two consecutive real tokens, so there is no next-token pair to score")
    return loss.sum() / valid.sum()
