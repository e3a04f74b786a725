"""Sparse dictionaries: spliced forward vs plain forward, and ``train_sae`` vs a plain PyTorch training loop.

Two sections, run side by side in one process: ``splice`` (the cost of ``splice``/``run_with_saes``
over the plain forward; target <= 1.2x) and ``train`` (``train_sae`` streaming from an activation
store vs a plain PyTorch loop over the same activations already in memory; target <= 1.5x on the CPU).

Timings are medians of interleaved rounds after a warm-up round; ratios are medians of per-round
ratios, with their min..max spread.

    python benchmarks/sae.py                                        # CPU, float32, both sections
    python benchmarks/sae.py --sections train --rounds 7
    python benchmarks/sae.py --sections train --device cuda --precision bfloat16 --d-in 768 --batch-size 4096
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from interp_transformer import HookedTransformer, TransformerConfig  # noqa: E402
from interp_transformer.sae import SAEConfig, SparseAutoencoder  # noqa: E402
from interp_transformer.sae.training import train_sae  # noqa: E402
from interp_transformer.store import ActivationStore, cache_dataset  # noqa: E402

SECTIONS = ("splice", "train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from {SECTIONS}")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (after one warm-up round)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    # splice section
    parser.add_argument("--splice-shape", default="8x128", help="splice: BATCHxPOS of the token batch")
    parser.add_argument("--splice-n-layers", type=int, default=12, help="splice: layers of the GPT-2-small-shaped random model")
    parser.add_argument("--splice-expansion", type=int, default=8, help="splice: d_sae = expansion x d_model")
    parser.add_argument("--splice-clock", choices=("wall", "cpu"), default="wall",
                        help="splice: wall time, or this process's CPU time (steadier on a loaded machine; use with --threads 1)")
    # train section
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32", help="train: bfloat16 autocasts both loops")
    parser.add_argument("--d-in", type=int, default=256, help="train: width of the cached residual stream (the random model's d_model)")
    parser.add_argument("--expansion", type=int, default=8, help="train: d_sae = expansion x d_in")
    parser.add_argument("--k", type=int, default=32, help="train: TopK's k")
    parser.add_argument("--batch-size", type=int, default=1024, help="train: rows per step")
    parser.add_argument("--steps", type=int, default=20, help="train: steps per timed round")
    parser.add_argument("--train-clock", choices=("wall", "cpu"), default="wall",
                        help="train: wall time, or this process's CPU time (steadier on a loaded machine; use with --threads 1)")
    args = parser.parse_args(argv)
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"--sections {sorted(unknown)} unknown; choose from {SECTIONS}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given but torch.cuda.is_available() is False")
    if args.splice_clock == "cpu" and (args.threads != 1 or args.device == "cuda"):
        parser.error("--splice-clock cpu measures this process's CPU work and needs --device cpu --threads 1")
    return args


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved(
    candidates: dict[str, Callable[[], Any]], rounds: int, device: str, clock: Callable[[], float] = time.perf_counter
) -> dict[str, list[float]]:
    """Seconds per call of each candidate, one call each per round, after one untimed warm-up round.

    ``clock=time.process_time`` (with one thread) counts this process's CPU time only, so time spent
    descheduled by other processes on a loaded machine does not land on whichever candidate was running.
    """
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for round_index in range(rounds + 1):
        for name, fn in candidates.items():
            synchronize(device)
            start = clock()
            fn()
            synchronize(device)
            if round_index:
                times[name].append(clock() - start)
    return times


def ratio_summary(times: dict[str, list[float]], name: str, reference: str) -> tuple[float, float, float]:
    ratios = [a / b for a, b in zip(times[name], times[reference])]
    return statistics.median(ratios), min(ratios), max(ratios)


# ---------------------------------------------------------------- section: splice (spliced forward vs plain forward)
SPLICE_HOOK = "blocks.{layer}.hook_resid_pre"


def run_splice_section(args: argparse.Namespace) -> None:
    """A GPT-2-small-shaped random model with one SAE (d_sae = 8 x d_model) on the middle layer's resid_pre."""
    from interp_transformer.sae import sae_hook_name, splice

    batch, pos = (int(n) for n in args.splice_shape.split("x"))
    cfg = TransformerConfig(n_layers=args.splice_n_layers, seed=0)  # GPT-2 small's widths, vocabulary and context
    model = HookedTransformer(cfg).to(args.device).eval()
    hook = SPLICE_HOOK.format(layer=cfg.n_layers // 2)
    sae = SparseAutoencoder(SAEConfig(d_in=cfg.d_model, d_sae=args.splice_expansion * cfg.d_model, hook_name=hook), seed=0)
    sae = sae.to(args.device).eval()
    tokens = torch.randint(0, cfg.d_vocab, (batch, pos), generator=torch.Generator().manual_seed(1)).to(args.device)
    features = sae_hook_name(sae)

    def spliced() -> Any:
        with splice(model, sae):
            return model(tokens)

    def spliced_with_error_caching_features() -> Any:
        with splice(model, sae, include_error=True):
            return model.run_with_cache(tokens, names_filter=features)

    with torch.inference_mode():
        times = interleaved(
            {"plain forward": lambda: model(tokens), "spliced (reconstruction)": spliced,
             "spliced + error, features cached": spliced_with_error_caching_features},
            args.rounds,
            args.device,
            clock=time.process_time if args.splice_clock == "cpu" else time.perf_counter,
        )
    print(f"## splice: GPT-2-small-shaped random model ({cfg.n_layers} layers, d_model {cfg.d_model}), SAE d_sae={sae.cfg.d_sae} "
          f"at {hook}, tokens {batch}x{pos}, {args.device} float32, {args.rounds} rounds, {args.splice_clock} clock "
          "(target spliced / plain <= 1.2)")
    print("| candidate | median ms | / plain forward (median, per-round min..max) |")
    print("|---|---|---|")
    for name, values in times.items():
        median, low, high = ratio_summary(times, name, "plain forward")
        print(f"| {name} | {statistics.median(values) * 1e3:.1f} | {median:.3f} ({low:.3f}..{high:.3f}) |")
    print()


# ---------------------------------------------------------------- section: train (train_sae vs a plain loop)
HOOK = "blocks.0.hook_resid_post"


def make_store(args: argparse.Namespace, folder: Path) -> ActivationStore:
    """A random model's residual stream over random tokens: enough rows for one round of steps."""
    d_in = args.d_in
    cfg = TransformerConfig(d_model=d_in, n_layers=1, n_heads=max(1, d_in // 64), d_head=min(64, d_in), d_mlp=4 * d_in, d_vocab=1000, n_ctx=128, seed=0)
    model = HookedTransformer(cfg).eval()
    n_sequences = -(-args.steps * args.batch_size // 128)
    tokens = torch.randint(0, cfg.d_vocab, (n_sequences, 128), generator=torch.Generator().manual_seed(0))
    cache_dataset(model, tokens, HOOK, folder, progress=False)
    return ActivationStore(folder)


def plain_loop(rows: torch.Tensor, cfg: SAEConfig, args: argparse.Namespace) -> torch.Tensor:
    """The reference: TopK SAE, SAELens's loss, Adam, over a tensor already on the device, shuffled once."""
    init = SparseAutoencoder(cfg, seed=0)
    W_enc, b_enc, W_dec, b_dec = (torch.nn.Parameter(p.detach().clone().to(args.device)) for p in (init.W_enc, init.b_enc, init.W_dec, init.b_dec))
    with torch.no_grad():
        b_dec.copy_(rows[: args.batch_size].mean(0))
    optimizer = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=3e-4)
    order = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(0)).to(args.device)
    for step in range(args.steps):
        x = rows[order[step * args.batch_size : (step + 1) * args.batch_size]]
        with torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.precision == "bfloat16"):
            pre = x @ W_enc + b_enc
            top = pre.topk(cfg.k, dim=-1)
            acts = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
            recons = acts @ W_dec + b_dec
        loss = (recons.float() - x).pow(2).sum(-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.detach()


def run_train_section(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(args, Path(tmp) / "store")
        d_in = store.cfg.d_model
        cfg = SAEConfig(d_in=d_in, d_sae=args.expansion * d_in, architecture="topk", k=args.k, hook_name=HOOK)
        rows = store.rows(0, len(store))[HOOK].reshape(-1, d_in).float().to(args.device)
        settings = dict(steps=args.steps, batch_size=args.batch_size, lr=3e-4, buffer_size=max(args.batch_size * 8, 2**15), precision=args.precision, log_every=args.steps, progress=False)
        times = interleaved(
            {
                "plain loop": lambda: plain_loop(rows, cfg, args),
                "train_sae": lambda: train_sae(store, HOOK, cfg, device=args.device, seed=0, **settings),
            },
            args.rounds,
            args.device,
            clock=time.process_time if args.train_clock == "cpu" else time.perf_counter,
        )
    tokens = args.steps * args.batch_size
    median, low, high = ratio_summary(times, "train_sae", "plain loop")
    print(f"## train: TopK SAE d_in={d_in} d_sae={cfg.d_sae} k={args.k}, batch {args.batch_size}, {args.steps} steps per round, "
          f"{args.device} {args.precision}, {args.rounds} rounds, {args.train_clock} clock (target train_sae / plain <= 1.5 on the CPU)")
    print("| candidate | median s / round | tokens / s |")
    print("|---|---|---|")
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"| {name} | {seconds:.3f} | {tokens / seconds:,.0f} |")
    print(f"train_sae / plain loop: {median:.3f} (per-round ratios {low:.3f}..{high:.3f})")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))
    if "splice" in args.sections:
        run_splice_section(args)
    if "train" in args.sections:
        run_train_section(args)


if __name__ == "__main__":
    main()
