"""train_transcoder: input and target rows stay paired, and training learns the MLP it replaces."""

from __future__ import annotations

import pytest
import torch

from interp_transformer import HookedTransformer
from interp_transformer.sae import Transcoder
from interp_transformer.sae.transcoder_training import paired_batches, train_transcoder
from interp_transformer.store import ActivationStore, cache_dataset
from interp_transformer.toy import modadd

MODEL = "modadd-1l"  # the one embedded model with an MLP: one layer, no LayerNorm, so the MLP reads resid_mid as it is
HOOK_IN, HOOK_OUT = "blocks.0.hook_resid_mid", "blocks.0.hook_mlp_out"


@pytest.fixture(scope="module")
def mlp_store(tmp_path_factory):
    model = HookedTransformer.from_pretrained(MODEL).eval()
    tokens = modadd.all_pairs()[:1024, :3]  # `a b =` over train and held-out pairs alike: 3,072 rows per hook
    out = tmp_path_factory.mktemp("mlp_store")
    cache_dataset(model, tokens, [HOOK_IN, HOOK_OUT], out, progress=False, sequences_per_shard=256)
    return model, out


def test_paired_rows_are_the_same_positions(mlp_store):
    model, store = mlp_store
    x, y = next(paired_batches(ActivationStore(store), HOOK_IN, HOOK_OUT, batch_size=300, buffer_size=512, seed=3))
    with torch.no_grad():
        expected = model.blocks[0].mlp(x)
    torch.testing.assert_close(y, expected, atol=1e-4, rtol=1e-4,
                               msg="the target rows are not the MLP outputs of the input rows: the two streams lost step")


def test_training_learns_the_mlp_and_logs_explained_variance_of_the_target(mlp_store):
    model, store = mlp_store
    logs = []
    transcoder = train_transcoder(store, HOOK_IN, HOOK_OUT, d_sae=256, k=16, steps=200, batch_size=256, lr=3e-3,
                                  buffer_size=1024, seed=0, progress=False, log=logs.append, log_every=50)
    assert isinstance(transcoder, Transcoder) and transcoder.cfg.hook_name == HOOK_IN and transcoder.cfg.hook_name_out == HOOK_OUT
    assert transcoder.cfg.model_name == MODEL and transcoder.W_dec.shape == (256, model.cfg.d_model)
    x, y = next(paired_batches(ActivationStore(store), HOOK_IN, HOOK_OUT, batch_size=1024, buffer_size=1024, seed=9))
    with torch.no_grad():
        y_hat = (torch.relu((x @ transcoder.W_enc + transcoder.b_enc).topk(16, dim=-1).values)[..., None]
                 * transcoder.W_dec[(x @ transcoder.W_enc + transcoder.b_enc).topk(16, dim=-1).indices]).sum(-2) + transcoder.b_dec
        explained = 1 - (y - y_hat).pow(2).sum() / (y - y.mean(0)).pow(2).sum()
        untrained = Transcoder(transcoder.cfg, seed=0)
        untrained.b_dec.copy_(y.mean(0))
        baseline = 1 - (y - untrained(x)).pow(2).sum() / (y - y.mean(0)).pow(2).sum()
    assert explained > 0.6 and explained > baseline + 0.4, f"the transcoder explains {explained:.3f} of the MLP output (untrained {baseline:.3f})"
    assert logs[-1]["step"] == 200 and logs[-1]["l0"] == pytest.approx(16)
    assert abs(logs[-1]["explained_variance"] - float(explained)) < 0.15, "the logged explained variance is not the target's"


def test_bad_settings_name_what_to_change(mlp_store):
    _, store = mlp_store
    with pytest.raises(ValueError, match="resample_every"):
        train_transcoder(store, HOOK_IN, HOOK_OUT, d_sae=64, k=4, steps=1, resample_every=10, progress=False)
    with pytest.raises(ValueError, match="train_sae"):
        train_transcoder(store, HOOK_IN, HOOK_IN, d_sae=64, k=4, steps=1, progress=False)
    with pytest.raises(KeyError, match="blocks.0.hook_attn_out"):
        train_transcoder(store, HOOK_IN, "blocks.0.hook_attn_out", d_sae=64, k=4, steps=1, progress=False)
