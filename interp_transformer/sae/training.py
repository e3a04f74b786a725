"""``train_sae``: train a sparse autoencoder on one hook's activations streamed from an activation store.

The data come from ``ShuffledActivations`` (bounded memory, seeded order), the loss is SAELens's
(squared error summed over ``d_in``, averaged over rows; plus the decoder-norm weighted L1 for
``standard``, or AuxK for ``topk``/``batchtopk``), dead features can be resampled, and the state is
checkpointed atomically so that a resumed run ends bitwise equal to an uninterrupted one.

Under ``torchrun`` every process reads the same global batch of ``batch_size`` rows and trains
on its ``batch_size / world_size`` slice; gradients are averaged across processes, so the result
is the one-process result up to floating-point summation order. (BatchTopK picks its features
within each process's slice, so there the world size changes what is computed.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm.auto import tqdm

from interp_transformer.sae.activation_buffer import ShuffledActivations
from interp_transformer.sae.checkpoint import TrainingState, config_to_json, load_checkpoint, read_checkpoint_info, save_checkpoint
from interp_transformer.sae.config import SAEConfig
from interp_transformer.sae.dead_features import auxk_loss, resample_dead_features
from interp_transformer.sae.dictionary import SparseAutoencoder
from interp_transformer.sae.training_metrics import MetricWindow
from interp_transformer.sae.training_settings import TrainingSettings
from interp_transformer.store import ActivationStore
from interp_transformer.store.distributed import Workers, workers

TRAINABLE_ARCHITECTURES = ("standard", "topk", "batchtopk")


def train_sae(
    store: ActivationStore | str | Path,
    hook: str,
    config: SAEConfig | None = None,
    *,
    d_sae: int | None = None,
    architecture: str | None = None,
    k: int | None = None,
    start_from: SparseAutoencoder | None = None,
    device: str | torch.device | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[dict[str, float]], None] | None = None,
    **settings: Any,
) -> SparseAutoencoder:
    """Train an SAE on ``hook``'s activations in ``store`` (a folder written by ``cache_dataset``).

    The dictionary is ``config`` or, without one, ``d_sae`` features of ``architecture`` (default
    ``"topk"``; ``k`` for the TopK kinds), initialised from ``seed`` with ``b_dec`` at the first batch's mean; or training
    continues from a copy of ``start_from``'s weights (the argument itself is left unchanged). ``settings`` are ``TrainingSettings`` fields (steps, batch_size, lr, ...).
    With ``checkpoint_dir`` the state is saved there every ``checkpoint_every`` steps and at the end;
    ``resume=True`` continues from it. ``log`` receives the metrics every ``log_every`` steps:
    ``step, tokens, loss, mse, sparsity_loss, aux_loss, l0, explained_variance, dead_fraction``
    (averages over the rows since the previous log).
    """
    training = TrainingSettings.from_overrides(settings)
    if not isinstance(store, ActivationStore):
        store = ActivationStore(store)
    stream = ShuffledActivations(store, hook, training.buffer_size, training.seed)
    if start_from is not None:
        if not isinstance(start_from, SparseAutoencoder):
            raise TypeError(f"start_from must be a SparseAutoencoder, got {type(start_from).__name__}")
        if config is not None or d_sae is not None or architecture is not None or k is not None:
            raise ValueError("pass either start_from or config/d_sae/architecture/k: start_from already fixes the dictionary")
        config = start_from.cfg
    cfg = dictionary_config(config, d_sae, architecture, k, hook, stream.d_in, store)
    stream.dtype = cfg.dtype
    device = _device(device)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    info = {"settings": training.to_dict(), "config": config_to_json(cfg), "hook": hook, "store_fingerprint": store.manifest["settings_fingerprint"]}
    with workers(device) as team:
        if training.batch_size % team.world_size:
            raise ValueError(f"batch_size {training.batch_size} must be a multiple of the number of processes ({team.world_size}): each trains on an equal slice")
        sae = SparseAutoencoder(cfg, seed=training.seed)
        if start_from is not None:
            sae.load_state_dict(start_from.state_dict())
        sae.to(device)
        optimizer = torch.optim.Adam(sae.parameters(), lr=training.lr, betas=(training.adam_beta1, training.adam_beta2))
        state = TrainingState(step=0, tokens_since_fired=torch.zeros(cfg.d_sae, dtype=torch.int64, device=device))
        if checkpoint_dir is not None:
            state = _start_or_resume(checkpoint_dir, resume, info, training, sae, optimizer, state)
        _train(sae, optimizer, state, stream, training, team, device, checkpoint_dir, info, progress, log, start_from is None)
    sae.eval()
    return sae


def dictionary_config(config: SAEConfig | None, d_sae: int | None, architecture: str | None, k: int | None, hook: str, d_in: int, store: ActivationStore) -> SAEConfig:
    """The SAE to train: ``config`` checked against the hook, or one built from ``d_sae``/``architecture``/``k``."""
    if config is None:
        if d_sae is None:
            raise ValueError(f"pass d_sae (the number of features; e.g. {8 * d_in} for 8x the hook's width {d_in}) or a config")
        config = SAEConfig(d_in=d_in, d_sae=d_sae, architecture=architecture or "topk", k=k, hook_name=hook, model_name=store.manifest["settings"]["model"]["name"])
    elif not isinstance(config, SAEConfig):
        raise TypeError(f"config must be an SAEConfig, got {type(config).__name__}")
    elif d_sae is not None or architecture is not None or k is not None:
        raise ValueError("pass either config or d_sae/architecture/k, not both: the config already fixes them")
    if config.is_transcoder:
        raise ValueError("train_sae trains SAEs (one hook in, the same hook out); the config describes a transcoder (hook_name_out/d_out set)")
    if config.architecture not in TRAINABLE_ARCHITECTURES:
        raise ValueError(f"training architecture {config.architecture!r} is not supported; use one of {list(TRAINABLE_ARCHITECTURES)}")
    if config.d_in != d_in:
        raise ValueError(f"the config has d_in={config.d_in}, but {hook!r} in the store at {store.path} has width {d_in}; set d_in={d_in}")
    if config.hook_name not in (None, hook):
        raise ValueError(f"the config reads {config.hook_name!r} but training reads {hook!r}; make them the same hook")
    return config if config.hook_name == hook else config.replace(hook_name=hook)


def _start_or_resume(folder: Path, resume: bool, info: dict[str, Any], training: TrainingSettings, sae: SparseAutoencoder, optimizer: torch.optim.Optimizer, state: TrainingState) -> TrainingState:
    stored = read_checkpoint_info(folder)
    if stored is None:
        return state
    if not resume:
        raise FileExistsError(f"{folder} already holds a training checkpoint (step {stored['step']}); pass resume=True (--resume) to continue it, or choose another folder")
    problems = training.differences_that_block_resume(stored["settings"])
    problems += [f"{key}: stored {stored.get(key)!r}, now {info[key]!r}" for key in ("config", "hook", "store_fingerprint") if stored.get(key) != info[key]]
    if problems:
        raise ValueError(f"the checkpoint in {folder} was made with different settings, so it cannot be resumed: {'; '.join(problems)}")
    if stored["step"] > training.steps:
        raise ValueError(f"the checkpoint in {folder} is at step {stored['step']}, past steps={training.steps}; pass steps >= {stored['step']} to resume it")
    return load_checkpoint(folder, sae, optimizer)


def _train(sae, optimizer, state, stream, training, team: Workers, device, checkpoint_dir, info, progress, log, fresh: bool) -> None:
    local_rows = training.batch_size // team.world_size
    mine = slice(team.rank * local_rows, (team.rank + 1) * local_rows)
    batches = stream.batches(training.batch_size, start_row=state.step * training.batch_size)
    window = MetricWindow(sae.cfg.d_in, device)
    bar = tqdm(total=training.steps, initial=state.step, unit="step", desc=f"training SAE on {sae.cfg.hook_name}", disable=not (progress and team.is_main))
    sae.train()
    with bar:
        while state.step < training.steps:
            batch = next(batches).to(device, non_blocking=True)
            if state.step == 0 and fresh:
                with torch.no_grad():  # start the reconstruction at the data's mean rather than at zero
                    sae.b_dec.copy_(batch.mean(0))
            dead = state.tokens_since_fired >= training.dead_after_tokens
            if training.resample_every is not None and state.step > 0 and state.step % training.resample_every == 0:
                resample_dead_features(sae, optimizer, batch, dead, training.seed, state.step)
                state.tokens_since_fired[dead] = 0
                dead = torch.zeros_like(dead)
            fired = _training_step(sae, optimizer, batch[mine], dead, training, team, window)
            state.tokens_since_fired += training.batch_size
            state.tokens_since_fired[fired] = 0
            state.step += 1
            bar.update(1)
            if state.step % training.log_every == 0 or state.step == training.steps:
                metrics = window.finish(team, state, training)
                bar.set_postfix(mse=f"{metrics['mse']:.4g}", l0=f"{metrics['l0']:.1f}", ev=f"{metrics['explained_variance']:.3f}", dead=f"{metrics['dead_fraction']:.3f}")
                if log is not None:
                    log(metrics)
            if checkpoint_dir is not None and (state.step % training.checkpoint_every == 0 or state.step == training.steps):
                if team.is_main:
                    save_checkpoint(checkpoint_dir, sae, optimizer, state, info)
                team.barrier()


def _training_step(sae, optimizer, x: Tensor, dead: Tensor, training: TrainingSettings, team: Workers, window: MetricWindow) -> Tensor:
    """One optimizer step on this process's rows; returns which features fired in anyone's rows."""
    architecture = sae.cfg.architecture
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=training.precision == "bfloat16"):
        acts_pre = sae.encode_pre(x)
        acts = sae.activation(acts_pre)
        recons = sae.decode(acts)
    error = recons.float() - x
    mse = error.pow(2).sum(-1).mean()
    sparsity = aux = mse.new_zeros(())
    if architecture == "standard":
        sparsity = (acts.float() * sae.W_dec.norm(dim=-1)).sum(-1).mean()
    elif training.aux_coefficient > 0 and bool(dead.any()):
        aux = auxk_loss(sae, acts_pre, -error.detach(), dead)
    loss = mse + training.l1_coefficient * sparsity + training.aux_coefficient * aux
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if team.world_size > 1:
        for parameter in sae.parameters():
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad)
                parameter.grad.div_(team.world_size)
    if sae.cfg.normalize_decoder:
        _remove_gradient_along_decoder_rows(sae)
    optimizer.step()
    if sae.cfg.normalize_decoder:
        sae.set_decoder_norm_to_unit_norm()
    with torch.no_grad():
        active = acts > 0
        fired = active.any(0)
        if team.world_size > 1:
            fired = fired.to(torch.int32)
            dist.all_reduce(fired, op=dist.ReduceOp.MAX)
            fired = fired.bool()
        window.add(x, error, active, loss, sparsity, aux)
    return fired


@torch.no_grad()
def _remove_gradient_along_decoder_rows(sae: SparseAutoencoder) -> None:
    """With unit-norm decoder rows, only the gradient orthogonal to each row moves it along the sphere."""
    if sae.W_dec.grad is not None:
        rows = sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        sae.W_dec.grad -= (sae.W_dec.grad * rows).sum(-1, keepdim=True) * rows


def _device(requested: str | torch.device | None) -> torch.device:
    if requested is not None:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")
