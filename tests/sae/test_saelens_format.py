"""SAELens's on-disk format, with folders written by hand: both cfg.json layouts, exact tensor names, bad files."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from interp_transformer.sae import SAEConfig, SparseAutoencoder, Transcoder, load_dictionary

from sae_dense_math import dense_decode, dense_features

D_IN, D_SAE = 8, 24


def weights(d_out=D_IN, threshold=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    tensors = {
        "W_enc": torch.randn(D_IN, D_SAE, generator=g),
        "b_enc": torch.randn(D_SAE, generator=g) * 0.1,
        "W_dec": torch.randn(D_SAE, d_out, generator=g),
        "b_dec": torch.randn(d_out, generator=g) * 0.1,
    }
    if threshold:
        tensors["threshold"] = torch.rand(D_SAE, generator=g) * 0.5
    return tensors


def write_folder(folder, cfg: dict, tensors: dict):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    return folder


def saelens6_cfg(architecture="standard", **extra):
    """What SAELens 6.x's SAE.save_model writes (cfg.to_dict(): dataclass fields + metadata + architecture)."""
    cfg = {
        "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
        "normalize_activations": "none", "reshape_activations": "none",
        "metadata": {"sae_lens_version": "6.5.0", "sae_lens_training_version": "6.5.0",
                     "model_name": "gpt2", "hook_name": "blocks.3.hook_resid_pre", "prepend_bos": True},
        "architecture": architecture,
    }
    cfg.update(extra)
    return cfg


X = torch.randn(5, D_IN, generator=torch.Generator().manual_seed(9))


@pytest.mark.parametrize(
    ("architecture", "extra", "tensors_kw", "k"),
    [("standard", {}, {}, None), ("jumprelu", {}, {"threshold": True}, None),
     ("topk", {"k": 3, "rescale_acts_by_decoder_norm": False}, {}, 3)],
)
def test_a_saelens6_folder_loads_with_the_activations_of_the_dense_formula(tmp_path, architecture, extra, tensors_kw, k):
    tensors = weights(**tensors_kw)
    folder = write_folder(tmp_path / "sae", saelens6_cfg(architecture, **extra), tensors)
    sae = SparseAutoencoder.load(folder)
    assert sae.cfg.hook_name == "blocks.3.hook_resid_pre" and sae.cfg.model_name == "gpt2" and sae.cfg.k == k
    expected = dense_features(X, tensors["W_enc"], tensors["b_enc"], tensors["b_dec"], architecture, k, tensors.get("threshold"))
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(X), expected, msg=f"{architecture} activations differ from SAELens's formula")
        torch.testing.assert_close(sae(X), dense_decode(expected, tensors["W_dec"], tensors["b_dec"]))


def test_a_pre_6_folder_loads_with_top_level_hook_point_and_topk_activation_kwargs(tmp_path):
    tensors = weights()
    old = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "torch.float32", "device": "cpu", "model_name": "gpt2-small",
           "hook_point": "blocks.2.hook_resid_post", "hook_point_layer": 2, "activation_fn_str": "topk",
           "activation_fn_kwargs": {"k": 4}, "apply_b_dec_to_input": False, "normalize_activations": False,
           "sae_lens_training_version": "3.12.0"}
    sae = load_dictionary(write_folder(tmp_path / "old", old, tensors))
    assert (sae.cfg.architecture, sae.cfg.k, sae.cfg.hook_name, sae.cfg.apply_b_dec_to_input) == (
        "topk", 4, "blocks.2.hook_resid_post", False), "the old layout's hook_point / activation_fn_kwargs were misread"
    expected = dense_features(X, tensors["W_enc"], tensors["b_enc"], None, "topk", 4)
    torch.testing.assert_close(sae.encode(X).detach(), expected)


