"""Our ActivationCache analyses against TransformerLens's on identical tiny models (needs transformer-lens installed).

Builds small models (LN / LNPre, with and without MLPs) with random biases and LayerNorm
weights, copies the weights into TransformerLens's ``HookedTransformer``, and compares every
analysis with its labels, for several ``layer`` / ``mlp_input`` / ``apply_ln`` / ``pos_slice``
settings. Known, deliberate differences are skipped and listed at the end. Exits non-zero on
any mismatch.

    python benchmarks/cache_tl_parity.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from interp_transformer import HookedTransformer, TransformerConfig  # noqa: E402

KNOWN_DIFFERENCES = [
    "logit_attrs with [batch] tokens on a [component batch pos d_model] stack: ours applies each prompt's token at every "
    "position (as TransformerLens's main branch); 3.9 fails or mis-broadcasts, so it is compared against [batch pos] tokens",
    "get_full_resid_decomposition on attention-only models: TransformerLens 3.9 raises (accumulated_bias reads block.mlp)",
]
failures: list[str] = []


def compare(name: str, ours, theirs, tolerance: float = 1e-4) -> None:
    if isinstance(ours, tuple):
        if list(ours[1]) != list(theirs[1]):
            failures.append(f"{name}: labels differ {ours[1][:6]}... vs {theirs[1][:6]}...")
            return
        ours, theirs = ours[0], theirs[0]
    if ours.shape != theirs.shape:
        failures.append(f"{name}: shape {tuple(ours.shape)} vs {tuple(theirs.shape)}")
        return
    difference = (ours - theirs).abs().max().item() if ours.numel() else 0.0
    if difference > tolerance:
        failures.append(f"{name}: max abs difference {difference:.2e}")


def build_pair(normalization_type: str, attn_only: bool):
    from transformer_lens import HookedTransformer as TLModel
    from transformer_lens import HookedTransformerConfig

    cfg = TransformerConfig(
        d_model=32, n_layers=3, n_heads=4, d_head=8, d_mlp=64, d_vocab=100, n_ctx=32, seed=0,
        normalization_type=normalization_type, attn_only=attn_only,
    )
    ours = HookedTransformer(cfg).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in ours.named_parameters():
            if name.endswith(".w"):
                param.copy_(torch.rand(param.shape, generator=generator) + 0.5)
            elif name.rsplit(".", 1)[-1].startswith("b"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    tl_cfg = HookedTransformerConfig(
        d_model=32, n_layers=3, n_heads=4, d_head=8, d_mlp=None if attn_only else 64, d_vocab=100, n_ctx=32,
        act_fn="gelu_new", normalization_type=normalization_type, attn_only=attn_only, device="cpu",
    )
    tl = TLModel(tl_cfg)
    tl.load_state_dict(ours.state_dict(), strict=False)
    return ours, tl.eval()


def check_pair(normalization_type: str, attn_only: bool) -> None:
    ours, tl = build_pair(normalization_type, attn_only)
    tokens = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(2))
    tag = f"[{normalization_type}{', attn-only' if attn_only else ''}]"
    logits, mine = ours.run_with_cache(tokens)
    tl_logits, theirs = tl.run_with_cache(tokens)
    compare(f"{tag} logits", logits, tl_logits)
    has_mlp = not attn_only
    for kw in [{}, {"incl_mid": has_mlp}, {"apply_ln": True}, {"layer": 2, "apply_ln": True}, {"layer": 1, "mlp_input": has_mlp, "apply_ln": True}, {"pos_slice": -1, "apply_ln": True}, {"pos_slice": (1, 4)}]:
        compare(f"{tag} accumulated_resid {kw}", mine.accumulated_resid(return_labels=True, **kw), theirs.accumulated_resid(return_labels=True, **kw))
    for kw in [{}, {"apply_ln": True}, {"layer": 2}, {"layer": 1, "mlp_input": has_mlp, "apply_ln": True}, {"mode": "attn"}, {"mode": "mlp", "pos_slice": -1}]:
        compare(f"{tag} decompose_resid {kw}", mine.decompose_resid(return_labels=True, **kw), theirs.decompose_resid(return_labels=True, **kw))
    for kw in [{}, {"apply_ln": True}, {"layer": 2, "incl_remainder": True}, {"pos_slice": [0, 3], "apply_ln": True}]:
        compare(f"{tag} stack_head_results {kw}", mine.stack_head_results(return_labels=True, **kw), theirs.stack_head_results(return_labels=True, **kw))
    if has_mlp:
        for kw in [{"layer": 3}, {"layer": 2, "apply_ln": True, "incl_remainder": True}, {"layer": 1, "neuron_slice": (0, 5), "pos_slice": -1}]:
            compare(f"{tag} stack_neuron_results {kw}", mine.stack_neuron_results(return_labels=True, **kw), theirs.stack_neuron_results(return_labels=True, **kw))
        for kw in [{}, {"apply_ln": True}, {"expand_neurons": False}, {"layer": 2, "mlp_input": True, "apply_ln": True}, {"layer": 1, "pos_slice": -1}]:
            compare(f"{tag} get_full_resid_decomposition {kw}", mine.get_full_resid_decomposition(return_labels=True, **kw), theirs.get_full_resid_decomposition(return_labels=True, **kw))
    stack_mine, stack_theirs = mine.decompose_resid(), theirs.decompose_resid()
    compare(f"{tag} logit_attrs int", mine.logit_attrs(stack_mine, 5), theirs.logit_attrs(stack_theirs, 5))
    compare(f"{tag} logit_attrs [batch]", mine.logit_attrs(stack_mine, torch.tensor([3, 4])), theirs.logit_attrs(stack_theirs, torch.tensor([3, 4])[:, None].expand(2, 7)))
    compare(f"{tag} logit_attrs incorrect", mine.logit_attrs(stack_mine, tokens, incorrect_tokens=tokens.flip(-1)), theirs.logit_attrs(stack_theirs, tokens, incorrect_tokens=tokens.flip(-1)))
    sliced_mine, sliced_theirs = mine.decompose_resid(pos_slice=-1), theirs.decompose_resid(pos_slice=-1)
    compare(f"{tag} logit_attrs batch_slice", mine.logit_attrs(sliced_mine, 7, pos_slice=-1, batch_slice=1), theirs.logit_attrs(sliced_theirs, 7, pos_slice=-1, batch_slice=1))
    for key in [("pattern", 0), ("resid_pre", -1), ("scale", 2, "ln1"), ("q", 1, "attn"), "pattern1", "embed", "scale"]:
        compare(f"{tag} cache[{key!r}]", mine[key], theirs[key])
    mine.compute_head_results()
    theirs.compute_head_results()
    compare(f"{tag} compute_head_results", mine["result", 1], theirs["result", 1])
    _, one_mine = ours.run_with_cache(tokens[:1], remove_batch_dim=True)
    _, one_theirs = tl.run_with_cache(tokens[:1], remove_batch_dim=True)
    compare(f"{tag} remove_batch_dim accumulated_resid", one_mine.accumulated_resid(apply_ln=True, return_labels=True), one_theirs.accumulated_resid(apply_ln=True, return_labels=True))
    _, sliced_mine = ours.run_with_cache(tokens, pos_slice=(1, 5))
    _, sliced_theirs = tl.run_with_cache(tokens, pos_slice=(1, 5))
    for name in sliced_mine:
        compare(f"{tag} run_with_cache pos_slice {name}", sliced_mine[name], sliced_theirs[name])
    wanted = lambda name: "resid" in name or "pattern" in name  # noqa: E731
    _, grads_mine = ours.run_with_cache(tokens, return_type="loss", incl_bwd=True, names_filter=wanted)
    _, grads_theirs = tl.run_with_cache(tokens, return_type="loss", incl_bwd=True, names_filter=wanted)
    if set(grads_mine) != set(grads_theirs.keys()):
        failures.append(f"{tag} incl_bwd keys differ: {set(grads_mine) ^ set(grads_theirs.keys())}")
    for name in grads_mine:
        compare(f"{tag} incl_bwd {name}", grads_mine[name], grads_theirs[name])


def main() -> int:
    try:
        from importlib.metadata import version

        tl_version = version("transformer-lens")
    except Exception:
        print("transformer-lens is not installed: nothing to compare against")
        return 0
    for normalization_type in ("LN", "LNPre"):
        for attn_only in (False, True):
            check_pair(normalization_type, attn_only)
    print(f"compared against transformer-lens {tl_version}; known differences not compared:")
    for line in KNOWN_DIFFERENCES:
        print(f"  - {line}")
    if failures:
        print(f"{len(failures)} MISMATCHES:")
        for line in failures:
            print(f"  {line}")
        return 1
    print("all analyses agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
