"""The ``interp-transformer sae`` command group; ``sae train`` trains an SAE on one hook of an activation store.

``--out`` receives the dictionary in SAELens's format (``cfg.json`` + ``sae_weights.safetensors``),
``training_log.jsonl`` (one line of metrics every ``--log-every`` steps) and ``checkpoints/``;
``--resume`` continues from the checkpoint there. Runs the same under ``torchrun --nproc_per_node N``
(data-parallel: each process trains on 1/N of every batch).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from interp_transformer.sae.training_settings import PRECISIONS, TrainingSettings

ARCHITECTURE_CHOICES = ("topk", "batchtopk", "standard")
DEFAULT_K = 32
DEFAULT_EXPANSION = 8
LOG_FILE = "training_log.jsonl"
CHECKPOINT_FOLDER = "checkpoints"
DEFAULTS = TrainingSettings()
# flag -> (argparse dest, the smallest allowed value, whether that value itself is allowed)
NUMBER_FLAGS = {
    "--steps": ("steps", 1, True), "--batch-size": ("batch_size", 1, True), "--buffer-size": ("buffer_size", 1, True),
    "--dead-after-tokens": ("dead_after_tokens", 1, True), "--resample-every": ("resample_every", 1, True),
    "--checkpoint-every": ("checkpoint_every", 1, True), "--log-every": ("log_every", 1, True),
    "--d-sae": ("d_sae", 1, True), "--k": ("k", 1, True), "--seed": ("seed", 0, True),
    "--lr": ("lr", 0, False), "--expansion-factor": ("expansion_factor", 0, False),
    "--l1-coefficient": ("l1_coefficient", 0, True), "--aux-coefficient": ("aux_coefficient", 0, True),
}
SETTING_HELP = {
    "steps": "optimizer steps", "batch_size": "activation rows (tokens) per step, across all processes",
    "buffer_size": "rows in the shuffling buffer (bounds memory)", "dead_after_tokens": "a feature silent this many tokens is dead",
    "resample_every": "re-initialise dead features every this many steps", "checkpoint_every": "steps between checkpoints",
    "log_every": "steps between log lines", "seed": "initial weights, data order and resampling draws",
    "lr": "Adam learning rate", "l1_coefficient": "sparsity penalty (standard)", "aux_coefficient": "AuxK loss weight (topk, batchtopk)",
}


def add_sae_command(commands: argparse._SubParsersAction) -> None:
    sae = commands.add_parser("sae", help="sparse autoencoders: train one on an activation store")
    actions = sae.add_subparsers(dest="sae_command", required=True)
    train = actions.add_parser(
        "train",
        help="train an SAE on one hook of a store written by `interp-transformer cache`",
        description="Train a sparse autoencoder on one hook's activations from an activation store. --out receives the "
        "dictionary in SAELens's format (cfg.json + sae_weights.safetensors), training_log.jsonl and checkpoints/. "
        "Runs the same under `torchrun --nproc_per_node N` (each process trains on 1/N of every batch).",
    )
    train.add_argument("--store", type=Path, required=True, help="activation store folder (from `interp-transformer cache`)")
    train.add_argument("--hook", required=True, help="hook whose activations to train on, e.g. blocks.1.hook_resid_pre")
    train.add_argument("--out", type=Path, required=True, help="output folder: the SAE (SAELens format), training_log.jsonl, checkpoints/")
    train.add_argument("--architecture", default="topk", help=f"one of {', '.join(ARCHITECTURE_CHOICES)}")
    train.add_argument("--d-sae", type=int, default=None, help="number of features (default: --expansion-factor x the hook's width)")
    train.add_argument("--expansion-factor", type=float, default=None, help=f"d_sae as a multiple of the hook's width (default {DEFAULT_EXPANSION})")
    train.add_argument("--k", type=int, default=None, help=f"active features per row for topk/batchtopk (default {DEFAULT_K})")
    train.add_argument("--normalize-decoder", action="store_true", help="keep decoder rows at unit norm")
    train.add_argument("--apply-b-dec-to-input", action="store_true", help="subtract b_dec from the input before encoding")
    for flag, (dest, _, _) in NUMBER_FLAGS.items():
        if dest in TrainingSettings.field_names():
            default = getattr(DEFAULTS, dest)
            train.add_argument(flag, type=type(default) if default is not None else int, default=default, help=f"{SETTING_HELP[dest]} (default {default})")
    train.add_argument("--precision", default=DEFAULTS.precision, help=f"one of {', '.join(PRECISIONS)} (bfloat16: autocast matmuls)")
    train.add_argument("--device", default=None, help="default: cuda (this process's LOCAL_RANK under torchrun) if available, else cpu")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_sae_command(args: argparse.Namespace) -> int:
    try:
        return _train(args)
    except (ValueError, KeyError, TypeError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"interp-transformer sae {args.sae_command}: error: {message}", file=sys.stderr)
        return 1


def check_flags(args: argparse.Namespace) -> None:
    """Settings errors in the user's terms (the flag to change), found before the store is read or --out is touched."""
    for flag, (dest, minimum, inclusive) in NUMBER_FLAGS.items():
        value = getattr(args, dest)
        if value is None:
            continue
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            bound = f"at least {minimum}" if inclusive else f"greater than {minimum}"
            raise ValueError(f"{flag} {value:g} must be {bound}")
    if args.architecture not in ARCHITECTURE_CHOICES:
        raise ValueError(f"--architecture {args.architecture!r} is not one of {list(ARCHITECTURE_CHOICES)}")
    if args.precision not in PRECISIONS:
        raise ValueError(f"--precision {args.precision!r} is not one of {list(PRECISIONS)}")
    if args.k is not None and args.architecture == "standard":
        raise ValueError("--k applies to --architecture topk or batchtopk; leave it out for standard (use --l1-coefficient for sparsity)")
    if args.d_sae is not None and args.expansion_factor is not None:
        raise ValueError("pass --d-sae or --expansion-factor, not both")


