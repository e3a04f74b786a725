"""Logit effects of decoder directions: the dense product, and what the model's own logits do when the direction is added."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from interp_transformer import HookedTransformer
from interp_transformer.sae import SAEConfig, SparseAutoencoder, Transcoder
from interp_transformer.sae.logit_effects import feature_logit_weights, logit_effects

D_SAE = 10


def random_sae(d_in: int, hook: str, seed: int = 0, **cfg) -> SparseAutoencoder:
    return SparseAutoencoder(SAEConfig(d_in=d_in, d_sae=D_SAE, hook_name=hook, **cfg), seed=seed)


def model_with_trained_looking_norm(**overrides) -> HookedTransformer:
    model = HookedTransformer(tiny_config(**overrides)).eval()
    with torch.no_grad():  # a non-trivial final norm weight, so applying it (or not) matters
        model.ln_final.w.copy_(torch.rand(model.cfg.d_model, generator=torch.Generator().manual_seed(1)) + 0.5)
    return model


def logit_change_when_added(
    model: HookedTransformer, hook: str, direction: torch.Tensor, tokens: torch.Tensor, frozen: tuple[str, ...] = ()
) -> torch.Tensor:
    """[feature d_vocab]: (logits with `direction` added at `hook`, final norm scale and `frozen` hooks kept
    at their clean values) - clean logits, times that scale, at the last position: the direction's direct
    effect as the model computes it."""
    kept = ("ln_final.hook_scale", *frozen)
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in kept)
    scale = cache["ln_final.hook_scale"]
    clean = model(tokens)[0, -1]
    changes = []
    for row in direction:
        def add(activation, hook):
            return activation + row.reshape(activation.shape[2:])

        def freeze(activation, hook):
            return cache[hook.name]

        patched = model.run_with_hooks(tokens, fwd_hooks=[(hook, add)] + [(name, freeze) for name in kept])[0, -1]
        changes.append((patched - clean) * scale[0, -1])
    return torch.stack(changes)


@pytest.mark.parametrize("normalization_type", ["LN", "RMS"])
def test_logit_weights_are_what_the_model_adds_to_its_logits(normalization_type) -> None:
    model = model_with_trained_looking_norm(normalization_type=normalization_type)
    hook = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    sae = random_sae(model.cfg.d_model, hook)
    weights = feature_logit_weights(model, sae)
    observed = logit_change_when_added(model, hook, sae.W_dec.detach(), torch.tensor([[1, 5, 7, 2]]))
    torch.testing.assert_close(weights, observed, atol=2e-5, rtol=1e-4, msg="the norm's centring or weight is applied wrongly")


def test_without_the_final_norm_it_is_the_bare_dense_product() -> None:
    model = model_with_trained_looking_norm()
    sae = random_sae(model.cfg.d_model, "blocks.0.hook_mlp_out")
    dense = sae.W_dec.detach() @ model.unembed.W_U.detach()
    torch.testing.assert_close(feature_logit_weights(model, sae, through_final_norm=False), dense)
    folded_by_hand = (sae.W_dec.detach() - sae.W_dec.detach().mean(-1, keepdim=True)) * model.ln_final.w.detach() @ model.unembed.W_U.detach()
    torch.testing.assert_close(feature_logit_weights(model, sae, [3, 0]), folded_by_hand[[3, 0]])


def test_top_and_bottom_tokens_equal_a_dense_sort_in_chunks() -> None:
    model = model_with_trained_looking_norm()
    sae = random_sae(model.cfg.d_model, "blocks.1.hook_resid_pre", seed=3)
    dense = feature_logit_weights(model, sae)
    effects = logit_effects(model, sae, k=4, chunk_features=3)
    assert effects.features.tolist() == list(range(D_SAE))
    order = dense.argsort(dim=-1, descending=True)
    assert effects.top_tokens.tolist() == order[:, :4].tolist()
    assert effects.bottom_tokens.tolist() == order.flip(-1)[:, :4].tolist()
    torch.testing.assert_close(effects.top_values, dense.gather(1, order[:, :4]))
    torch.testing.assert_close(effects.bottom_values, dense.gather(1, order.flip(-1)[:, :4]))
    some = logit_effects(model, sae, features=[7, 2], k=4)
    assert some.top_tokens[some.row(2)].tolist() == effects.top_tokens[2].tolist()


def test_hook_z_goes_through_W_O_and_mlp_post_through_W_out() -> None:
    model = model_with_trained_looking_norm()
    last = model.cfg.n_layers - 1
    tokens = torch.tensor([[3, 9, 4]])
    z_hook, post_hook = f"blocks.{last}.attn.hook_z", f"blocks.{last}.mlp.hook_post"
    z_sae = random_sae(model.cfg.n_heads * model.cfg.d_head, z_hook, seed=5)
    # The same layer's MLP reads what the attention wrote: keep it clean to see the direct path only.
    observed = logit_change_when_added(model, z_hook, z_sae.W_dec.detach(), tokens, frozen=(f"blocks.{last}.hook_mlp_out",))
    torch.testing.assert_close(feature_logit_weights(model, z_sae), observed, atol=2e-5, rtol=1e-4)
    post_sae = random_sae(model.cfg.d_mlp, post_hook, seed=6)
    observed = logit_change_when_added(model, post_hook, post_sae.W_dec.detach(), tokens)
    torch.testing.assert_close(feature_logit_weights(model, post_sae), observed, atol=2e-5, rtol=1e-4)


def test_a_transcoder_is_read_where_it_writes() -> None:
    model = model_with_trained_looking_norm()
    cfg = SAEConfig(
        d_in=model.cfg.d_model, d_sae=D_SAE, hook_name="blocks.1.ln2.hook_normalized", hook_name_out="blocks.1.hook_mlp_out",
        d_out=model.cfg.d_model,
    )
    transcoder = Transcoder(cfg, seed=2)
    observed = logit_change_when_added(model, "blocks.1.hook_mlp_out", transcoder.W_dec.detach(), torch.tensor([[1, 2]]))
    torch.testing.assert_close(feature_logit_weights(model, transcoder), observed, atol=2e-5, rtol=1e-4)
