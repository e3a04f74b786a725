"""Cache analyses and patching experiments compared with TransformerLens 3.x: the shared comparison code.

Used by the opt-in reference tests (tests/reference/test_reference_cache_analyses.py and
test_reference_patching.py) and by the benchmarks that print the same comparisons
(benchmarks/cache_tl_parity.py, benchmarks/patching.py), so a case is written once.
Imports TransformerLens only inside functions: importing this module needs only torch and this package.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from interp_transformer import HookedTransformer, TransformerConfig

# Deliberate differences from TransformerLens 3.9, so these are not compared (or compared against a workaround).
KNOWN_DIFFERENCES = [
    "logit_attrs with [batch] tokens on a [component batch pos d_model] stack: ours applies each prompt's token at every "
    "position (as TransformerLens's main branch); 3.9 fails or mis-broadcasts, so it is compared against [batch pos] tokens",
    "get_full_resid_decomposition on attention-only models: TransformerLens 3.9 raises (accumulated_bias reads block.mlp)",
]
ANALYSIS_MODELS = [("LN", False), ("LN", True), ("LNPre", False), ("LNPre", True)]  # (normalization_type, attn_only)
Result = Any  # a tensor, or a (tensor, labels) pair


def build_analysis_pair(normalization_type: str, attn_only: bool, n_layers: int = 3) -> tuple[HookedTransformer, Any]:
    """Our tiny random model (norm weights around 1, random biases) and TransformerLens's with the same state dict."""
    from transformer_lens import HookedTransformer as TLModel
    from transformer_lens import HookedTransformerConfig

    cfg = TransformerConfig(
        d_model=32, n_layers=n_layers, n_heads=4, d_head=8, d_mlp=64, d_vocab=100, n_ctx=32, seed=0,
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
        d_model=32, n_layers=n_layers, n_heads=4, d_head=8, d_mlp=None if attn_only else 64, d_vocab=100, n_ctx=32,
        act_fn="gelu_new", normalization_type=normalization_type, attn_only=attn_only, device="cpu",
    )
    tl = TLModel(tl_cfg)
    tl.load_state_dict(ours.state_dict(), strict=False)
    return ours, tl.eval()


def analysis_tokens() -> torch.Tensor:
    return torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(2))


def analysis_cases(has_mlp: bool) -> dict[str, Callable[[Any, torch.Tensor], Result]]:
    """Case name -> ``f(cache, tokens)``, run on our cache and on TransformerLens's; results must agree."""
    cases: dict[str, Callable[[Any, torch.Tensor], Result]] = {}

    def add(method: str, settings: list[dict]) -> None:
        for kw in settings:
            cases[f"{method} {kw}"] = lambda c, t, method=method, kw=kw: getattr(c, method)(return_labels=True, **kw)

    add("accumulated_resid", [{}, {"incl_mid": has_mlp}, {"apply_ln": True}, {"layer": 2, "apply_ln": True},
                              {"layer": 1, "mlp_input": has_mlp, "apply_ln": True}, {"pos_slice": -1, "apply_ln": True},
                              {"pos_slice": (1, 4)}])
    add("decompose_resid", [{}, {"apply_ln": True}, {"layer": 2}, {"layer": 1, "mlp_input": has_mlp, "apply_ln": True},
                            {"mode": "attn"}, {"mode": "mlp", "pos_slice": -1}])
    add("stack_head_results", [{}, {"apply_ln": True}, {"layer": 2, "incl_remainder": True}, {"pos_slice": [0, 3], "apply_ln": True}])
    if has_mlp:
        add("stack_neuron_results", [{"layer": 3}, {"layer": 2, "apply_ln": True, "incl_remainder": True},
                                     {"layer": 1, "neuron_slice": (0, 5), "pos_slice": -1}])
        add("get_full_resid_decomposition", [{}, {"apply_ln": True}, {"expand_neurons": False},
                                             {"layer": 2, "mlp_input": True, "apply_ln": True}, {"layer": 1, "pos_slice": -1}])
    cases["apply_ln_to_stack layer 2 (ln1 scale)"] = lambda c, t: c.apply_ln_to_stack(c.decompose_resid(layer=2), layer=2)
    cases["apply_ln_to_stack mlp_input"] = lambda c, t: c.apply_ln_to_stack(
        c.decompose_resid(layer=1, mlp_input=has_mlp), layer=1, mlp_input=has_mlp
    )
    cases["apply_ln_to_stack pos_slice"] = lambda c, t: c.apply_ln_to_stack(c.decompose_resid(pos_slice=-1), pos_slice=-1)
    cases["logit_attrs int"] = lambda c, t: c.logit_attrs(c.decompose_resid(), 5)
    cases["logit_attrs [batch pos] with incorrect tokens"] = lambda c, t: c.logit_attrs(
        c.decompose_resid(), t, incorrect_tokens=t.flip(-1)
    )
    cases["logit_attrs batch_slice"] = lambda c, t: c.logit_attrs(c.decompose_resid(pos_slice=-1), 7, pos_slice=-1, batch_slice=1)
    cases["stack_activation pattern"] = lambda c, t: c.stack_activation("pattern")
    for key in [("pattern", 0), ("resid_pre", -1), ("scale", 2, "ln1"), ("q", 1, "attn"), "pattern1", "embed", "scale"]:
        cases[f"cache[{key!r}]"] = lambda c, t, key=key: c[key]
    return cases


