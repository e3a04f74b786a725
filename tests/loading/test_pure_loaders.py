"""Loaders are pure functions: ``load_weights`` returns ``(cfg, state_dict, tokenizer)`` and builds no model;
``from_pretrained`` builds ``cls(cfg)`` from it. The declarative name maps against Hugging Face's own tensors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from interp_transformer import HookedTransformer, TransformerConfig
from interp_transformer.loading import PretrainedWeights, load_weights
from interp_transformer.loading.conversion import From, _shape, axis_sizes

LOADING_DIR = Path(__file__).resolve().parents[2] / "interp_transformer" / "loading"


def test_load_weights_returns_config_state_and_tokenizer_without_building_a_model(make_hf_gpt2, monkeypatch):
    hf_model, directory = make_hf_gpt2(with_tokenizer=True, jitter=0.1)
    monkeypatch.setattr(HookedTransformer, "__init__", _refuse_to_build)
    cfg, state, tokenizer = load_weights(directory)
    assert isinstance(cfg, TransformerConfig) and tokenizer is not None
    monkeypatch.undo()
    assert state.keys() == HookedTransformer(cfg).state_dict().keys(), "the state dict must hold exactly the model's parameters"
    hf = hf_model.state_dict()
    # Independent of our name map: Hugging Face's fused c_attn columns are q | k | v, head after head.
    q_columns = hf["transformer.h.1.attn.c_attn.weight"][:, : cfg.d_model]
    torch.testing.assert_close(state["blocks.1.attn.W_Q"][2], q_columns[:, 2 * cfg.d_head : 3 * cfg.d_head], msg="head 2's W_Q")
    torch.testing.assert_close(state["unembed.W_U"], hf["lm_head.weight"].T, msg="GPT-2's unembedding is the tied lm_head")
    assert not state["unembed.b_U"].any(), "GPT-2 has no unembedding bias: b_U must be zero"


def _refuse_to_build(self, *args, **kwargs):
    raise AssertionError("load_weights built a model: loaders must return (cfg, state_dict, tokenizer) only")


def test_from_pretrained_is_cls_of_the_loaded_config_with_the_loaded_state(make_hf_gpt2):
    _, directory = make_hf_gpt2(jitter=0.1)
    loaded = load_weights(directory, dtype="float64")
    assert isinstance(loaded, PretrainedWeights) and loaded.cfg.dtype == torch.float64
    assert all(tensor.dtype == torch.float64 for tensor in loaded.state_dict.values()), "dtype= must cast the state too"
    model = HookedTransformer.from_pretrained(directory, dtype="float64")
    assert model.cfg == loaded.cfg
    for name, tensor in loaded.state_dict.items():
        assert torch.equal(model.state_dict()[name], tensor), f"from_pretrained changed {name} on its way into the model"


def test_no_loading_module_imports_the_model_at_import_time():
    # The model imports the loaders; the loaders must not import the model back (that was the cycle).
    for path in sorted(LOADING_DIR.glob("*.py")):
        for node in ast.parse(path.read_text()).body:  # top level only: an import inside a function runs on call
            if isinstance(node, ast.ImportFrom) and node.module == "interp_transformer.model":
                pytest.fail(f"loading/{path.name} imports interp_transformer.model at import time")


def test_name_map_shapes_are_read_in_dimension_words():
    cfg = TransformerConfig(d_model=8, n_heads=2, d_head=4, d_mlp=16, d_vocab=10, n_ctx=6, n_key_value_heads=1)
    sizes = axis_sizes(cfg)
    assert _shape("(head_index d_head) d_model", sizes) == (8, 8)
    assert _shape("(kv_head d_head) d_model", sizes) == (4, 8), "kv_head counts key/value heads"
    assert _shape("d_model (qkv head_index d_head)", sizes) == (8, 24)
    assert From("x", "d_mlp").part is None


def test_an_unused_checkpoint_tensor_is_refused_by_name(make_hf_gpt2):
    from safetensors.torch import load_file, save_file

    _, directory = make_hf_gpt2()
    weights = load_file(directory / "model.safetensors")
    weights["transformer.h.0.attn.extra_gate"] = torch.zeros(3)
    save_file(weights, directory / "model.safetensors")
    with pytest.raises(ValueError, match=r"does not understand: \['h.0.attn.extra_gate'\]"):
        load_weights(directory)