def test_old_standard_layout_defaults_apply_b_dec_to_input_like_saelens(tmp_path):
    old = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "hook_name": "blocks.0.hook_resid_pre", "model_name": "gpt2"}
    sae = load_dictionary(write_folder(tmp_path / "old", old, weights()))
    assert sae.cfg.architecture == "standard" and sae.cfg.apply_b_dec_to_input, (
        "SAELens defaults apply_b_dec_to_input to True for pre-6 configs that do not say"
    )


def test_topk_rescaled_by_decoder_norm_is_folded_to_the_same_features(tmp_path):
    tensors = weights()
    folder = write_folder(tmp_path / "r", saelens6_cfg("topk", k=3, rescale_acts_by_decoder_norm=True), tensors)
    sae = load_dictionary(folder)
    norms = tensors["W_dec"].norm(dim=-1)
    pre = (X - tensors["b_dec"]) @ tensors["W_enc"] + tensors["b_enc"]
    expected = dense_features(X, tensors["W_enc"] * norms, tensors["b_enc"] * norms, tensors["b_dec"], "topk", 3)
    # SAELens: topk of (pre * norm), then decode (acts / norm) @ W_dec + b_dec.
    recons = (expected / norms) @ tensors["W_dec"] + tensors["b_dec"]
    assert pre.shape == expected.shape
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(X), expected)
        torch.testing.assert_close(sae(X), recons)


def test_a_saelens_transcoder_folder_loads_as_a_transcoder(tmp_path):
    tensors = weights(d_out=12, threshold=True)
    cfg = saelens6_cfg("jumprelu_transcoder", d_out=12, apply_b_dec_to_input=False)
    cfg["metadata"]["hook_name"], cfg["metadata"]["hook_name_out"] = "blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out"
    tc = load_dictionary(write_folder(tmp_path / "tc", cfg, tensors))
    assert isinstance(tc, Transcoder) and tc.cfg.hook_name_out == "blocks.1.hook_mlp_out" and tc.cfg.d_out == 12
    expected = dense_features(X, tensors["W_enc"], tensors["b_enc"], None, "jumprelu", threshold=tensors["threshold"])
    torch.testing.assert_close(tc(X).detach(), dense_decode(expected, tensors["W_dec"], tensors["b_dec"]))


@pytest.mark.parametrize("architecture", ["standard", "topk", "jumprelu"])
def test_save_writes_exactly_the_saelens6_layout_and_loads_back(tmp_path, architecture):
    k = 3 if architecture == "topk" else None
    sae = SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture=architecture, k=k, apply_b_dec_to_input=True,
                                      hook_name="blocks.0.hook_resid_pre", model_name="tiny"), seed=3)
    sae.save(tmp_path / "out")
    cfg = json.loads((tmp_path / "out" / "cfg.json").read_text())
    assert cfg["architecture"] == architecture and cfg["d_in"] == D_IN and cfg["d_sae"] == D_SAE
    assert cfg["dtype"] == "float32" and cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    assert cfg["metadata"]["hook_name"] == "blocks.0.hook_resid_pre" and cfg["metadata"]["model_name"] == "tiny"
    assert int(cfg["metadata"]["sae_lens_version"].split(".")[0]) >= 6, "SAELens reads configs below 6.0 as the old layout"
    if architecture == "topk":
        assert cfg["k"] == 3 and cfg["rescale_acts_by_decoder_norm"] is False
    stored = load_file(str(tmp_path / "out" / "sae_weights.safetensors"))
    expected_names = {"W_enc", "b_enc", "W_dec", "b_dec"} | ({"threshold"} if architecture == "jumprelu" else set())
    assert set(stored) == expected_names, f"tensor names must be SAELens's, got {sorted(stored)}"
    assert tuple(stored["W_enc"].shape) == (D_IN, D_SAE) and tuple(stored["W_dec"].shape) == (D_SAE, D_IN)
    again = SparseAutoencoder.load(tmp_path / "out")
    torch.testing.assert_close(again(X).detach(), sae(X).detach())


