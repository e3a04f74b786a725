"""Weight processing: every step preserves log-probabilities and does to the weights what it says.

The reference is the unprocessed model (itself checked against Hugging Face in test_gpt2.py) and,
for the loaded models, Hugging Face's own logits.
"""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from interp_transformer import HookedTransformer
from interp_transformer.loading import processing

STEPS = ["fold_ln", "center_writing_weights", "center_unembed", "fold_value_biases", "refactor_factored_attn_matrices"]
TL_DEFAULT = dict(fold_ln=True, center_writing_weights=True, center_unembed=True, fold_value_biases=True)


@pytest.fixture
def hf_directory(make_hf_gpt2):
    """A saved random HF GPT-2 with every parameter perturbed (LayerNorm weights and biases are not 1 and 0)."""
    hf_model, directory = make_hf_gpt2(seed=7, initializer_range=0.3, attn_implementation="eager", tie_word_embeddings=False)
    generator = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for param in hf_model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    hf_model.save_pretrained(directory)
    return hf_model, directory


def sample_tokens(batch: int = 2, pos: int = 16) -> torch.Tensor:
    return torch.randint(0, 300, (batch, pos), generator=torch.Generator().manual_seed(9))


def log_probs(model: HookedTransformer, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens).log_softmax(-1)


def build(state: dict, cfg) -> HookedTransformer:
    model = HookedTransformer(cfg, init_weights=False)
    model.load_state_dict(state, strict=True)
    return model.eval()


def assert_log_probs_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    error = (actual - expected).abs().max().item()
    assert error < 1e-4, f"{what} changed the log-probs by {error:.2e}; the step is not output-preserving"


# ------------------------------------------------------------ output preserved
@pytest.mark.parametrize("options", [{step: True} for step in STEPS] + [TL_DEFAULT, dict.fromkeys(STEPS, True)], ids=lambda o: "+".join(o))
def test_processing_preserves_log_probs(hf_directory, options):
    hf_model, directory = hf_directory
    tokens = sample_tokens()
    with torch.no_grad():
        expected = hf_model(tokens).logits.log_softmax(-1)
    processed = HookedTransformer.from_pretrained(directory, **options)
    assert_log_probs_close(log_probs(processed, tokens), expected, "+".join(options))


def test_center_unembed_shifts_logits_by_a_constant_per_position(hf_directory):
    _, directory = hf_directory
    tokens = sample_tokens()
    with torch.no_grad():
        plain = HookedTransformer.from_pretrained(directory)(tokens)
        centred = HookedTransformer.from_pretrained(directory, center_unembed=True)(tokens)
    shift = plain - centred
    torch.testing.assert_close(shift, shift[..., :1].expand_as(shift), atol=1e-4, rtol=0)
    torch.testing.assert_close(centred.mean(-1), torch.zeros_like(centred.mean(-1)), atol=1e-4, rtol=0)


def test_processing_a_shortformer_model_preserves_log_probs_and_refuses_fold_ln():
    model = HookedTransformer(tiny_config(positional_embedding_type="shortformer", seed=3)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():  # make LayerNorm weights and biases non-trivial
            param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(len(name))) * 0.2)
    tokens = sample_tokens()
    with pytest.raises(ValueError, match="shortformer"):
        processing.process_weights(model.state_dict(), model.cfg, fold_ln=True)
    state, cfg = processing.process_weights(model.state_dict(), model.cfg, **dict.fromkeys(STEPS[1:], True))
    assert not torch.allclose(state["pos_embed.W_pos"].mean(-1), torch.zeros(cfg.n_ctx)), (
        "shortformer positions go to attention after ln1, so centring W_pos would change the output"
    )
    assert_log_probs_close(log_probs(build(state, cfg), tokens), log_probs(model, tokens), "processing a shortformer model")


