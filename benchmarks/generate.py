"""Greedy generation speed (tokens/s) of HookedTransformer.generate against Hugging Face generate, same weights.

A random-init ``GPT2LMHeadModel`` of GPT-2 small's shape is saved to a temporary directory and
loaded by both libraries. Both decode greedily with a key/value cache from the same prompts for
exactly ``--new-tokens`` tokens (no EOS stop), and the generated tokens are checked to be equal.
Candidates alternate within each round (order rotating) after a warm-up round; the ratio is the
median of per-round ratios (ours / HF time, lower is better), so noise from other processes
falls on both alike.

    python benchmarks/generate.py                         # CPU, float32, batch 1, 32-token prompt, 64 new tokens
    python benchmarks/generate.py --batch 4 --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from interp_transformer import HookedTransformer  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own choice)")
    parser.add_argument("--n-layers", type=int, default=None, help="override GPT-2 small's 12 layers (for quick smoke tests)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=args.n_layers or 12, bos_token_id=50256, eos_token_id=50256)
    hf_model = GPT2LMHeadModel(config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        hf_model.save_pretrained(tmp)
        ours = HookedTransformer.from_pretrained(tmp).eval()
    prompt = torch.randint(0, config.vocab_size, (args.batch, args.prompt_len), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(prompt)

    def run_hf() -> torch.Tensor:
        return hf_model.generate(
            prompt, attention_mask=mask, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
            do_sample=False, pad_token_id=config.eos_token_id, use_cache=True,
        )

    def run_ours() -> torch.Tensor:
        return ours.generate(prompt, args.new_tokens, temperature=0, stop_at_eos=False)

    candidates = {"hf": run_hf, "ours": run_ours}
    with torch.no_grad():
        outputs = {name: fn() for name, fn in candidates.items()}  # warm-up, and the equality check
    same = outputs["hf"].tolist() == outputs["ours"].tolist()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for round_index in range(args.repeats):
        order = list(candidates)[round_index % 2 :] + list(candidates)[: round_index % 2]
        for name in order:
            start = time.perf_counter()
            with torch.no_grad():
                candidates[name]()
            times[name].append(time.perf_counter() - start)
    ratios = [o / h for o, h in zip(times["ours"], times["hf"])]
    new = args.batch * args.new_tokens
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {platform.machine()}, "
        f"{torch.get_num_threads()} threads, float32 CPU; batch {args.batch}, prompt {args.prompt_len}, "
        f"{args.new_tokens} new tokens, {config.n_layer} layers, {args.repeats} rounds"
    )
    print(f"same tokens as HF: {same}")
    print("| HF (tok/s) | ours (tok/s) | ours/HF time (median of per-round ratios) | fastest-round ratio |")
    print("|---|---|---|---|")
    hf_median, ours_median = statistics.median(times["hf"]), statistics.median(times["ours"])
    print(
        f"| {new / hf_median:.1f} | {new / ours_median:.1f} | {statistics.median(ratios):.3f} | "
        f"{min(times['ours']) / min(times['hf']):.3f} |"
    )
    if not same:
        sys.exit("generated tokens differ from Hugging Face's")


if __name__ == "__main__":
    main()
