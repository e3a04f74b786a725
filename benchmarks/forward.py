"""Forward-pass speed of HookedTransformer against Hugging Face GPT-2 with identical weights.

A random-init ``GPT2LMHeadModel`` of GPT-2 small's shape is saved to a temporary directory
and loaded by both libraries, so both run the same numbers. Candidates are timed in
interleaved rounds (each round runs HF, ours, ours with a no-op hook on every hook point,
in a rotating order) after warm-up rounds, and medians over rounds are reported: noise from
other processes on the machine then falls on every candidate alike. Ratios are medians of
per-round ratios (ours / HF in the same round), so a slow spell that spans a round cancels
out; the ratio of the fastest rounds is printed too, as a check on the noise.

    python benchmarks/forward.py                                   # CPU, float32, 8x128 and 1x1024
    python benchmarks/forward.py --device cuda --dtype float32,bfloat16 --shapes 32x1024 --repeats 20
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import transformers
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from interp_transformer import HookedTransformer  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DEFAULT_SHAPES = {"cpu": "8x128,1x1024", "cuda": "32x1024"}
DEFAULT_DTYPES = {"cpu": "float32", "cuda": "float32,bfloat16"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", default=None, help="comma-separated: float32, bfloat16 (default: float32 on CPU, both on CUDA)")
    parser.add_argument("--shapes", default=None, help="comma-separated BATCHxPOS (default: 8x128,1x1024 on CPU, 32x1024 on CUDA)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per shape (default: 7 on CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default: 1 on CPU, 3 on CUDA)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own choice)")
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall",
        help="wall: elapsed time (default); cpu: this process's CPU time, which does not count time spent "
        "descheduled by other processes; meaningful with --threads 1 only (idle OpenMP threads spin)",
    )
    parser.add_argument("--n-layers", type=int, default=None, help="override GPT-2 small's 12 layers (for quick smoke tests)")
    args = parser.parse_args()
    args.dtype = [DTYPES[name] for name in (args.dtype or DEFAULT_DTYPES[args.device]).split(",")]
    args.shapes = [tuple(int(n) for n in shape.split("x")) for shape in (args.shapes or DEFAULT_SHAPES[args.device]).split(",")]
    args.repeats = args.repeats or (20 if args.device == "cuda" else 7)
    args.warmup = args.warmup if args.warmup is not None else (3 if args.device == "cuda" else 1)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given but torch.cuda.is_available() is False")
    if args.clock == "cpu" and (args.device == "cuda" or args.threads != 1):
        parser.error("--clock cpu measures CPU work and needs --device cpu --threads 1")
    return args


def build_models(directory: str, dtype: torch.dtype, device: str) -> tuple[torch.nn.Module, HookedTransformer]:
    hf = transformers.GPT2LMHeadModel.from_pretrained(directory, attn_implementation="sdpa", dtype=dtype)
    ours = HookedTransformer.from_pretrained(directory, dtype=dtype, device=device)
    assert hf.config._attn_implementation == "sdpa", hf.config._attn_implementation
    return hf.to(device).eval(), ours.eval()


def timed(fn: Callable[[], Tensor], device: str, clock: str) -> float:
    now = time.process_time if clock == "cpu" else time.perf_counter
    if device == "cuda":
        torch.cuda.synchronize()
    start = now()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return now() - start


def no_op_hook(activation: Tensor, hook) -> None:
    return None


def bench_shape(hf, ours: HookedTransformer, tokens: Tensor, args: argparse.Namespace) -> dict[str, list[float]]:
    """Seconds per forward for each candidate, one value per round, timed in interleaved rounds."""
    candidates: dict[str, Callable[[], Tensor]] = {
        "hf": lambda: hf(tokens, use_cache=False).logits,
        "ours": lambda: ours(tokens),
        "ours_all_hooks": lambda: ours.run_with_hooks(tokens, fwd_hooks=[(lambda name: True, no_op_hook)]),
    }
    times: dict[str, list[float]] = {name: [] for name in candidates}
    order = list(candidates)
    for round_index in range(args.warmup + args.repeats):
        for name in order[round_index % 3:] + order[: round_index % 3]:  # rotated: no one always runs first
            fn = candidates[name]
            seconds = timed(fn, args.device, args.clock)
            if round_index >= args.warmup:
                times[name].append(seconds)
    return times


def max_abs_logit_difference(hf, ours: HookedTransformer, tokens: Tensor) -> tuple[float, float]:
    """(no hooks, all hooks): the hooked run takes the explicit-attention path."""
    expected = hf(tokens, use_cache=False).logits.float()
    plain = (ours(tokens).float() - expected).abs().max().item()
    hooked = ours.run_with_hooks(tokens, fwd_hooks=[(lambda name: True, no_op_hook)])
    return plain, (hooked.float() - expected).abs().max().item()


def main() -> None:
    args = parse_args()
    transformers.utils.logging.disable_progress_bar()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}")
    if args.device == "cuda":
        print(f"device: {torch.cuda.get_device_name()}")
    else:
        print(f"device: CPU ({platform.processor() or platform.machine()}), torch threads {torch.get_num_threads()}")
    print(f"{args.warmup} warm-up round(s), median of {args.repeats} interleaved rounds, {args.clock}-clock time\n")
    config = transformers.GPT2Config() if args.n_layers is None else transformers.GPT2Config(n_layer=args.n_layers)
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as directory, torch.inference_mode():
        transformers.GPT2LMHeadModel(config).save_pretrained(directory)
        for dtype in args.dtype:
            hf, ours = build_models(directory, dtype, args.device)
            for batch, pos in args.shapes:
                tokens = torch.randint(0, config.vocab_size, (batch, pos), generator=torch.Generator().manual_seed(1)).to(args.device)
                plain, hooked = max_abs_logit_difference(hf, ours, tokens[:, : min(pos, 128)])
                if dtype == torch.float32 and max(plain, hooked) >= 1e-4:
                    raise AssertionError(f"logits differ from Hugging Face by {max(plain, hooked):.1e} (no hooks / all hooks: {plain:.1e} / {hooked:.1e})")
                times = bench_shape(hf, ours, tokens, args)
                rows.append((str(dtype).removeprefix("torch."), f"{batch}x{pos}", times, plain, hooked))
                print_row(rows[-1], header=len(rows) == 1)
            del hf, ours
            if args.device == "cuda":
                torch.cuda.empty_cache()


def paired_ratio(times: dict[str, list[float]], name: str) -> float:
    """Median over rounds of (candidate / HF in the same round): slow spells hit both halves of a pair."""
    return statistics.median(ours / hf for ours, hf in zip(times[name], times["hf"]))


def print_row(row: tuple, header: bool) -> None:
    dtype, shape, times, plain, hooked = row
    if header:
        print(
            "| dtype | batch x pos | HF (ms) | ours (ms) | ours, all hooks (ms) | ours/HF | all hooks/HF "
            "| fastest rounds: ours/HF, all hooks/HF | max-abs logits vs HF (no hooks / all hooks) |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
    hf, ours, hooks = (statistics.median(times[name]) * 1e3 for name in ("hf", "ours", "ours_all_hooks"))
    ratio, hooks_ratio = paired_ratio(times, "ours"), paired_ratio(times, "ours_all_hooks")
    best = {name: min(values) for name, values in times.items()}
    best_ratios = f"{best['ours'] / best['hf']:.3f}, {best['ours_all_hooks'] / best['hf']:.3f}"
    print(
        f"| {dtype} | {shape} | {hf:.1f} | {ours:.1f} | {hooks:.1f} | **{ratio:.3f}** | **{hooks_ratio:.3f}** "
        f"| {best_ratios} | {plain:.1e} / {hooked:.1e} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
