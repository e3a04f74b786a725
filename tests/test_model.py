"""HookedTransformer: return types, the loss by hand, partial runs, seeded init, weight views and input errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from interp_transformer import HookedTransformer, LogitsAndLoss, TransformerConfig
from interp_transformer.model import lm_cross_entropy_loss



def _cache(model, tokens, **kwargs) -> dict[str, torch.Tensor]:
    cache = {}
    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=[(lambda n: True, lambda a, hook: cache.setdefault(hook.name, a.clone()))], **kwargs)
    return cache


# ----------------------------------------------------------------------------- return types
def test_return_types(model, tokens):
    batch, pos = tokens.shape
    with torch.no_grad():
        logits = model(tokens)
        loss = model(tokens, return_type="loss")
        both = model(tokens, return_type="both")
        per_token = model(tokens, return_type="loss", loss_per_token=True)
        nothing = model(tokens, return_type=None)
    assert isinstance(logits, torch.Tensor) and logits.shape == (batch, pos, model.cfg.d_vocab), "logits: [batch pos d_vocab]"
    assert isinstance(loss, torch.Tensor) and loss.shape == (), "return_type='loss' should give a scalar tensor"
    assert isinstance(both, LogitsAndLoss), "return_type='both' should give a LogitsAndLoss named tuple"
    torch.testing.assert_close(both.logits, logits)
    torch.testing.assert_close(both.loss, loss)
    assert per_token.shape == (batch, pos - 1), "loss_per_token should be [batch pos-1]: no target for the last position"
    torch.testing.assert_close(per_token.mean(), loss)
    assert nothing is None


def test_loss_equals_cross_entropy_by_hand(model, tokens):
    with torch.no_grad():
        logits = model(tokens)
        loss = model(tokens, return_type="loss")
        per_token = model(tokens, return_type="loss", loss_per_token=True)
    vocab = model.cfg.d_vocab
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, vocab), tokens[:, 1:].reshape(-1))
    torch.testing.assert_close(loss, expected, msg="loss should be next-token cross-entropy (logits at i predict token i+1)")
    expected_per_token = F.cross_entropy(logits[:, :-1].reshape(-1, vocab), tokens[:, 1:].reshape(-1), reduction="none")
    torch.testing.assert_close(per_token, expected_per_token.view(tokens.shape[0], -1))


def test_masked_loss_ignores_pairs_touching_padding(model, tokens):
    mask = torch.ones_like(tokens)
    mask[0, :3] = 0  # left padding
    mask[1, -4:] = 0  # right padding
    with torch.no_grad():
        logits = model(tokens, attention_mask=mask)
        loss = model(tokens, attention_mask=mask, return_type="loss")
        per_token = model(tokens, attention_mask=mask, return_type="loss", loss_per_token=True)
    terms = []
    for b in range(tokens.shape[0]):
        for i in range(tokens.shape[1] - 1):
            if mask[b, i] and mask[b, i + 1]:
                terms.append(F.cross_entropy(logits[b, i][None], tokens[b, i + 1][None]))
                torch.testing.assert_close(per_token[b, i], terms[-1])
            else:
                assert per_token[b, i] == 0, f"pair ({b}, {i}) touches padding; its per-token loss should be 0"
    torch.testing.assert_close(loss, torch.stack(terms).mean(), msg="masked loss should average over real pairs only")


def test_lm_cross_entropy_loss_rejects_mismatched_tokens():
    with pytest.raises(ValueError, match=r"tokens \(2, 4\) do not match the logits' \[batch pos\] \(2, 5\)"):
        lm_cross_entropy_loss(torch.zeros(2, 5, 10), torch.zeros(2, 4, dtype=torch.long))


# ---------------------------------------------------------------------------- partial runs
@pytest.mark.parametrize("stop", [0, 1, -1, 2])
def test_stop_at_layer_returns_residual_and_skips_later_layers(model, tokens, stop):
    n = model.cfg.n_layers
    cache = _cache(model, tokens)
    fired = []
    with torch.no_grad():
        residual = model.run_with_hooks(tokens, stop_at_layer=stop, fwd_hooks=[(lambda name: True, lambda a, hook: fired.append(hook.name))])
    stop_index = stop % n if stop < 0 else stop
    expected = cache[f"blocks.{stop_index}.hook_resid_pre"] if stop_index < n else cache[f"blocks.{n - 1}.hook_resid_post"]
    assert residual.shape == (*tokens.shape, model.cfg.d_model), "stop_at_layer should return the residual stream"
    torch.testing.assert_close(residual, expected, msg=f"stop_at_layer={stop} should return the stream entering block {stop_index}")
    late = [name for name in fired if name.startswith("ln_final") or any(name.startswith(f"blocks.{i}.") for i in range(stop_index, n))]
    assert not late, f"stop_at_layer={stop} still ran later hooks: {late}"


@pytest.mark.parametrize("start", [0, 1, -1])
def test_start_at_layer_reproduces_the_full_run(model, tokens, start):
    cache = _cache(model, tokens)
    start_index = start % model.cfg.n_layers
    residual = cache[f"blocks.{start_index}.hook_resid_pre"]
    with torch.no_grad():
        full = model(tokens, return_type="both")
        fired = []
        partial = model.run_with_hooks(
            residual, start_at_layer=start, tokens=tokens, return_type="both", fwd_hooks=[(lambda n: True, lambda a, hook: fired.append(hook.name))]
        )
    torch.testing.assert_close(partial.logits, full.logits, msg=f"start_at_layer={start} from the cached residual changed the logits")
    torch.testing.assert_close(partial.loss, full.loss)
    early = [n for n in fired if n.startswith("hook_") or any(n.startswith(f"blocks.{i}.") for i in range(start_index))]
    assert not early, f"start_at_layer={start} ran earlier hooks: {early}"


def test_start_at_layer_with_padding_mask(model, tokens):
    mask = torch.ones_like(tokens)
    mask[0, :4] = 0
    cache = _cache(model, tokens, attention_mask=mask)
    with torch.no_grad():
        full = model(tokens, attention_mask=mask)
        partial = model(cache["blocks.1.hook_resid_pre"], start_at_layer=1, attention_mask=mask)
    torch.testing.assert_close(partial, full, msg="start_at_layer should apply the attention mask to the remaining blocks")


def test_start_and_stop_together_run_only_the_middle(model, tokens):
    cache = _cache(model, tokens)
    with torch.no_grad():
        middle = model(cache["blocks.0.hook_resid_pre"], start_at_layer=0, stop_at_layer=1)
    torch.testing.assert_close(middle, cache["blocks.1.hook_resid_pre"])


def test_loss_from_residual_needs_tokens(model, tokens):
    residual = torch.zeros(*tokens.shape, model.cfg.d_model)
    with pytest.raises(ValueError, match="a loss needs the input tokens; pass tokens="):
        model(residual, start_at_layer=1, return_type="loss")


# ---------------------------------------------------------------------------------- weights
def test_same_seed_same_weights_different_seed_different_weights(cfg):
    a, b = HookedTransformer(cfg), HookedTransformer(cfg)
    c = HookedTransformer(cfg.replace(seed=1))
    for name, param in a.state_dict().items():
        assert torch.equal(param, b.state_dict()[name]), f"seed {cfg.seed} gave different {name} on two builds"
    assert not torch.equal(a.W_E, c.W_E), "seeds 0 and 1 gave the same W_E: the seed is not used"
    unseeded = [HookedTransformer(cfg.replace(seed=None)) for _ in range(2)]
    assert not torch.equal(unseeded[0].W_E, unseeded[1].W_E), "seed=None should give fresh random weights each time"


def test_init_does_not_touch_the_global_rng(cfg):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    HookedTransformer(cfg)
    assert torch.equal(torch.rand(3), expected), "init_weights consumed the global RNG; use a private generator"


def test_init_distribution(cfg):
    model = HookedTransformer(cfg.replace(init_range=0.05))
    for name, param in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("W_"):
            # >= 1024 samples each, so the sample std has a relative sd of <= 2.2%: a 12% tolerance is > 5 sd.
            assert abs(param.std().item() - 0.05) < 0.12 * 0.05, f"{name} std {param.std().item():.4f}, expected init_range 0.05"
            assert abs(param.mean().item()) < 4 * 0.05 / param.numel() ** 0.5, f"{name} mean is not ~0"
        elif leaf == "w":
            assert torch.equal(param, torch.ones_like(param)), f"LayerNorm weight {name} should start at 1"
        else:
            assert torch.equal(param, torch.zeros_like(param)), f"bias {name} should start at 0"


def test_init_weights_is_repeatable(cfg):
    fresh = HookedTransformer(cfg)
    loader_style = HookedTransformer(cfg, init_weights=False)
    loader_style.init_weights()
    with torch.no_grad():
        fresh.blocks[0].attn.W_Q.add_(1.0)
    fresh.init_weights()
    reference = HookedTransformer(cfg).state_dict()
    for name, param in reference.items():
        assert torch.equal(loader_style.state_dict()[name], param), f"init_weights() after init_weights=False changed {name}"
        assert torch.equal(fresh.state_dict()[name], param), f"re-running init_weights() did not restore seeded {name}"


def test_stacked_weight_views(model):
    c = model.cfg
    L, H, D, Dh, M, V = c.n_layers, c.n_heads, c.d_model, c.d_head, c.d_mlp, c.d_vocab
    expected = {
        "W_Q": (L, H, D, Dh), "W_K": (L, H, D, Dh), "W_V": (L, H, D, Dh), "W_O": (L, H, Dh, D),
        "b_Q": (L, H, Dh), "b_K": (L, H, Dh), "b_V": (L, H, Dh), "b_O": (L, D),
        "W_in": (L, D, M), "W_out": (L, M, D), "b_in": (L, M), "b_out": (L, D),
        "W_E": (V, D), "W_pos": (c.n_ctx, D), "W_U": (D, V), "b_U": (V,),
    }
    for name, shape in expected.items():
        assert tuple(getattr(model, name).shape) == shape, f"model.{name} has shape {tuple(getattr(model, name).shape)}, expected {shape}"
    assert torch.equal(model.W_Q[1, 2], model.blocks[1].attn.W_Q[2]), "W_Q[layer, head] should be that block's head"
    assert torch.equal(model.W_out[0], model.blocks[0].mlp.W_out)
    model.W_O[1, 3].sum().backward()
    grad = model.blocks[1].attn.W_O.grad
    assert grad is not None and grad[3].eq(1).all() and grad[[0, 1, 2]].eq(0).all(), "stacked views should carry gradients"


def test_stacked_mlp_view_on_attn_only_model_explains_itself(cfg):
    model = HookedTransformer(cfg.replace(attn_only=True))
    assert model.W_Q.shape[0] == cfg.n_layers
    with pytest.raises(AttributeError, match=r"attention-only"):
        model.W_in


# --------------------------------------------------------------------------------- switches
@pytest.mark.parametrize("switch", [dict(use_attn_result=True), dict(use_split_qkv_input=True), dict(use_hook_mlp_in=True)])
def test_optional_hook_switches_do_not_change_logits(cfg, tokens, switch):
    with torch.no_grad():
        plain = HookedTransformer(cfg)(tokens)
        variant = HookedTransformer(cfg.replace(**switch))(tokens)
    torch.testing.assert_close(variant, plain, rtol=1e-5, atol=1e-5, msg=f"{switch} should add hook points, not change the maths")


def test_float64_model_runs_in_float64(cfg, tokens):
    model = HookedTransformer(cfg.replace(dtype=torch.float64))
    with torch.no_grad():
        logits = model(tokens)
        explicit = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_pattern", lambda a, hook: None)])
    assert logits.dtype == torch.float64
    torch.testing.assert_close(logits, explicit, msg="float64 fused and explicit-pattern paths disagree")


# ------------------------------------------------------------------------------ bad inputs
def test_full_context_is_accepted(model):
    with torch.no_grad():
        assert model(torch.zeros(1, model.cfg.n_ctx, dtype=torch.long)).shape[1] == model.cfg.n_ctx


def test_int32_tokens_are_accepted(model, tokens):
    with torch.no_grad():
        torch.testing.assert_close(model(tokens.int()), model(tokens))


@pytest.mark.parametrize(
    "make_input, kwargs, error, pattern",
    [
        (lambda t: t.clone().index_fill_(1, torch.tensor([3]), -1), {}, ValueError, r"token id -1 is out of range; ids must be in \[0, d_vocab=300\)"),
        (lambda t: t.clone().index_fill_(1, torch.tensor([3]), 300), {}, ValueError, r"token id 300 is out of range"),
        (lambda t: torch.zeros(1, 49, dtype=torch.long), {}, ValueError, r"sequence length 49 is longer than the model's context n_ctx=48"),
        (lambda t: t.float(), {}, TypeError, r"tokens must be an integer tensor \(torch\.long\), got dtype torch\.float32"),
        (lambda t: t.bool(), {}, TypeError, r"tokens must be an integer tensor"),
        (lambda t: t[0], {}, ValueError, r"tokens must have shape \[batch pos\], got \(12,\) \(add a batch axis with tokens\.unsqueeze\(0\)\)"),
        (lambda t: t[None], {}, ValueError, r"tokens must have shape \[batch pos\], got \(1, 3, 12\)"),
        (lambda t: t.tolist(), {}, TypeError, r"input must be a string, a list of strings or a \[batch pos\] tensor"),
        (lambda t: t, dict(attention_mask=torch.ones(3, 14, dtype=torch.long)), ValueError, r"attention_mask must have the tokens' shape \(3, 12\), got \(3, 14\)"),
        (lambda t: t, dict(attention_mask=torch.ones(3, 10, dtype=torch.long)), ValueError, r"attention_mask must have the tokens' shape \(3, 12\), got \(3, 10\)"),
        (lambda t: t, dict(attention_mask=torch.ones(12, dtype=torch.long)), ValueError, r"attention_mask must have the tokens' shape \(3, 12\), got \(12,\)"),
        (lambda t: t, dict(attention_mask=torch.ones(3, 12)), ValueError, r"attention_mask must hold integers 0 \(padding\) and 1"),
        (lambda t: t, dict(attention_mask=torch.full((3, 12), 2)), ValueError, r"attention_mask must hold integers 0 \(padding\) and 1"),
        (lambda t: t, dict(attention_mask=torch.zeros(3, 12, dtype=torch.long)), ValueError, r"attention_mask has a row with no real tokens"),
        (lambda t: t, dict(return_type="logprobs"), ValueError, r"return_type must be one of \('logits', 'loss', 'both', None\), got 'logprobs'"),
        (lambda t: "hello world", {}, ValueError, r"this model has no tokenizer; pass token ids instead of strings"),
        (lambda t: ["hello", "world"], {}, ValueError, r"this model has no tokenizer"),
        (lambda t: t, dict(start_at_layer=3), ValueError, r"start_at_layer=3 is out of range for a model with 2 layers \(use -2\.\.2\)"),
        (lambda t: t, dict(stop_at_layer=-3), ValueError, r"stop_at_layer=-3 is out of range for a model with 2 layers"),
        (lambda t: t, dict(start_at_layer=1), ValueError, r"with start_at_layer, input must be a residual stream \[batch pos d_model=32\], got \(3, 12\)"),
        (lambda t: torch.zeros(3, 12, 16), dict(start_at_layer=1), ValueError, r"input must be a residual stream \[batch pos d_model=32\], got \(3, 12, 16\)"),
        (lambda t: torch.zeros(1, 49, 32), dict(start_at_layer=1), ValueError, r"sequence length 49 is longer than n_ctx=48"),
    ],
    ids=[
        "negative_token", "token_ge_d_vocab", "longer_than_n_ctx", "float_tokens", "bool_tokens", "1d_tokens", "3d_tokens",
        "list_of_ints", "mask_too_long", "mask_too_short", "mask_1d", "mask_float", "mask_values_2", "mask_all_padding",
        "bad_return_type", "string_without_tokenizer", "strings_without_tokenizer", "start_out_of_range", "stop_out_of_range",
        "start_with_tokens_not_residual", "residual_wrong_width", "residual_too_long",
    ],
)
def test_bad_inputs_give_clear_errors(model, tokens, make_input, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        model(make_input(tokens), **kwargs)


def test_model_needs_a_transformer_config():
    with pytest.raises(TypeError, match="cfg must be a TransformerConfig, got dict"):
        HookedTransformer(TransformerConfig().to_dict())


def test_shortformer_keeps_positions_out_of_the_residual_stream(cfg, tokens):
    model = HookedTransformer(cfg.replace(positional_embedding_type="shortformer")).eval()
    seen = {}

    def keep(activation, hook):
        seen[hook.name] = activation

    logits = model.run_with_hooks(tokens, fwd_hooks=[(["hook_embed", "blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"], keep)])
    assert torch.equal(seen["blocks.0.hook_resid_pre"], seen["hook_embed"]), "shortformer must not add W_pos to the residual"
    resumed = model(seen["blocks.1.hook_resid_pre"], start_at_layer=1)
    assert torch.allclose(resumed, logits, atol=1e-6), "start_at_layer must re-derive the shortformer positions"


def test_shortformer_positions_only_reach_queries_and_keys(cfg, tokens):
    model = HookedTransformer(cfg.replace(positional_embedding_type="shortformer", n_layers=1)).eval()
    values = {}
    model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_v", lambda v, hook: values.setdefault("v", v))])
    normalized = model.blocks[0].ln1(model.embed(tokens))
    expected = torch.einsum("bpm,hmd->bphd", normalized, model.blocks[0].attn.W_V) + model.blocks[0].attn.b_V
    assert torch.allclose(values["v"], expected, atol=1e-5), "values must be computed from token embeddings alone"


class _ResearchModel(HookedTransformer):
    """A subclass as a researcher would write one, to add methods of their own."""


@pytest.mark.parametrize("source", ["native", "embedded", "hugging_face"])
@pytest.mark.parametrize("loader", ["from_pretrained", "from_pretrained_no_processing"])
def test_from_pretrained_on_a_subclass_builds_that_subclass(model, tokens, make_hf_gpt2, tmp_path, source, loader):
    if source == "native":
        path = model.save_pretrained(tmp_path / "saved")
    elif source == "embedded":
        path = "attn-only-2l-induction"
    else:
        path = make_hf_gpt2()[1]
    loaded = getattr(_ResearchModel, loader)(path)
    assert type(loaded) is _ResearchModel, (
        f"{loader} returned {type(loaded).__name__}: the loader builds HookedTransformer instead of cls"
    )
    if source == "native":
        with torch.no_grad():
            torch.testing.assert_close(loaded(tokens), model(tokens), msg="the subclass lost the saved weights")


def test_from_pretrained_on_the_base_class_still_builds_the_base_class(model, tmp_path):
    loaded = HookedTransformer.from_pretrained(model.save_pretrained(tmp_path / "saved"))
    assert type(loaded) is HookedTransformer


def test_start_after_stop_raises_but_start_equal_to_stop_runs_no_block(model, tokens):
    with torch.no_grad():
        residual = model(tokens, stop_at_layer=1)
        assert torch.equal(model(residual, start_at_layer=1, stop_at_layer=1), residual), "start == stop runs no block"
        with pytest.raises(ValueError, match=r"start_at_layer=2 comes after stop_at_layer=1 \(blocks 2 and 1 of 2\)"):
            model(residual, start_at_layer=2, stop_at_layer=1)  # used to return residual unchanged, as if it were block 1's output


def test_empty_string_is_the_prediction_after_bos():
    # As in TransformerLens: "" with a BOS token is a one-position prompt, not an error.
    model = HookedTransformer.from_pretrained("ioi-mini")
    bos_only = torch.tensor([[model.tokenizer.bos_token_id]])
    torch.testing.assert_close(model(""), model(bos_only), rtol=0, atol=0)
    batch = model(["When Mary", ""], padding_side="right")
    torch.testing.assert_close(batch[1, :1], model(bos_only)[0], rtol=0, atol=1e-5, msg="padding changed the BOS-only row")
