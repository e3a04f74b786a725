"""GPT-2 conversion: random Hugging Face GPT2LMHeadModels of several shapes, converted and compared.

Every comparison is against Hugging Face's own forward pass (the independent computation).
Weights are drawn with a large initializer range and every parameter (LayerNorm weights and
all biases included) is perturbed, so a swapped, transposed or dropped tensor shows up.
"""

from __future__ import annotations

import json
from pathlib import Path

import hf_checkpoints
import pytest
import torch
from conftest import edit_config
from safetensors.torch import load_file, save_file

from interp_transformer import HookedTransformer
from interp_transformer.loading.integrity import CorruptWeightsError

SHAPES = hf_checkpoints.PARITY_SHAPES["gpt2"]


def make_random_gpt2(make_hf_gpt2, seed: int = 0, **config):
    """A saved HF GPT-2 whose every parameter is non-trivial; -> (hf_model, directory)."""
    config = dict(initializer_range=0.3, attn_implementation="eager") | config
    return make_hf_gpt2(seed=seed, jitter=0.1, **config)


def sample_tokens(n_vocab: int, batch: int = 2, pos: int = 20, seed: int = 2) -> torch.Tensor:
    return torch.randint(0, n_vocab, (batch, pos), generator=torch.Generator().manual_seed(seed))