def their_logit_attrs_batch_tokens(cache: Any, tokens: torch.Tensor) -> Result:
    """TransformerLens 3.9 needs ``[batch pos]`` tokens where ours takes ``[batch]`` (see KNOWN_DIFFERENCES)."""
    return cache.logit_attrs(cache.decompose_resid(), torch.tensor([3, 4])[:, None].expand(2, tokens.shape[1]))


def our_logit_attrs_batch_tokens(cache: Any, tokens: torch.Tensor) -> Result:
    return cache.logit_attrs(cache.decompose_resid(), torch.tensor([3, 4]))


def mismatch(ours: Result, theirs: Result, tolerance: float = 1e-4) -> str | None:
    """Why two results differ (labels, shape or values beyond ``tolerance``), or None when they agree."""
    if isinstance(ours, tuple):
        if list(ours[1]) != list(theirs[1]):
            return f"labels differ: {list(ours[1])[:6]}... vs TransformerLens's {list(theirs[1])[:6]}..."
        ours, theirs = ours[0], theirs[0]
    if ours.shape != theirs.shape:
        return f"shape {tuple(ours.shape)} vs TransformerLens's {tuple(theirs.shape)}"
    finite = torch.isfinite(theirs)  # masked attention scores are -inf in both; -inf - -inf would be nan
    if not torch.equal(finite, torch.isfinite(ours)) or not torch.equal(ours[~finite], theirs[~finite]):
        return "the non-finite entries (masked scores) differ"
    difference = (ours[finite] - theirs[finite]).abs().max().item() if finite.any() else 0.0
    if not difference <= tolerance:
        return f"max abs difference {difference:.2e} (> {tolerance:.0e})"
    return None


# ------------------------------------------------------------------ patching
def build_patching_pair(seed: int = 0) -> tuple[HookedTransformer, Any]:
    """A tiny random model of ours and TransformerLens's with the same weights (logits checked equal)."""
    from transformer_lens import HookedTransformer as TLModel
    from transformer_lens import HookedTransformerConfig

    ours = HookedTransformer(
        TransformerConfig(d_model=32, n_layers=2, n_heads=4, d_head=8, d_mlp=64, d_vocab=300, n_ctx=48, seed=seed)
    ).eval()
    c = ours.cfg
    tl = TLModel(HookedTransformerConfig(
        n_layers=c.n_layers, d_model=c.d_model, n_ctx=c.n_ctx, d_head=c.d_head, n_heads=c.n_heads, d_mlp=c.d_mlp,
        d_vocab=c.d_vocab, act_fn=c.act_fn, normalization_type=c.normalization_type, dtype=c.dtype, device="cpu",
    ))
    missing, unexpected = tl.load_state_dict(ours.state_dict(), strict=False)
    if unexpected or any(not name.endswith(("IGNORE", "mask")) for name in missing):
        raise AssertionError(f"state dicts do not line up: missing {missing}, unexpected {unexpected}")
    return ours, tl.eval()


def patching_prompts(d_vocab: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """4 clean prompts of 8 tokens and their corruption at position 2."""
    generator = torch.Generator().manual_seed(0)
    clean = torch.randint(0, d_vocab, (4, 8), generator=generator)
    corrupted = clean.clone()
    corrupted[:, 2] = torch.randint(0, d_vocab, (4,), generator=generator)
    return clean, corrupted


def logit_difference_metric(logits: torch.Tensor) -> torch.Tensor:
    return (logits[:, -1, 5] - logits[:, -1, 7]).mean()


def experiment_names() -> list[str]:
    """Every ``get_act_patch_*`` experiment TransformerLens has (each must exist in ours under the same name)."""
    import transformer_lens.patching as tl_patching

    return sorted(name for name in dir(tl_patching) if name.startswith("get_act_patch_"))


def run_experiment_in_both(name: str, ours: HookedTransformer, tl: Any, clean: torch.Tensor, corrupted: torch.Tensor):
    """(our PatchingResult, TransformerLens's tensor) for experiment ``name`` with the logit-difference metric."""
    import transformer_lens.patching as tl_patching

    from interp_transformer import patching

    with torch.no_grad():
        _, cache = ours.run_with_cache(clean)
        _, tl_cache = tl.run_with_cache(clean)
        expected = getattr(tl_patching, name)(tl, corrupted, tl_cache, logit_difference_metric)
    result = getattr(patching, name)(ours, corrupted, cache, logit_difference_metric, progress=False)
    return result, expected
