"""Round trips through SAELens itself (opt-in: ``pytest -m reference tests/sae``; needs sae-lens installed).

A dictionary saved by SAELens loads here with the same activations; one saved here loads in SAELens
with the same activations. The default tests build SAELens-format folders by hand instead.
"""

from __future__ import annotations

import pytest
import torch

from interp_transformer.sae import SAEConfig, SparseAutoencoder, Transcoder

pytestmark = pytest.mark.reference
sae_lens = pytest.importorskip("sae_lens")

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
