"""Activation-patching speed: a full ``resid_pre`` layer x position sweep, batched vs one forward per location vs TransformerLens.

GPT-2-small-shaped random weights (ours at ``seed=0``; TransformerLens's ``HookedTransformer`` loads the
same state dict and its logits are checked against ours), CPU, float32, one 20-token prompt whose
corrupted version differs in one token; the metric is the logit difference of two tokens at the last
position. Candidates, each producing the same ``[layer pos]`` = 12 x 20 = 240 patched runs:

- ``TL get_act_patch_resid_pre``: TransformerLens 3.x, one forward per location (skipped, with a note,
  when TransformerLens is not importable: it is an optional benchmark dependency only);
- ``ours, naive loop``: a plain loop of ``model.run_with_hooks`` over the locations on our model;
- ``ours, one forward per location``: ``get_act_patch_resid_pre(..., max_locations_per_forward=1)``;
- ``ours, batched``: ``get_act_patch_resid_pre`` with the default memory budget, plain-function metric;
- ``ours, batched + LogitDiff``: the same with ``patching.LogitDiff``, which lets the sweep unembed
  only the last position.

Runs on one thread by default: on a shared machine whose two cores are oversubscribed, two OpenMP
threads spin-wait and every per-forward cost balloons (TL took 686 s there, ours 6.4 s).

Timings are medians of interleaved rounds (``--repeats``, default 1). Every result is compared with the first
candidate's (max abs difference); batched and one-forward-per-location results are also compared exactly.
Two more sections run by default (a few seconds each): every TransformerLens-named experiment on a tiny
random model in both libraries, with the largest difference per experiment (``--no-parity`` skips it), and
the correlation of attribution-patching estimates with real activation patching on the embedded models
ioi-mini and attn-only-2l-induction (``--no-attribution`` skips it).

    /work/tlvenv/bin/python benchmarks/patching.py          # with TransformerLens installed
    .venv/bin/python benchmarks/patching.py                  # ours only: prints a note, skips the TL rows
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from interp_transformer import HookedTransformer, TransformerConfig, patching  # noqa: E402

ANSWER, WRONG = 1000, 2000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pos", type=int, default=20, help="prompt length in tokens")
    parser.add_argument("--repeats", type=int, default=1, help="timed rounds (one TL sweep is ~1 min on one CPU core)")
    parser.add_argument("--warmup", type=int, default=0, help="untimed rounds first (each model runs one forward anyway)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (on a shared, oversubscribed machine 2 threads spin-wait badly)"
    )
    parser.add_argument("--n-layers", type=int, default=None, help="override GPT-2 small's 12 layers (smoke tests)")
    parser.add_argument("--no-parity", action="store_true", help="skip the all-experiments parity check on a tiny model")
    parser.add_argument("--no-attribution", action="store_true", help="skip the attribution-vs-activation correlations")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- models
def transformer_lens_version() -> str | None:
    try:
        from importlib.metadata import version

        import transformer_lens  # noqa: F401

        return version("transformer-lens")
    except ImportError:
        return None


def build_tl(ours: HookedTransformer) -> Any:
    """TransformerLens's HookedTransformer with our weights (no weight processing), checked on a prompt."""
    from transformer_lens import HookedTransformer as TLModel
    from transformer_lens import HookedTransformerConfig

    c = ours.cfg
    tl_cfg = HookedTransformerConfig(
        n_layers=c.n_layers,
        d_model=c.d_model,
        n_ctx=c.n_ctx,
        d_head=c.d_head,
        n_heads=c.n_heads,
        d_mlp=c.d_mlp,
        d_vocab=c.d_vocab,
        act_fn=c.act_fn,
        normalization_type=c.normalization_type,
        dtype=c.dtype,
        device="cpu",
    )
    tl = TLModel(tl_cfg)
    missing, unexpected = tl.load_state_dict(ours.state_dict(), strict=False)
    if unexpected or any(not name.endswith(("IGNORE", "mask")) for name in missing):
        raise AssertionError(f"state dicts do not line up: missing {missing}, unexpected {unexpected}")
    tl.eval()
    tokens = torch.randint(0, c.d_vocab, (2, 16), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        difference = (tl(tokens) - ours(tokens)).abs().max().item()
    if difference > 1e-3:
        raise AssertionError(f"TransformerLens and our logits differ by {difference:.2e} on the same weights")
    return tl


def prompts(cfg: TransformerConfig, n_pos: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    clean = torch.randint(0, cfg.d_vocab, (1, n_pos), generator=generator)
    corrupted = clean.clone()
    corrupted[0, n_pos // 4] = (clean[0, n_pos // 4] + 1) % cfg.d_vocab
    return clean, corrupted


def logit_diff(logits: torch.Tensor) -> torch.Tensor:
    return (logits[:, -1, ANSWER] - logits[:, -1, WRONG]).mean()


# ---------------------------------------------------------------- candidates
def naive_loop(model: HookedTransformer, corrupted: torch.Tensor, cache: Any) -> torch.Tensor:
    """One ``run_with_hooks`` per (layer, pos): what a hand-written patching loop does."""
    n_layers, n_pos = model.cfg.n_layers, corrupted.shape[1]
    results = torch.zeros(n_layers, n_pos)
    for layer in range(n_layers):
        name = f"blocks.{layer}.hook_resid_pre"
        for pos in range(n_pos):

            def patch(activation: torch.Tensor, hook: Any, pos: int = pos) -> torch.Tensor:
                activation[:, pos] = cache[hook.name][:, pos]
                return activation

            with torch.no_grad():
                results[layer, pos] = logit_diff(model.run_with_hooks(corrupted, fwd_hooks=[(name, patch)]))
    return results


def candidates(
    model: HookedTransformer, tl: Any, clean: torch.Tensor, corrupted: torch.Tensor
) -> dict[str, Callable[[], torch.Tensor]]:
    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
    answer_metric = patching.LogitDiff(ANSWER, WRONG, positions=-1)
    runs: dict[str, Callable[[], torch.Tensor]] = {}
    if tl is not None:
        import transformer_lens.patching as tl_patching

        with torch.no_grad():
            _, tl_cache = tl.run_with_cache(clean)

        def run_tl() -> torch.Tensor:
            with torch.no_grad():
                return tl_patching.get_act_patch_resid_pre(tl, corrupted, tl_cache, logit_diff)

        runs["TL get_act_patch_resid_pre"] = run_tl
    runs["ours, naive loop"] = lambda: naive_loop(model, corrupted, cache)
    runs["ours, one forward per location"] = lambda: patching.get_act_patch_resid_pre(
        model, corrupted, cache, logit_diff, max_locations_per_forward=1, progress=False
    )
    runs["ours, batched"] = lambda: patching.get_act_patch_resid_pre(model, corrupted, cache, logit_diff, progress=False)
    runs["ours, batched + LogitDiff"] = lambda: patching.get_act_patch_resid_pre(
        model, corrupted, cache, answer_metric, progress=False
    )
    return runs


def time_rounds(
    runs: dict[str, Callable[[], torch.Tensor]], repeats: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, torch.Tensor]]:
    """Seconds per call per candidate, one per round; rounds rotate who goes first."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    outputs: dict[str, torch.Tensor] = {}
    names = list(runs)
    for round_index in range(warmup + repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            outputs[name] = torch.as_tensor(runs[name]()).detach().clone().as_subclass(torch.Tensor)
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[name].append(elapsed)
            print(f"  round {round_index + 1}: {name}: {elapsed:.2f} s", flush=True)
    return times, outputs


# ---------------------------------------------------------------- parity on a tiny model
def parity_rows(tl_available: bool) -> list[tuple[str, tuple, float]]:
    """Every TransformerLens-named experiment in both libraries on a tiny random model: shape and max difference.

    The models, prompts, metric and runner are tests/reference/tl_comparisons.py's (``pytest -m reference`` asserts them).
    """
    if not tl_available:
        return []
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reference"))
    import tl_comparisons as tlc

    model, tl = tlc.build_patching_pair()
    clean, corrupted = tlc.patching_prompts(model.cfg.d_vocab)
    rows = []
    for name in tlc.experiment_names():
        ours, expected = tlc.run_experiment_in_both(name, model, tl, clean, corrupted)
        if tuple(ours.shape) != tuple(expected.shape):
            raise AssertionError(f"{name}: our shape {tuple(ours.shape)} != TransformerLens's {tuple(expected.shape)}")
        rows.append((name, tuple(ours.shape), (ours.values - expected).abs().max().item()))
    return rows


# ---------------------------------------------------------------- attribution vs activation patching
CORRELATION_SITES = (
    ("z", ("layer", "head_index")),
    ("z", ("layer", "pos", "head_index")),
    ("q", ("layer", "pos", "head_index")),
    ("k", ("layer", "pos", "head_index")),
    ("v", ("layer", "pos", "head_index")),
    ("pattern", ("layer", "head_index", "query_pos")),
    ("resid_pre", ("layer", "pos")),
    ("attn_out", ("layer", "pos")),
    ("mlp_out", ("layer", "pos")),
)


def ioi_task(model: HookedTransformer) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """ioi-mini's own prompt sampler (mixed templates); corrupted = IO and S swapped in each prompt."""
    from interp_transformer.toy.ioi import ioi_prompts
    from interp_transformer.toy.words import IOI_NAMES_TRAIN

    prompts = ioi_prompts(48, IOI_NAMES_TRAIN, torch.Generator().manual_seed(7))
    io, s = prompts.io_ids[:, None], prompts.s_ids[:, None]
    corrupted = torch.where(prompts.tokens == io, s, torch.where(prompts.tokens == s, io, prompts.tokens))
    return prompts.tokens, corrupted, patching.LogitDiff(prompts.io_ids, prompts.s_ids, positions=prompts.end_pos)


def induction_task(model: HookedTransformer) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """``<bos> x x[:-1]`` predicts ``x[-1]`` by induction; the corruption changes ``x[-1]`` in the first copy."""
    words = torch.randint(3, model.cfg.d_vocab, (16, 10), generator=torch.Generator().manual_seed(3))
    clean = torch.cat([torch.zeros(16, 1, dtype=torch.long), words, words[:, :-1]], dim=1)
    wrong = (words[:, -1] - 3 + 1) % (model.cfg.d_vocab - 3) + 3
    corrupted = clean.clone()
    corrupted[:, 10] = wrong
    return clean, corrupted, patching.LogitDiff(words[:, -1], wrong)


def attribution_correlations() -> list[tuple[str, str, tuple, float]]:
    rows = []
    for name, task in (("ioi-mini", ioi_task), ("attn-only-2l-induction", induction_task)):
        try:
            model = HookedTransformer.from_pretrained(name).eval()
        except (ValueError, FileNotFoundError) as error:
            print(f"note: {name} is not available ({error}); skipping it")
            continue
        clean, corrupted, base = task(model)
        with torch.no_grad():
            metric = patching.normalized_between(base, model(clean), model(corrupted))
            _, cache = model.run_with_cache(clean)
        sites = [(site, axes) for site, axes in CORRELATION_SITES if site in patching.available_sites(model)]
        attribution = patching.attribution_patching(model, clean, corrupted, metric, sites=sorted({site for site, _ in sites}))
        for site, axes in sites:
            actual = patching.patch_site(model, corrupted, cache, metric, site, axes, progress=False).values
            estimate = attribution.estimate(site, axes).values
            rows.append((name, site, axes, torch.corrcoef(torch.stack([estimate.flatten(), actual.flatten()]))[0, 1].item()))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tl_version = transformer_lens_version()
    cfg = TransformerConfig(seed=0, **({"n_layers": args.n_layers} if args.n_layers else {}))
    model = HookedTransformer(cfg).eval()
    print(
        f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads, load average "
        f"{os.getloadavg()[0]:.1f}; GPT-2-small-shaped random weights ({cfg.n_layers} layers), 1 prompt x {args.pos} tokens"
    )
    if tl_version is None:
        print(
            "note: transformer_lens is not importable, so the TransformerLens rows are skipped (pip install transformer-lens to add them)"
        )
        tl = None
    else:
        print(f"TransformerLens {tl_version}")
        tl = build_tl(model)
    clean, corrupted = prompts(cfg, args.pos)
    with torch.no_grad():  # one untimed forward each: first calls allocate
        model(clean), tl(clean) if tl is not None else None
    runs = candidates(model, tl, clean, corrupted)
    times, outputs = time_rounds(runs, args.repeats, args.warmup)

    reference_name = next(iter(runs))
    reference = outputs[reference_name]
    reference_time = statistics.median(times[reference_name])
    print(
        f"\nfull resid_pre sweep, {cfg.n_layers} layers x {args.pos} positions = {cfg.n_layers * args.pos} patched runs; "
        f"median of {args.repeats} rounds"
    )
    print(f"| candidate | seconds | speed-up vs {reference_name} | max abs difference vs {reference_name} |")
    print("|---|---|---|---|")
    for name in runs:
        seconds = statistics.median(times[name])
        difference = (outputs[name] - reference).abs().max().item()
        print(f"| {name} | {seconds:.2f} | {reference_time / seconds:.1f}x | {difference:.1e} |")
    print(f"(the {reference.numel()} metric values span [{reference.min().item():.3f}, {reference.max().item():.3f}])")
    looped, batched = outputs["ours, one forward per location"], outputs["ours, batched"]
    exact = torch.equal(looped, batched)
    print(
        f"\nbatched == one forward per location, bit for bit: {exact} (max abs difference {(looped - batched).abs().max().item():.1e})"
    )

    if not args.no_parity:
        rows = parity_rows(tl is not None)
        if rows:
            print(
                "\nparity on a tiny random model (2 layers, 4 heads, 4 prompts x 8 tokens), every TransformerLens-named experiment:"
            )
            print("| experiment | shape | max abs difference vs TL |")
            print("|---|---|---|")
            for name, shape, difference in rows:
                print(f"| {name} | {shape} | {difference:.1e} |")
    if not args.no_attribution:
        print("\nattribution patching vs activation patching (Pearson r over every location), embedded models:")
        print("| model | site | granularity | r |")
        print("|---|---|---|---|")
        for model_name, site, axes, r in attribution_correlations():
            print(f"| {model_name} | {site} | {', '.join(axes)} | {r:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