def _train(args: argparse.Namespace) -> int:
    from interp_transformer.sae.activation_buffer import hook_row_layout
    from interp_transformer.sae.training import train_sae
    from interp_transformer.store import ActivationStore

    check_flags(args)
    store = ActivationStore(args.store)
    _, d_in = hook_row_layout(store, args.hook)
    d_sae = args.d_sae if args.d_sae is not None else max(1, round((args.expansion_factor or DEFAULT_EXPANSION) * d_in))
    k = None if args.architecture == "standard" else (args.k if args.k is not None else min(DEFAULT_K, d_sae))
    if k is not None and k > d_sae:
        raise ValueError(f"--k {k} is larger than the number of features ({d_sae}); lower --k or raise --d-sae")
    if (args.out / "cfg.json").exists() and not args.resume:
        raise FileExistsError(f"{args.out} already holds a trained dictionary; pass --resume to continue its run, or choose another --out")
    is_main = int(os.environ.get("RANK", "0")) == 0
    settings = {name: getattr(args, name) for name in TrainingSettings.field_names() if hasattr(args, name)}  # Adam's betas keep their defaults
    args.out.mkdir(parents=True, exist_ok=True)
    log_file = open(args.out / LOG_FILE, "a" if args.resume else "w", encoding="utf-8") if is_main else None
    try:
        from interp_transformer.sae import SAEConfig

        config = SAEConfig(
            d_in=d_in, d_sae=d_sae, architecture=args.architecture, k=k, hook_name=args.hook,
            normalize_decoder=args.normalize_decoder, apply_b_dec_to_input=args.apply_b_dec_to_input,
            model_name=store.manifest["settings"]["model"]["name"],
        )
        sae = train_sae(
            store, args.hook, config, device=args.device, checkpoint_dir=args.out / CHECKPOINT_FOLDER, resume=args.resume,
            progress=not args.no_progress, log=(lambda metrics: log_file.write(json.dumps(metrics) + "\n")) if log_file else None, **settings,
        )
    finally:
        if log_file is not None:
            log_file.close()
    if is_main:
        sae.to("cpu").save(args.out)
        print(f"trained {config.architecture} SAE ({d_in} -> {d_sae} features) on {args.hook} for {args.steps} steps: {args.out}")
    return 0
