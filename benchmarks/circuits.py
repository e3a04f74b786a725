"""Circuit analyses at GPT-2 small's shape: all-pairs composition scores and every head's full OV eigenvalues.

A random-init model of GPT-2 small's shape (12 layers of 12 heads, d_model 768, d_vocab 50257) is
built in interp_transformer and, when TransformerLens is importable, the same weights are loaded into a
TransformerLens ``HookedTransformer``. Timed on CPU in interleaved rounds after a warm-up round:

- composition: ``all_composition_scores`` for Q, K and V (TransformerLens: ``model.all_composition_scores``),
- OV eigenvalues: the eigenvalues of ``W_E W_V W_O W_U`` of every head
  (TransformerLens: ``(model.W_E @ model.OV @ model.W_U).eigenvalues``).

The comparison uses ``fold_layer_norm=False`` (the stored weights, as TransformerLens does); our
default, which folds each LayerNorm in, is timed too. Numbers must agree to 1e-4: composition
scores absolutely, eigenvalues relative to each head's largest one (matched as sets, since the
two libraries may order them differently).

    python benchmarks/circuits.py                      # GPT-2 small shape, 3 timed rounds
    python benchmarks/circuits.py --n-layers 2 --repeats 1   # quick smoke test
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from interp_transformer import HookedTransformer, TransformerConfig  # noqa: E402
from interp_transformer.circuits import all_composition_scores, ov_unembed_eigenvalues  # noqa: E402

TOLERANCE = 1e-4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own choice)")
    parser.add_argument("--n-layers", type=int, default=12, help="override GPT-2 small's 12 layers (for quick smoke tests)")
    parser.add_argument("--d-vocab", type=int, default=50257, help="override GPT-2's vocabulary size (for quick smoke tests)")
    return parser.parse_args()


def build_ours(args: argparse.Namespace) -> HookedTransformer:
    cfg = TransformerConfig(n_layers=args.n_layers, d_vocab=args.d_vocab, seed=0)
    return HookedTransformer(cfg).eval()


def build_transformer_lens(ours: HookedTransformer):
    """A TransformerLens model holding exactly our weights, or None when TransformerLens is not installed."""
    try:
        import transformer_lens
    except ImportError as error:  # not a dependency: the comparison is optional
        print(f"note: TransformerLens is not importable ({error}); its rows are skipped.\n")
        return None
    cfg = ours.cfg
    tl_cfg = transformer_lens.HookedTransformerConfig(
        n_layers=cfg.n_layers, d_model=cfg.d_model, n_ctx=cfg.n_ctx, d_head=cfg.d_head, n_heads=cfg.n_heads,
        d_mlp=cfg.d_mlp, d_vocab=cfg.d_vocab, act_fn=cfg.act_fn, normalization_type=cfg.normalization_type, device="cpu",
    )
    with warnings.catch_warnings():  # TransformerLens 3 deprecates HookedTransformer; it is still the API compared
        warnings.simplefilter("ignore", DeprecationWarning)
        tl_model = transformer_lens.HookedTransformer(tl_cfg)
    missing, unexpected = tl_model.load_state_dict(ours.state_dict(), strict=False)
    missing = [key for key in missing if not key.endswith(("attn.IGNORE", "attn.mask"))]
    if missing or unexpected:
        raise AssertionError(f"weights did not map onto TransformerLens: missing {missing}, unexpected {unexpected}")
    print(f"TransformerLens {importlib.metadata.version('transformer-lens')}")
    return tl_model.eval()


def candidates(ours: HookedTransformer, tl_model) -> dict[str, dict[str, Callable[[], object]]]:
    """Per task: candidate name -> function. 'tl' and 'ours' compute the same numbers; 'ours_folded' is our default."""
    tasks = {
        "composition (Q, K, V)": {
            "ours": lambda: [all_composition_scores(ours, mode, fold_layer_norm=False) for mode in "QKV"],
            "ours_folded": lambda: [all_composition_scores(ours, mode) for mode in "QKV"],
        },
        "OV eigenvalues": {
            "ours": lambda: ov_unembed_eigenvalues(ours, fold_layer_norm=False),
            "ours_folded": lambda: ov_unembed_eigenvalues(ours),
        },
    }
    if tl_model is not None:
        tasks["composition (Q, K, V)"]["tl"] = lambda: [tl_model.all_composition_scores(mode) for mode in "QKV"]
        tasks["OV eigenvalues"]["tl"] = lambda: (tl_model.W_E @ tl_model.OV @ tl_model.W_U).eigenvalues
    return tasks


def check_agreement(task: str, ours: object, theirs: object) -> float:
    """Largest difference (absolute for scores, relative to each head's largest eigenvalue for eigenvalues)."""
    if task.startswith("composition"):
        return max((a - b).abs().max().item() for a, b in zip(ours, theirs, strict=True))
    ours, theirs = ours.to(torch.complex128), theirs.to(torch.complex128)
    distance = (ours[..., :, None] - theirs[..., None, :]).abs()
    scale = theirs.abs().amax(-1)
    unmatched = torch.maximum(distance.amin(-1).amax(-1), distance.amin(-2).amax(-1))
    return (unmatched / scale).max().item()


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench(task_fns: dict[str, Callable[[], object]], args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, object]]:
    times: dict[str, list[float]] = {name: [] for name in task_fns}
    results: dict[str, object] = {}
    order = list(task_fns)
    for round_index in range(args.warmup + args.repeats):
        shift = round_index % len(order)
        for name in order[shift:] + order[:shift]:  # rotated: no candidate always runs first
            seconds, results[name] = timed(task_fns[name])
            if round_index >= args.warmup:
                times[name].append(seconds)
    return times, results


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, python {platform.python_version()}")
    print(f"device: CPU ({platform.processor() or platform.machine()}), torch threads {torch.get_num_threads()}")
    print(f"{args.warmup} warm-up round(s), median of {args.repeats} interleaved rounds\n")
    with torch.no_grad():
        ours = build_ours(args)
        tl_model = build_transformer_lens(ours)
        cfg = ours.cfg
        print(f"model: {cfg.n_layers} layers x {cfg.n_heads} heads, d_model {cfg.d_model}, d_head {cfg.d_head}, d_vocab {cfg.d_vocab}\n")
        print("| task | TL (s) | ours (s) | ours / TL | ours, LayerNorm folded (s) | max difference vs TL |")
        print("|---|---|---|---|---|---|")
        for task, task_fns in candidates(ours, tl_model).items():
            times, results = bench(task_fns, args)
            ours_s, folded_s = statistics.median(times["ours"]), statistics.median(times["ours_folded"])
            if "tl" not in times:
                print(f"| {task} | skipped | {ours_s:.3f} | - | {folded_s:.3f} | - |", flush=True)
                continue
            tl_s = statistics.median(times["tl"])
            difference = check_agreement(task, results["ours"], results["tl"])
            print(f"| {task} | {tl_s:.3f} | {ours_s:.3f} | {ours_s / tl_s:.3f} | {folded_s:.3f} | {difference:.1e} |", flush=True)
            if difference > TOLERANCE:
                raise AssertionError(f"{task}: ours and TransformerLens differ by {difference:.1e} (> {TOLERANCE})")


if __name__ == "__main__":
    main()
