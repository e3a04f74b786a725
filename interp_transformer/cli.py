"""The ``interp-transformer`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from interp_transformer.sae.command import add_sae_command, run_sae_command
from interp_transformer.store.command import add_cache_command, run_cache_command


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="interp-transformer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a model on a prompt and write a small report")
    demo.add_argument("--model", default=None, help="model name or local directory (default: the embedded induction model)")
    demo.add_argument("--prompt", default=None, help="text to run (default: a repeated random sequence)")
    demo.add_argument("--out", type=Path, required=True, help="output folder")
    commands.add_parser("models", help="list the names from_pretrained accepts")
    add_cache_command(commands)
    add_sae_command(commands)
    args = parser.parse_args(argv)
    if args.command == "cache":
        return run_cache_command(args)
    if args.command == "sae":
        return run_sae_command(args)
    if args.command == "models":
        from interp_transformer.loading import available_models

        for kind, names in available_models().items():
            print(f"{kind}: {', '.join(names) or '(none)'}")
        return 0
    return run_demo_command(args)


def run_demo_command(args: argparse.Namespace) -> int:
    from interp_transformer.demo import run_demo

    try:
        run_demo(args.model, args.prompt, args.out)
    except (ValueError, KeyError, TypeError, OSError) as error:  # bad settings: one line, as `cache` reports them
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"interp-transformer demo: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