# -------------------------------------------------------------- what changes
def test_fold_ln_leaves_weightless_layer_norms_and_the_same_residual_stream(hf_directory):
    _, directory = hf_directory
    plain = HookedTransformer.from_pretrained(directory)
    folded = HookedTransformer.from_pretrained(directory, fold_ln=True)
    assert folded.cfg.normalization_type == "LNPre" and plain.cfg.normalization_type == "LN"
    assert not any(".ln" in name or name.startswith("ln_final") for name in folded.state_dict())
    tokens = sample_tokens()
    _, plain_cache = plain.run_with_cache(tokens)
    _, folded_cache = folded.run_with_cache(tokens)
    for name in ("blocks.1.hook_resid_pre", "blocks.1.ln1.hook_scale", "blocks.1.attn.hook_pattern", "blocks.1.mlp.hook_post"):
        torch.testing.assert_close(folded_cache[name], plain_cache[name], atol=1e-4, rtol=1e-4, msg=f"{name} changed under fold_ln")
    W_Q = folded.W_Q
    torch.testing.assert_close(W_Q.mean(-2), torch.zeros_like(W_Q.mean(-2)), atol=1e-6, rtol=0, msg="W_Q is not centred over d_model")


def test_center_writing_weights_centres_every_writer(hf_directory):
    _, directory = hf_directory
    model = HookedTransformer.from_pretrained(directory, center_writing_weights=True)
    writers = {"W_E": model.W_E, "W_pos": model.W_pos, "W_O": model.W_O, "b_O": model.b_O, "W_out": model.W_out, "b_out": model.b_out}
    for name, weight in writers.items():
        mean = weight.mean(-1)
        torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-6, rtol=0, msg=f"{name} is not centred over d_model")


def test_fold_value_biases_zeroes_b_V(hf_directory):
    _, directory = hf_directory
    plain = HookedTransformer.from_pretrained(directory)
    folded = HookedTransformer.from_pretrained(directory, fold_value_biases=True)
    assert plain.b_V.abs().max() > 0.01 and folded.b_V.abs().max() == 0
    expected = plain.b_O + torch.einsum("lhd,lhdm->lm", plain.b_V, plain.W_O)
    torch.testing.assert_close(folded.b_O, expected)


def test_refactor_keeps_the_products_and_makes_W_O_orthonormal(hf_directory):
    _, directory = hf_directory
    plain = HookedTransformer.from_pretrained(directory)
    model = HookedTransformer.from_pretrained(directory, refactor_factored_attn_matrices=True)
    torch.testing.assert_close(model.QK.AB, plain.QK.AB, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(model.OV.AB, plain.OV.AB, atol=1e-4, rtol=1e-4)
    gram = model.W_O @ model.W_O.transpose(-1, -2)
    torch.testing.assert_close(gram, torch.eye(model.cfg.d_head).expand_as(gram), atol=1e-4, rtol=0)
    # W_Q and W_K (with their bias rows) are balanced: matching columns have equal norms.
    q_norms = torch.cat([model.W_Q, model.b_Q[:, :, None]], dim=2).norm(dim=2)
    k_norms = torch.cat([model.W_K, model.b_K[:, :, None]], dim=2).norm(dim=2)
    torch.testing.assert_close(q_norms, k_norms, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------ pure functions
def test_steps_do_not_mutate_their_input():
    model = HookedTransformer(tiny_config())
    state = model.state_dict()
    before = {name: tensor.clone() for name, tensor in state.items()}
    processing.process_weights(state, model.cfg, **dict.fromkeys(STEPS, True))
    assert state.keys() == before.keys()
    for name, tensor in before.items():
        assert torch.equal(state[name], tensor), f"processing changed the caller's {name}"


def test_center_writing_weights_without_layer_norm_is_refused():
    cfg = tiny_config(normalization_type=None)
    model = HookedTransformer(cfg)
    with pytest.raises(ValueError, match="center_writing_weights"):
        processing.process_weights(model.state_dict(), cfg, center_writing_weights=True)


def test_no_processing_is_the_default(hf_directory):
    _, directory = hf_directory
    default = HookedTransformer.from_pretrained(directory).state_dict()
    unprocessed = HookedTransformer.from_pretrained_no_processing(directory).state_dict()
    assert default.keys() == unprocessed.keys()
    assert all(torch.equal(default[name], unprocessed[name]) for name in default)
    with pytest.raises(TypeError):
        HookedTransformer.from_pretrained_no_processing(directory, fold_ln=True)
