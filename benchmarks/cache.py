"""Activation caching speed and memory: filtered and full ``run_with_cache``, TransformerLens, the dataset store.

Every candidate uses the same GPT-2-small-shaped random weights (ours at ``seed=0``; TransformerLens's
``HookedTransformer`` gets the same state dict and its logits are checked against ours). Timings are
medians of interleaved rounds after a warm-up round, and ratios are medians of per-round ratios, as in
``forward.py``. Peak memory is measured in a fresh child process per candidate: on CPU the rise of the
resident set's high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``) during one call, on
CUDA the rise of ``torch.cuda.max_memory_allocated``.

TransformerLens is an optional benchmark dependency only: without it, its rows print as not installed.

    python benchmarks/cache.py                                          # CPU, float32, 8x128
    python benchmarks/cache.py --device cuda --dtype bfloat16 --shapes 32x1024 --repeats 10
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from interp_transformer import HookedTransformer, TransformerConfig  # noqa: E402
from interp_transformer.store import cache_dataset  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DEFAULT_SHAPES = {"cpu": "8x128", "cuda": "32x1024"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--shapes", default=None, help="comma-separated BATCHxPOS (default: 8x128 on CPU, 32x1024 on CUDA)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--store-sequences", type=int, default=64, help="sequences in the store-throughput corpus")
    parser.add_argument("--n-layers", type=int, default=None, help="override GPT-2 small's 12 layers (smoke tests)")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: filtered, tl, store")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: one memory measurement
    args = parser.parse_args(argv)
    args.shapes = [tuple(int(n) for n in s.split("x")) for s in (args.shapes or DEFAULT_SHAPES[args.device]).split(",")]
    args.skip = set(filter(None, args.skip.split(",")))
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given but torch.cuda.is_available() is False")
    return args


# ---------------------------------------------------------------- models
def build_ours(args: argparse.Namespace) -> HookedTransformer:
    cfg = TransformerConfig(seed=0, dtype=DTYPES[args.dtype], **({"n_layers": args.n_layers} if args.n_layers else {}))
    return HookedTransformer(cfg).to(args.device).eval()


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
        n_layers=c.n_layers, d_model=c.d_model, n_ctx=c.n_ctx, d_head=c.d_head, n_heads=c.n_heads, d_mlp=c.d_mlp,
        d_vocab=c.d_vocab, act_fn=c.act_fn, normalization_type=c.normalization_type, dtype=c.dtype, device=str(ours.device),
    )
    tl = TLModel(tl_cfg)
    missing, unexpected = tl.load_state_dict(ours.state_dict(), strict=False)
    if unexpected or any(not name.endswith(("IGNORE", "mask")) for name in missing):
        raise AssertionError(f"state dicts do not line up: missing {missing}, unexpected {unexpected}")
    tl = tl.to(ours.device).eval()
    tokens = torch.randint(0, c.d_vocab, (2, 16), generator=torch.Generator().manual_seed(2)).to(ours.device)
    with torch.inference_mode():
        difference = (tl(tokens).float() - ours(tokens).float()).abs().max().item()
    limit = 1e-3 if c.dtype == torch.float32 else 0.5
    if difference > limit:
        raise AssertionError(f"TransformerLens and our logits differ by {difference:.2e} on the same weights")
    return tl


def make_tokens(args: argparse.Namespace, batch: int, pos: int, vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, pos), generator=torch.Generator().manual_seed(1)).to(args.device)


# ---------------------------------------------------------------- timing
def timed(fn: Callable[[], Any], device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    del result
    return elapsed


def interleaved(candidates: dict[str, Callable[[], Any]], args: argparse.Namespace, after_each: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Seconds per call for each candidate, one value per round, rounds rotating who goes first."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    order = list(candidates)
    for round_index in range(args.warmup + args.repeats):
        shift = round_index % len(order)
        for name in order[shift:] + order[:shift]:
            seconds = timed(candidates[name], args.device)
            after_each()
            if round_index >= args.warmup:
                times[name].append(seconds)
    return times


def paired_ratio(times: dict[str, list[float]], name: str, reference: str) -> float:
    return statistics.median(a / b for a, b in zip(times[name], times[reference]))


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


# ---------------------------------------------------------------- memory
def unique_storage_bytes(tensors: Any) -> int:
    storages = {}
    for value in tensors:
        storage = value.untyped_storage()
        storages[(str(value.device), storage.data_ptr())] = storage.nbytes()
    return sum(storages.values())


def child_measure(args: argparse.Namespace) -> None:
    """Runs in a fresh process: peak memory of one call of the candidate named by --child."""
    kind, shape = args.child.split(":")
    batch, pos = (int(n) for n in shape.split("x"))
    ours = build_ours(args)
    model = build_tl(ours) if kind == "tl" else ours
    if kind == "tl":
        del ours
    tokens = make_tokens(args, batch, pos, model.cfg.d_vocab)
    call = {"ours": lambda: model.run_with_cache(tokens), "tl": lambda: model.run_with_cache(tokens), "plain": lambda: (model(tokens), {})}[kind]
    with torch.inference_mode():
        call()  # warm-up: lazy initialisation is not part of the peak
        gc.collect()
        before = _memory_mark(args.device)
        _, cache = call()
        peak = _memory_peak(args.device)
        cache_bytes = unique_storage_bytes(cache.values()) if cache else 0
    print(json.dumps({"peak_bytes": peak - before, "cache_bytes": cache_bytes}))


def _memory_mark(device: str) -> int:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    return _status_kb("VmRSS") * 1024


def _memory_peak(device: str) -> int:
    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    return _status_kb("VmHWM") * 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure_in_child(kind: str, shape: tuple[int, int], args: argparse.Namespace) -> dict[str, int] | None:
    command = [sys.executable, __file__, "--child", f"{kind}:{shape[0]}x{shape[1]}", "--device", args.device, "--dtype", args.dtype]
    if args.n_layers:
        command += ["--n-layers", str(args.n_layers)]
    # A fixed mmap threshold makes glibc return every large block to the OS when freed; with its default
    # (dynamic) threshold, memory freed by the warm-up stays resident and hides part of the next peak.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        print(f"  (memory measurement for {kind} failed: {result.stderr.strip().splitlines()[-1:]})", flush=True)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- sections
def bench_filtered(ours: HookedTransformer, args: argparse.Namespace) -> None:
    print("\n### run_with_cache filtered to hook_pattern vs plain forward (target <= 1.1)\n")
    print("| batch x pos | forward (ms) | run_with_cache, patterns only (ms) | ratio |")
    print("|---|---|---|---|")
    only_patterns = lambda name: name.endswith("hook_pattern")  # noqa: E731
    for batch, pos in args.shapes:
        tokens = make_tokens(args, batch, pos, ours.cfg.d_vocab)
        with torch.inference_mode():
            times = interleaved({"forward": lambda: ours(tokens), "patterns": lambda: ours.run_with_cache(tokens, names_filter=only_patterns)}, args)
        print(f"| {batch}x{pos} | {median_ms(times['forward']):.1f} | {median_ms(times['patterns']):.1f} | {paired_ratio(times, 'patterns', 'forward'):.3f} |", flush=True)


def bench_vs_transformer_lens(ours: HookedTransformer, args: argparse.Namespace) -> None:
    version = transformer_lens_version()
    print("\n### full run_with_cache vs TransformerLens (target: not slower, no more memory)\n")
    if version is None:
        print("TransformerLens is not installed: these rows are skipped (pip install transformer-lens to measure them).")
        return
    tl = build_tl(ours)
    print(f"TransformerLens {version}, HookedTransformer with our weights (logits checked)\n")
    print("| batch x pos | TL (ms) | ours (ms) | ours/TL time | TL cache (MB) | ours cache (MB) | TL peak (MB) | ours peak (MB) | ours/TL peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batch, pos in args.shapes:
        tokens = make_tokens(args, batch, pos, ours.cfg.d_vocab)
        with torch.inference_mode():
            _check_same_activations(ours, tl, tokens)
            times = interleaved({"tl": lambda: tl.run_with_cache(tokens), "ours": lambda: ours.run_with_cache(tokens)}, args, gc.collect)
        memory = {kind: measure_in_child(kind, (batch, pos), args) for kind in ("tl", "ours")}
        mb = lambda kind, field: f"{memory[kind][field] / 2**20:.0f}" if memory[kind] else "n/a"  # noqa: E731
        peak_ratio = f"{memory['ours']['peak_bytes'] / memory['tl']['peak_bytes']:.2f}" if memory["ours"] and memory["tl"] else "n/a"
        print(
            f"| {batch}x{pos} | {median_ms(times['tl']):.0f} | {median_ms(times['ours']):.0f} | {paired_ratio(times, 'ours', 'tl'):.3f} | "
            f"{mb('tl', 'cache_bytes')} | {mb('ours', 'cache_bytes')} | {mb('tl', 'peak_bytes')} | {mb('ours', 'peak_bytes')} | {peak_ratio} |",
            flush=True,
        )


def _check_same_activations(ours: HookedTransformer, tl: Any, tokens: torch.Tensor) -> None:
    """Every hook both caches hold must agree (hook_normalized included: both take it before the norm's weight)."""
    _, mine = ours.run_with_cache(tokens[:, :32])
    _, theirs = tl.run_with_cache(tokens[:, :32])
    shared = [name for name in mine if name in theirs.cache_dict]
    worst = max((mine[name].float() - theirs[name].float()).abs().max().item() for name in shared)
    limit = 1e-3 if ours.cfg.dtype == torch.float32 else 0.5
    if worst > limit:
        raise AssertionError(f"cached activations differ from TransformerLens's by {worst:.2e}")
    print(f"{len(shared)} shared hook names agree with TransformerLens to {worst:.1e}")


def bench_store(ours: HookedTransformer, args: argparse.Namespace) -> None:
    batch, pos = args.shapes[0]
    n = args.store_sequences
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in range(ours.cfg.n_layers)]
    corpus = torch.randint(0, ours.cfg.d_vocab, (n, pos), generator=torch.Generator().manual_seed(3))
    print(f"\n### dataset store throughput: {n} sequences x {pos} tokens, every hook_resid_post, batches of {batch}\n")
    root = Path(tempfile.mkdtemp(prefix="cache-bench-"))
    counter = iter(range(10**6))

    def store() -> None:
        cache_dataset(ours, corpus, hooks, root / f"store-{next(counter)}", batch_size=batch, progress=False)

    def plain_loop() -> None:
        out = root / f"plain-{next(counter)}"
        out.mkdir()
        for index, start in enumerate(range(0, n, batch)):
            acts: dict[str, torch.Tensor] = {}
            with torch.inference_mode():
                ours.run_with_hooks(corpus[start : start + batch].to(args.device), fwd_hooks=[(hooks, lambda a, hook: acts.__setitem__(hook.name, a.cpu()))])
            torch.save(acts, out / f"batch-{index}.pt")

    def clean() -> None:
        for path in root.iterdir():
            shutil.rmtree(path)

    try:
        times = interleaved({"plain": plain_loop, "store": store}, args, clean)
    finally:
        shutil.rmtree(root)
    tokens = n * pos
    print("| forward + torch.save loop (tok/s) | cache_dataset (tok/s) | store / loop throughput |")
    print("|---|---|---|")
    print(f"| {tokens / statistics.median(times['plain']):.0f} | {tokens / statistics.median(times['store']):.0f} | {paired_ratio(times, 'plain', 'store'):.3f} |", flush=True)


def main() -> None:
    args = parse_args()
    if args.child:
        child_measure(args)
        return
    print(f"torch {torch.__version__}, python {platform.python_version()}, transformer-lens {transformer_lens_version() or 'not installed'}")
    if args.device == "cuda":
        print(f"device: {torch.cuda.get_device_name()}, dtype {args.dtype}")
    else:
        print(f"device: CPU ({platform.processor() or platform.machine()}), torch threads {torch.get_num_threads()}, dtype {args.dtype}")
    print(f"{args.warmup} warm-up round(s), median of {args.repeats} interleaved rounds")
    ours = build_ours(args)
    if "filtered" not in args.skip:
        bench_filtered(ours, args)
    if "tl" not in args.skip:
        bench_vs_transformer_lens(ours, args)
    if "store" not in args.skip:
        bench_store(ours, args)


if __name__ == "__main__":
    main()
