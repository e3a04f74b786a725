"""Round trips through SAELens itself (opt-in: ``pytest -m reference tests/sae``; needs sae-lens installed).

A dictionary saved by SAELens loads here with the same activations; one saved here loads in SAELens
with the same activations. The default tests build SAELens-format folders by hand instead.
"""

from __future__ import annotations

import pytest
import torch

from interp_transformer.sae import SAEConfig, SparseAutoencoder, Transcoder

pytestmark = pytest.mark.reference


@pytest.fixture(autouse=True)
def _needs_sae_lens():
    """Skip only when these tests are asked for (-m reference) and SAELens is missing; never at collection."""
    pytest.importorskip("sae_lens")

D_IN, D_SAE = 16, 48
X = torch.randn(4, 6, D_IN, generator=torch.Generator().manual_seed(0))


def _randomize(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            values = torch.rand(param.shape, generator=g) * 0.3 if name == "threshold" else torch.randn(param.shape, generator=g) * 0.3
            param.copy_(values)


def _saelens(architecture, **fields):
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
    from sae_lens.saes.transcoder import JumpReLUTranscoder, JumpReLUTranscoderConfig

    classes = {"standard": (StandardSAE, StandardSAEConfig), "topk": (TopKSAE, TopKSAEConfig),
               "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig), "jumprelu_transcoder": (JumpReLUTranscoder, JumpReLUTranscoderConfig)}
    sae_cls, cfg_cls = classes[architecture]
    cfg = cfg_cls(d_in=D_IN, d_sae=D_SAE, **fields)
    cfg.metadata.hook_name = "blocks.0.hook_resid_pre" if "transcoder" not in architecture else "blocks.0.ln2.hook_normalized"
    cfg.metadata.model_name = "tiny"
    if "transcoder" in architecture:
        cfg.metadata.hook_name_out = "blocks.0.hook_mlp_out"
    sae = sae_cls(cfg)
    _randomize(sae, seed=1)
    return sae


@pytest.mark.parametrize(
    ("architecture", "fields"),
    [("standard", {}), ("standard", {"apply_b_dec_to_input": False}), ("topk", {"k": 5}),
     ("topk", {"k": 5, "rescale_acts_by_decoder_norm": True}), ("jumprelu", {}),
     ("jumprelu_transcoder", {"d_out": 20, "apply_b_dec_to_input": False})],
)
def test_saved_by_saelens_loads_here_with_the_same_activations(tmp_path, architecture, fields):
    theirs = _saelens(architecture, **fields)
    theirs.save_model(tmp_path / "sae")
    ours = SparseAutoencoder.load(tmp_path / "sae")
    assert isinstance(ours, Transcoder) == ("transcoder" in architecture)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(X), theirs.encode(X), msg=f"{architecture}: features differ from SAELens")
        torch.testing.assert_close(ours(X), theirs(X), msg=f"{architecture}: reconstructions differ from SAELens")
    assert ours.cfg.hook_name == theirs.cfg.metadata.hook_name


@pytest.mark.parametrize(
    ("architecture", "fields"),
    [("standard", {"apply_b_dec_to_input": True}), ("topk", {"k": 5}), ("jumprelu", {}), ("batchtopk", {"k": 5})],
)
def test_saved_here_loads_in_saelens_with_the_same_activations(tmp_path, architecture, fields):
    from sae_lens import SAE

    ours = SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture=architecture, hook_name="blocks.0.hook_resid_pre",
                                       model_name="tiny", **fields))
    _randomize(ours, seed=2)
    if architecture == "batchtopk":
        ours.topk_threshold.fill_(0.4)
        ours = SparseAutoencoder.load(ours.save(tmp_path / "bt"))  # as SAELens: a JumpReLU with the learned threshold
    ours.save(tmp_path / "sae")
    theirs = SAE.load_from_disk(tmp_path / "sae")
    assert theirs.cfg.metadata.hook_name == "blocks.0.hook_resid_pre"
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(X), ours.encode(X), msg=f"{architecture}: SAELens reads different features")
        torch.testing.assert_close(theirs(X), ours(X))


