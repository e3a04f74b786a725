"""Our ActivationCache analyses against TransformerLens's on identical tiny models (needs transformer-lens installed).

Builds small models (LN / LNPre, with and without MLPs) with random biases and LayerNorm
weights, copies the weights into TransformerLens's ``HookedTransformer``, and compares every
analysis with its labels, for several ``layer`` / ``mlp_input`` / ``apply_ln`` / ``pos_slice``
settings. Known, deliberate differences are skipped and listed at the end. Exits non-zero on
any mismatch. The cases live in tests/reference/tl_comparisons.py; ``pytest -m reference`` runs them too.

    python benchmarks/cache_tl_parity.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "tests" / "reference"))  # the comparison cases, shared with the reference tests
import tl_comparisons as tlc  # noqa: E402

KNOWN_DIFFERENCES = tlc.KNOWN_DIFFERENCES
failures: list[str] = []


def compare(name: str, ours, theirs, tolerance: float = 1e-4) -> None:
    problem = tlc.mismatch(ours, theirs, tolerance)
    if problem:
        failures.append(f"{name}: {problem}")


def check_pair(normalization_type: str, attn_only: bool) -> None:
    """The cases of tests/reference/tl_comparisons.py (also run by ``pytest -m reference``), printed as a report."""
    ours, tl = tlc.build_analysis_pair(normalization_type, attn_only)
    tokens = tlc.analysis_tokens()
    tag = f"[{normalization_type}{', attn-only' if attn_only else ''}]"
    logits, mine = ours.run_with_cache(tokens)
    tl_logits, theirs = tl.run_with_cache(tokens)
    compare(f"{tag} logits", logits, tl_logits)
    for name, case in tlc.analysis_cases(has_mlp=not attn_only).items():
        compare(f"{tag} {name}", case(mine, tokens), case(theirs, tokens))
    compare(f"{tag} logit_attrs [batch]", tlc.our_logit_attrs_batch_tokens(mine, tokens), tlc.their_logit_attrs_batch_tokens(theirs, tokens))
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
    for normalization_type, attn_only in tlc.ANALYSIS_MODELS:
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
