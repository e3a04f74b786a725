"""train_sae on the embedded induction model's residual stream: it learns, TopK's L0 is k, and bad input is named."""

from __future__ import annotations

import pytest
import torch
from training_helpers import RESID, cache_induction_store

from interp_transformer.sae import SAEConfig
from interp_transformer.sae.training import train_sae
from interp_transformer.store import ActivationStore

FAST = dict(steps=150, batch_size=256, lr=1e-3, buffer_size=4096, log_every=25, progress=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ActivationStore:
    return ActivationStore(cache_induction_store(tmp_path_factory.mktemp("store") / "s", hooks=[RESID, "blocks.0.hook_attn_out"]))


def _held_out_rows(store: ActivationStore) -> torch.Tensor:
    """Rows read straight from the store (not through the training buffer)."""
    return store.rows(0, 64)[RESID].reshape(-1, store.cfg.d_model).float()


def _explained_variance(x: torch.Tensor, recons: torch.Tensor) -> float:
    return float(1 - (x - recons).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def test_topk_learns_and_its_l0_is_k(store):
    logs = []
    sae = train_sae(store, RESID, d_sae=256, architecture="topk", k=8, log=logs.append, **FAST)
    assert [entry["step"] for entry in logs] == [25, 50, 75, 100, 125, 150]
    assert logs[-1]["mse"] < 0.7 * logs[0]["mse"], f"the reconstruction error did not fall: {[round(e['mse'], 3) for e in logs]}"
    assert logs[-1]["explained_variance"] > logs[0]["explained_variance"]
    x = _held_out_rows(store)
    with torch.no_grad():
        acts = sae.encode(x)
        ev = _explained_variance(x, acts @ sae.W_dec + sae.b_dec)
    assert ev > 0.6, f"explained variance {ev:.3f} on stored rows after 150 steps; it reaches ~0.66 when training works"
    active = (acts != 0).sum(-1)
    assert int(active.max()) <= 8 and float(active.float().mean()) > 7.9, f"TopK(k=8) gave {active.float().mean():.2f} active features per row"
    assert all(entry["l0"] == pytest.approx(8, abs=0.05) for entry in logs), f"logged L0 {[e['l0'] for e in logs]}, not k=8"
    assert sae.cfg.hook_name == RESID and sae.cfg.model_name == "attn-only-2l-induction" and not sae.training


def test_standard_trades_error_for_sparsity_with_the_l1_coefficient(store):
    def final(l1):
        logs = []
        sae = train_sae(store, RESID, d_sae=128, architecture="standard", l1_coefficient=l1, log=logs.append, **FAST)
        return logs[-1], sae

    weak, sae = final(0.02)
    strong, _ = final(0.5)
    assert _only_the_l1_term_is_added(weak) and strong["l0"] < 0.5 * weak["l0"], f"L0 {strong['l0']:.1f} (l1=0.5) vs {weak['l0']:.1f} (l1=0.02): the penalty does not sparsify"
    assert strong["mse"] > weak["mse"] and weak["explained_variance"] > 0.8
    x = _held_out_rows(store)
    with torch.no_grad():  # the logged L0 is what the returned dictionary does on the data
        l0 = float((sae.encode(x) > 0).sum(-1).float().mean())
    assert l0 == pytest.approx(weak["l0"], rel=0.25)


def _only_the_l1_term_is_added(entry) -> bool:
    return entry["loss"] > 0 and entry["sparsity_loss"] > 0 and entry["aux_loss"] == 0


def test_normalize_decoder_keeps_unit_rows_and_a_config_is_used_as_given(store):
    cfg = SAEConfig(d_in=64, d_sae=96, architecture="batchtopk", k=4, normalize_decoder=True, apply_b_dec_to_input=True)
    sae = train_sae(store, "blocks.0.hook_attn_out", cfg, **{**FAST, "steps": 20})
    norms = sae.W_dec.norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5), f"decoder row norms {norms.min():.4f}..{norms.max():.4f}, not 1"
    assert sae.cfg == cfg.replace(hook_name="blocks.0.hook_attn_out"), "the trained dictionary must have the config asked for"
    assert float(sae.topk_threshold) > 0, "BatchTopK must learn the threshold it is saved with"


def test_bad_input_names_what_to_change(store, tmp_path):
    with pytest.raises(KeyError, match=r"no activations for hook 'blocks.1.hook_mlp_out'.*holds \['blocks.0.hook_attn_out', 'blocks.1.hook_resid_pre'\]"):
        train_sae(store, "blocks.1.hook_mlp_out", d_sae=64, k=4)
    with pytest.raises(ValueError, match=r"d_in=32, but 'blocks.1.hook_resid_pre' .* has width 64; set d_in=64"):
        train_sae(store, RESID, SAEConfig(d_in=32, d_sae=64))
    with pytest.raises(ValueError, match="the config reads 'blocks.0.hook_attn_out' but training reads"):
        train_sae(store, RESID, SAEConfig(d_in=64, d_sae=64, hook_name="blocks.0.hook_attn_out"))
    with pytest.raises(ValueError, match="pass either config or d_sae/architecture/k, not both"):
        train_sae(store, RESID, SAEConfig(d_in=64, d_sae=64), architecture="standard")
    with pytest.raises(ValueError, match=r"pass d_sae .*e.g. 512"):
        train_sae(store, RESID, k=4)
    with pytest.raises(ValueError, match=r"'jumprelu' is not supported; use one of \['standard', 'topk', 'batchtopk'\]"):
        train_sae(store, RESID, d_sae=64, architecture="jumprelu")
    with pytest.raises(ValueError, match="transcoder"):
        train_sae(store, RESID, SAEConfig(d_in=64, d_sae=64, hook_name_out="blocks.1.hook_mlp_out", d_out=64))
    with pytest.raises(TypeError, match=r"unknown settings \['learning_rate'\]; the settings are \['steps', 'batch_size', 'lr'"):
        train_sae(store, RESID, d_sae=64, k=4, learning_rate=1e-3)
    with pytest.raises(ValueError, match="batch_size must be an int of at least 1, got 0"):
        train_sae(store, RESID, d_sae=64, k=4, batch_size=0)
    with pytest.raises(ValueError, match="precision 'fp8' is not supported"):
        train_sae(store, RESID, d_sae=64, k=4, precision="fp8")
    with pytest.raises(FileNotFoundError, match="no activation store at"):
        train_sae(tmp_path / "nothing", RESID, d_sae=64, k=4)


def test_bfloat16_autocast_trains_float32_weights(store):
    logs = []
    sae = train_sae(store, RESID, d_sae=256, k=8, precision="bfloat16", log=logs.append, **{**FAST, "steps": 100})
    assert sae.W_enc.dtype == torch.float32, "bfloat16 precision autocasts the matmuls; weights and Adam stay float32"
    assert logs[-1]["explained_variance"] > logs[0]["explained_variance"] + 0.1, f"bfloat16 run did not learn: {[round(e['explained_variance'], 3) for e in logs]}"


def test_the_progress_bar_shows_the_metrics(store, capsys):
    train_sae(store, RESID, d_sae=64, k=4, **{**FAST, "steps": 10, "log_every": 5, "progress": True})
    bar = capsys.readouterr().err
    assert "training SAE on blocks.1.hook_resid_pre" in bar and "10/10" in bar, f"no progress bar on stderr: {bar[-300:]!r}"
    assert all(f"{name}=" in bar for name in ("mse", "l0", "ev", "dead")), f"the bar does not show the metrics: {bar[-300:]!r}"
