"""``train_transcoder``: train a transcoder (reads one hook, predicts another) from an activation store.

A minimal sibling of ``train_sae`` built from its pieces (``ShuffledActivations``, ``TrainingSettings``,
the AuxK loss, ``MetricWindow``): one process, no checkpoints. The store must hold both hooks, e.g.
``blocks.1.ln2.hook_normalized`` (the MLP's input) and ``blocks.1.hook_mlp_out`` (its output).

Input and target rows stay paired because ``ShuffledActivations``' order is a function of
``(store, buffer_size, seed)`` and the number of rows per sequence only, not of the hook: two streams
with the same seed over the same store hand out the same (sequence, position) in every row. The
loss is SAELens's: squared error against the target summed over ``d_out``, averaged over rows (plus
AuxK for the TopK kinds, the decoder-norm weighted L1 for ``standard``). ``explained_variance`` in
the log is measured against the target's variance.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp_transformer.sae.activation_buffer import ShuffledActivations
from interp_transformer.sae.checkpoint import TrainingState
from interp_transformer.sae.config import SAEConfig
from interp_transformer.sae.dead_features import auxk_loss
from interp_transformer.sae.training import TRAINABLE_ARCHITECTURES
from interp_transformer.sae.training_metrics import MetricWindow
from interp_transformer.sae.training_settings import TrainingSettings
from interp_transformer.sae.transcoder import Transcoder
from interp_transformer.store import ActivationStore

UNSUPPORTED_SETTINGS = {"resample_every": None, "checkpoint_every": TrainingSettings.checkpoint_every}


class _OneProcess:
    """The ``Workers`` face ``MetricWindow.finish`` needs, for a run without torchrun."""

    world_size, rank, is_main = 1, 0, True


def paired_batches(store: ActivationStore, hook_in: str, hook_out: str, batch_size: int, buffer_size: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
    """``([batch d_in], [batch d_out])`` rows of the two hooks at the same (sequence, position), shuffled."""
    inputs = ShuffledActivations(store, hook_in, buffer_size, seed)
    targets = ShuffledActivations(store, hook_out, buffer_size, seed)
    if inputs.rows_per_sequence != targets.rows_per_sequence:
        raise ValueError(
            f"{hook_in!r} stores {inputs.rows_per_sequence} rows per sequence but {hook_out!r} stores "
            f"{targets.rows_per_sequence}; a transcoder needs both hooks at every position (cache them with the same pos_slice)"
        )
    return zip(inputs.batches(batch_size), targets.batches(batch_size))


def train_transcoder(
    store: ActivationStore | str,
    hook_in: str,
    hook_out: str,
    *,
    d_sae: int,
    architecture: str = "topk",
    k: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    log: Callable[[dict[str, float]], None] | None = None,
    **settings: Any,
) -> Transcoder:
    """Train a ``Transcoder`` of ``d_sae`` features mapping ``hook_in``'s activations to ``hook_out``'s.

    ``settings`` are ``TrainingSettings`` fields (steps, batch_size, lr, seed, buffer_size, aux_coefficient,
    l1_coefficient, dead_after_tokens, log_every); resampling and checkpoints are ``train_sae``'s only.
    ``log`` receives ``train_sae``'s metrics every ``log_every`` steps.
    """
    for name, default in UNSUPPORTED_SETTINGS.items():
        if settings.get(name, default) != default:
            raise ValueError(f"train_transcoder does not support {name}={settings[name]!r}; drop it (train_sae supports it for SAEs)")
    training = TrainingSettings.from_overrides(settings)
    if architecture not in TRAINABLE_ARCHITECTURES:
        raise ValueError(f"training architecture {architecture!r} is not supported; use one of {list(TRAINABLE_ARCHITECTURES)}")
    if hook_in == hook_out:
        raise ValueError(f"a transcoder reads one hook and writes another; both are {hook_in!r} (use train_sae for an SAE)")
    if not isinstance(store, ActivationStore):
        store = ActivationStore(store)
    batches = paired_batches(store, hook_in, hook_out, training.batch_size, training.buffer_size, training.seed)
    d_in = ShuffledActivations(store, hook_in, training.buffer_size, training.seed).d_in
    d_out = ShuffledActivations(store, hook_out, training.buffer_size, training.seed).d_in
    cfg = SAEConfig(
        d_in=d_in, d_sae=d_sae, d_out=d_out, architecture=architecture, k=k, hook_name=hook_in, hook_name_out=hook_out,
        model_name=store.manifest["settings"]["model"]["name"],
    )
    device = torch.device(device)
    transcoder = Transcoder(cfg, seed=training.seed).to(device)
    optimizer = torch.optim.Adam(transcoder.parameters(), lr=training.lr, betas=(training.adam_beta1, training.adam_beta2))
    state = TrainingState(step=0, tokens_since_fired=torch.zeros(d_sae, dtype=torch.int64, device=device))
    window = MetricWindow(d_out, device)
    transcoder.train()
    with tqdm(total=training.steps, unit="step", desc=f"training transcoder {hook_in} -> {hook_out}", disable=not progress) as bar:
        for x, target in batches:
            x, target = x.to(device), target.to(device)
            if state.step == 0:
                with torch.no_grad():  # start the prediction at the target's mean rather than at zero
                    transcoder.b_dec.copy_(target.mean(0))
            dead = state.tokens_since_fired >= training.dead_after_tokens
            fired = _step(transcoder, optimizer, x, target, dead, training, window)
            state.tokens_since_fired += training.batch_size
            state.tokens_since_fired[fired] = 0
            state.step += 1
            bar.update(1)
            if state.step % training.log_every == 0 or state.step == training.steps:
                metrics = window.finish(_OneProcess(), state, training)
                bar.set_postfix(mse=f"{metrics['mse']:.4g}", l0=f"{metrics['l0']:.1f}", ev=f"{metrics['explained_variance']:.3f}")
                if log is not None:
                    log(metrics)
            if state.step == training.steps:
                break
    transcoder.eval()
    return transcoder


def _step(transcoder: Transcoder, optimizer, x: Tensor, target: Tensor, dead: Tensor, training: TrainingSettings, window: MetricWindow) -> Tensor:
    acts_pre = transcoder.encode_pre(x)
    acts = transcoder.activation(acts_pre)
    error = transcoder.decode(acts) - target
    mse = error.pow(2).sum(-1).mean()
    sparsity = aux = mse.new_zeros(())
    if transcoder.cfg.architecture == "standard":
        sparsity = (acts * transcoder.W_dec.norm(dim=-1)).sum(-1).mean()
    elif training.aux_coefficient > 0 and bool(dead.any()):
        aux = auxk_loss(transcoder, acts_pre, -error.detach(), dead)
    loss = mse + training.l1_coefficient * sparsity + training.aux_coefficient * aux
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        active = acts > 0
        window.add(target, error, active, loss, sparsity, aux)
    return active.any(0)