def test_transcoder_saved_here_loads_in_saelens(tmp_path):
    from sae_lens import SAE

    cfg = SAEConfig(d_in=D_IN, d_sae=D_SAE, d_out=20, architecture="jumprelu", hook_name="blocks.0.ln2.hook_normalized",
                    hook_name_out="blocks.0.hook_mlp_out")
    ours = Transcoder(cfg)
    _randomize(ours, seed=3)
    ours.save(tmp_path / "tc")
    theirs = SAE.load_from_disk(tmp_path / "tc")
    assert type(theirs).__name__ == "JumpReLUTranscoder" and theirs.cfg.metadata.hook_name_out == "blocks.0.hook_mlp_out"
    with torch.no_grad():
        torch.testing.assert_close(theirs(X), ours(X))


def test_a_saelens_hook_z_sae_reads_heads_flattened_here_too(tmp_path):
    from sae_lens import StandardSAE, StandardSAEConfig

    cfg = StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, reshape_activations="hook_z")
    cfg.metadata.hook_name = "blocks.0.attn.hook_z"
    theirs = StandardSAE(cfg)
    _randomize(theirs, seed=4)
    theirs.save_model(tmp_path / "z")
    ours = SparseAutoencoder.load(tmp_path / "z")
    z = X.reshape(4, 6, 4, 4)  # [batch pos head_index d_head], d_in = 4 * 4
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(z), theirs.encode(z))
        torch.testing.assert_close(ours(z), theirs(z), msg="a hook_z SAE must give back [... head_index d_head]")


@pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated:DeprecationWarning")
def test_splicing_matches_saelens_hooked_sae_transformer(tmp_path):
    """The same random GPT-2 in both libraries, the same SAE: same spliced logits, same cache names and features."""
    import hf_checkpoints
    from sae_lens import HookedSAETransformer
    from transformer_lens import loading_from_pretrained as tl_loading

    from interp_transformer import HookedTransformer
    from interp_transformer.sae import run_with_saes, splice

    directory = tmp_path / "gpt2"
    hf_model = hf_checkpoints.save_random_checkpoint("gpt2", directory)
    ours = HookedTransformer.from_pretrained(directory).eval()
    cfg = tl_loading.get_pretrained_model_config(str(directory), fold_ln=False, device="cpu", dtype=torch.float32)
    cfg.tokenizer_name = None
    theirs = HookedSAETransformer(cfg, move_to_device=False)
    theirs.load_and_process_state_dict(
        tl_loading.get_pretrained_state_dict(str(directory), cfg, hf_model=hf_model), fold_ln=False,
        center_writing_weights=False, center_unembed=False, fold_value_biases=False, refactor_factored_attn_matrices=False,
    )
    theirs.eval()
    from sae_lens import StandardSAE, StandardSAEConfig

    their_sae = StandardSAE(StandardSAEConfig(d_in=ours.cfg.d_model, d_sae=D_SAE, apply_b_dec_to_input=True))
    their_sae.cfg.metadata.hook_name = "blocks.1.hook_resid_pre"
    _randomize(their_sae, seed=5)
    their_sae.save_model(tmp_path / "sae")
    our_sae = SparseAutoencoder.load(tmp_path / "sae")
    tokens = torch.randint(0, 300, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs.run_with_saes(tokens, saes=[their_sae])
        torch.testing.assert_close(run_with_saes(ours, tokens, saes=our_sae), expected, atol=1e-4, rtol=1e-4)
        _, their_cache = theirs.run_with_cache_with_saes(tokens, saes=[their_sae], use_error_term=True)
        with splice(ours, our_sae, include_error=True):
            _, our_cache = ours.run_with_cache(tokens, names_filter=lambda name: "hook_sae" in name)
    their_names = {name for name in their_cache.keys() if "hook_sae" in name}
    assert set(our_cache.keys()) == their_names, f"hook names differ from SAELens's: {sorted(their_names ^ set(our_cache.keys()))}"
    for name in their_names:
        torch.testing.assert_close(our_cache[name], their_cache[name], atol=1e-4, rtol=1e-4, msg=f"{name} differs from SAELens")