def test_batchtopk_is_saved_as_saelens_saves_it_a_jumprelu_with_the_learned_threshold(tmp_path):
    sae = SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="batchtopk", k=3), seed=0)
    with pytest.raises(ValueError, match="topk_threshold"):
        sae.save(tmp_path / "untrained")
    sae.topk_threshold.fill_(0.25)
    sae.save(tmp_path / "b")
    cfg = json.loads((tmp_path / "b" / "cfg.json").read_text())
    stored = load_file(str(tmp_path / "b" / "sae_weights.safetensors"))
    assert cfg["architecture"] == "jumprelu" and "k" not in cfg
    torch.testing.assert_close(stored["threshold"], torch.full((D_SAE,), 0.25))


def test_loading_never_unpickles(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "sae", saelens6_cfg(), weights())

    def refuse(*args, **kwargs):
        raise AssertionError("loading a dictionary must not unpickle anything")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    SparseAutoencoder.load(folder)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("corrupt", "error", "message"),
    [
        (lambda f: (f / "cfg.json").write_text('{"d_in": 8, "d_sae": '), ValueError, "not valid JSON.*corrupted"),
        (lambda f: (f / "cfg.json").write_text("[1, 2]"), ValueError, "JSON object"),
        (lambda f: (f / "cfg.json").write_text(json.dumps(saelens6_cfg("gated"))), ValueError, "architecture 'gated'"),
        (lambda f: (f / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": 8})), ValueError, "no 'd_sae'"),
        (lambda f: (f / "cfg.json").write_text(json.dumps(saelens6_cfg(d_in=9))), ValueError, "W_enc has shape .*needs"),
        (lambda f: (f / "cfg.json").write_text(json.dumps(saelens6_cfg(d_sae=-1))), ValueError, "d_sae must be a positive"),
        (lambda f: (f / "cfg.json").write_text(json.dumps(saelens6_cfg(normalize_activations="layer_norm"))),
         ValueError, "normalize_activations='layer_norm' is not supported"),
        (lambda f: (f / "cfg.json").write_text(json.dumps(saelens6_cfg("jumprelu"))), ValueError, r"lacks the tensors \['threshold'\]"),
        (lambda f: (f / "sae_weights.safetensors").write_bytes(b"garbage"), ValueError, "not a readable safetensors"),
        (lambda f: (f / "cfg.json").unlink(), FileNotFoundError, "cfg.json"),
    ],
)
def test_a_broken_folder_is_a_clear_error(tmp_path, corrupt, error, message):
    folder = write_folder(tmp_path / "sae", saelens6_cfg(), weights())
    corrupt(folder)
    with pytest.raises(error, match=message):
        load_dictionary(folder)


def test_extra_tensors_are_refused_not_ignored(tmp_path):
    tensors = weights() | {"W_skip": torch.zeros(D_IN, D_IN)}
    with pytest.raises(ValueError, match=r"\['W_skip'\].*does not use"):
        load_dictionary(write_folder(tmp_path / "sae", saelens6_cfg(), tensors))


def test_a_hook_z_folder_reads_heads_flattened(tmp_path):
    tensors = weights()
    sae = load_dictionary(write_folder(tmp_path / "z", saelens6_cfg(reshape_activations="hook_z"), tensors))
    z = X[:4].reshape(4, 2, 4)  # [pos head_index d_head] with d_in = 2 * 4
    expected = dense_features(z.reshape(4, 8), tensors["W_enc"], tensors["b_enc"], tensors["b_dec"])
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(z), expected)
        assert sae(z).shape == z.shape, "the reconstruction of a hook_z activation keeps its head axes"
    sae.save(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "cfg.json").read_text())["reshape_activations"] == "hook_z"


def test_load_casts_to_the_asked_dtype_and_a_transcoder_load_refuses_an_sae(tmp_path):
    folder = write_folder(tmp_path / "sae", saelens6_cfg(), weights())
    sae = SparseAutoencoder.load(folder, dtype=torch.float64)
    assert sae.W_enc.dtype == torch.float64 and sae.cfg.dtype == torch.float64
    with pytest.raises(ValueError, match="holds an SAE, not a Transcoder"):
        Transcoder.load(folder)