def assert_max_abs(actual: torch.Tensor, expected: torch.Tensor, atol: float, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != HF {tuple(expected.shape)}"
    error = (actual - expected).abs().max().item()
    assert error <= atol, f"{what}: max-abs difference from Hugging Face is {error:.2e} (> {atol:.0e})"


# Logits, residual streams and attention patterns against Hugging Face: tests/loading/test_hf_parity.py.
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_config_is_converted(make_hf_gpt2, shape):
    hf_model, directory = make_random_gpt2(make_hf_gpt2, **SHAPES[shape])
    hf = hf_model.config
    cfg = HookedTransformer.from_pretrained(directory).cfg
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_head) == (hf.n_layer, hf.n_embd, hf.n_head, hf.n_embd // hf.n_head)
    assert cfg.d_mlp == (hf.n_inner or 4 * hf.n_embd)
    assert (cfg.d_vocab, cfg.n_ctx, cfg.layer_norm_eps) == (hf.vocab_size, hf.n_positions, hf.layer_norm_epsilon)
    assert cfg.act_fn == hf.activation_function
    assert cfg.attn_scale == pytest.approx((hf.n_embd // hf.n_head) ** 0.5 if hf.scale_attn_weights else 1.0)
    assert cfg.original_architecture == "GPT2LMHeadModel" and cfg.model_name == Path(directory).name


def test_left_padded_batch_matches_hugging_face_with_position_ids(make_hf_gpt2):
    hf_model, directory = make_random_gpt2(make_hf_gpt2)
    model = HookedTransformer.from_pretrained(directory).eval()
    tokens = sample_tokens(300, batch=2, pos=12)
    mask = torch.ones_like(tokens)
    mask[1, :5] = 0
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = hf_model(tokens, attention_mask=mask, position_ids=position_ids).logits
        logits = model(tokens, attention_mask=mask)
    real = mask.bool()
    assert_max_abs(logits[real], expected[real], 1e-4, "logits at real positions of a left-padded batch")


# ---------------------------------------------------------------- tokenizer
def test_loads_the_tokenizer_saved_with_the_model(make_hf_gpt2):
    hf_model, directory = make_hf_gpt2(with_tokenizer=True, initializer_range=0.3)
    model = HookedTransformer.from_pretrained(directory).eval()
    assert model.tokenizer is not None
    text = "When Mary and John went to the store"
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    tokens = model.to_tokens(text)
    assert tokens[0].tolist() == [0] + ids
    with torch.no_grad():
        assert_max_abs(model(text), hf_model(tokens).logits, 1e-4, "logits of a string prompt")


def test_without_tokenizer_files_the_model_has_no_tokenizer(make_hf_gpt2):
    _, directory = make_hf_gpt2()
    assert HookedTransformer.from_pretrained(directory).tokenizer is None


# ---------------------------------------------------------- checkpoint formats
# The parity tests above establish that a single model.safetensors converts correctly; a
# checkpoint in another layout must give exactly the same parameters.
def assert_same_parameters(directory: Path, reference_directory: Path) -> None:
    loaded = HookedTransformer.from_pretrained(directory).state_dict()
    reference = HookedTransformer.from_pretrained(reference_directory).state_dict()
    assert loaded.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(loaded[name], tensor), f"{name} differs from the single-file safetensors load"


def test_loads_a_sharded_safetensors_checkpoint(make_hf_gpt2, tmp_path):
    hf_model, directory = make_random_gpt2(make_hf_gpt2, tie_word_embeddings=False)
    sharded = tmp_path / "sharded"
    hf_model.save_pretrained(sharded, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").exists() and not (sharded / "model.safetensors").exists()
    assert len(list(sharded.glob("model-*.safetensors"))) > 2, "the checkpoint should really be sharded"
    assert_same_parameters(sharded, directory)


def pytorch_bin_dir(hf_model, directory: Path) -> Path:
    """The model as a legacy pytorch_model.bin (torch.save of the state dict), with no safetensors."""
    directory.mkdir()
    (directory / "config.json").write_text(hf_model.config.to_json_string())
    torch.save(hf_model.state_dict(), directory / "pytorch_model.bin")
    return directory


@pytest.mark.parametrize("tied", [True, False])
def test_loads_a_torch_save_checkpoint(make_hf_gpt2, tmp_path, tied):
    hf_model, reference = make_random_gpt2(make_hf_gpt2, tie_word_embeddings=tied)
    directory = pytorch_bin_dir(hf_model, tmp_path / "bin")
    assert_same_parameters(directory, reference)


def test_loads_a_sharded_torch_save_checkpoint(make_hf_gpt2, tmp_path):
    hf_model, reference = make_random_gpt2(make_hf_gpt2, tie_word_embeddings=False)
    directory = tmp_path / "bin-sharded"
    directory.mkdir()
    (directory / "config.json").write_text(hf_model.config.to_json_string())
    state = hf_model.state_dict()
    names = sorted(state)
    weight_map = {}
    for index, part in enumerate((names[::2], names[1::2])):
        shard = f"pytorch_model-0000{index + 1}-of-00002.bin"
        torch.save({name: state[name] for name in part}, directory / shard)
        weight_map |= {name: shard for name in part}
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert_same_parameters(directory, reference)


class NotATensor:
    """Unpickling this would run arbitrary code paths; the weights-only loader must refuse it."""


def test_torch_checkpoint_with_arbitrary_objects_is_refused(make_hf_gpt2, tmp_path):
    hf_model, _ = make_hf_gpt2()
    directory = pytorch_bin_dir(hf_model, tmp_path / "bin")
    torch.save({**hf_model.state_dict(), "payload": NotATensor()}, directory / "pytorch_model.bin")
    with pytest.raises(CorruptWeightsError, match="weights_only"):
        HookedTransformer.from_pretrained(directory)


def test_safetensors_preferred_over_pytorch_bin(make_hf_gpt2):
    _, directory = make_hf_gpt2()
    (directory / "pytorch_model.bin").write_bytes(b"not a pickle")  # loading would fail if it were read
    assert HookedTransformer.from_pretrained(directory).cfg.n_layers == 2


def test_directory_without_weights_is_a_clear_error(make_hf_gpt2):
    _, directory = make_hf_gpt2()
    (directory / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights found"):
        HookedTransformer.from_pretrained(directory)


# ------------------------------------------------------------ refused configs

def test_unknown_config_field_is_named_in_the_error(make_hf_gpt2):
    _, directory = make_hf_gpt2()
    edit_config(directory, rotary_dim=8)
    with pytest.raises(ValueError, match="rotary_dim"):
        HookedTransformer.from_pretrained(directory)


@pytest.mark.parametrize("field", ["add_cross_attention", "scale_attn_by_inverse_layer_idx"])
def test_unsupported_gpt2_options_are_refused(make_hf_gpt2, field):
    _, directory = make_hf_gpt2()
    edit_config(directory, **{field: True})
    with pytest.raises(ValueError, match=field):
        HookedTransformer.from_pretrained(directory)


def test_unsupported_activation_is_refused(make_hf_gpt2):
    _, directory = make_hf_gpt2()
    edit_config(directory, activation_function="quick_gelu")
    with pytest.raises(ValueError, match="quick_gelu"):
        HookedTransformer.from_pretrained(directory)


def test_unsupported_architecture_is_refused(make_hf_gpt2):
    _, directory = make_hf_gpt2()
    edit_config(directory, architectures=["BertForMaskedLM"])
    with pytest.raises(ValueError, match="GPT2LMHeadModel"):
        HookedTransformer.from_pretrained(directory)


# ------------------------------------------------------------- broken tensors
def edit_weights(directory: Path, edit) -> None:
    path = directory / "model.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, path)


def test_missing_tensor_is_named_in_the_error(make_hf_gpt2):
    _, directory = make_hf_gpt2()
    edit_weights(directory, lambda state: state.pop("transformer.h.1.mlp.c_fc.bias"))
    with pytest.raises(KeyError, match="h.1.mlp.c_fc.bias"):
        HookedTransformer.from_pretrained(directory)


def test_misshaped_tensor_is_named_with_both_shapes(make_hf_gpt2):
    _, directory = make_hf_gpt2()
    edit_weights(directory, lambda state: state.update({"transformer.h.0.attn.c_attn.weight": torch.zeros(32, 64)}))
    with pytest.raises(ValueError, match=r"h\.0\.attn\.c_attn\.weight.*\(32, 64\).*\(32, 96\)"):
        HookedTransformer.from_pretrained(directory)


def test_unexpected_tensor_is_refused(make_hf_gpt2):
    _, directory = make_hf_gpt2()
    edit_weights(directory, lambda state: state.update({"transformer.h.0.attn.rotary.inv_freq": torch.zeros(4)}))
    with pytest.raises(ValueError, match="rotary.inv_freq"):
        HookedTransformer.from_pretrained(directory)


# ---------------------------------------------------------------- dtype
def test_from_pretrained_with_bfloat16(make_hf_gpt2):
    hf_model, directory = make_random_gpt2(make_hf_gpt2)
    model = HookedTransformer.from_pretrained(directory, dtype=torch.bfloat16).eval()
    assert model.cfg.dtype == torch.bfloat16
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    by_name = HookedTransformer.from_pretrained(directory, dtype="bfloat16")
    assert {p.dtype for p in by_name.parameters()} == {torch.bfloat16}
    tokens = sample_tokens(300)
    with torch.no_grad():
        logits, expected = model(tokens), hf_model(tokens).logits
    assert logits.dtype == torch.bfloat16
    # bfloat16 keeps ~3 significant digits: close to float32, not equal.
    relative = (logits.float() - expected).norm() / expected.norm()
    assert relative < 0.05, f"bfloat16 logits are {relative:.1%} away from float32"
