"""Feature analysis: each feature's top-activating contexts and activation histogram, in one pass over a store.

Axis words: ``feature`` (the analysed features, a subset of ``d_sae``), ``k`` (rank among a
feature's largest activations), ``window`` (the tokens around an activation: ``before`` tokens,
the activating token, ``after`` tokens), ``bin`` (a histogram bin).

One pass, bounded memory: sequences are read ``batch_size`` at a time and folded into a running
top-k per feature, so memory holds one batch's feature activations plus ``k x feature x window``
entries, whatever the size of the store. Ties are broken deterministically: equal activations
rank by (sequence, position), earliest first, so the result does not depend on ``batch_size``.

The histogram needs no second pass: each feature's bins have a power-of-two width, and when a
larger activation arrives the width doubles and neighbouring bins merge, which is exact; the
final width is the smallest power of two with ``max_activation < width * bins``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp_transformer import slicing
from interp_transformer.sae.dictionary import SparseAutoencoder
from interp_transformer.sae.feature_checks import check_count, check_dictionary, check_features, check_window

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer
    from interp_transformer.store import ActivationStore

DEFAULT_WINDOW = (8, 3)
DEFAULT_BINS = 40


@dataclass(frozen=True)
class ActivatingContext:
    """One of a feature's top activations: where it is and the tokens around it (cut at the sequence's ends)."""

    sequence: int  # index of the sequence in the store (or the token tensor)
    position: int  # token position of the activation in that sequence
    activation: float
    tokens: list[int]  # the window's token ids
    activations: list[float]  # the feature's activation at each window token (nan where none was stored)
    center: int  # index in ``tokens`` of the activating token


@dataclass(frozen=True)
class FeatureActivations:
    """What one pass found for each analysed feature. Rows follow ``features``; missing entries
    (a feature that fired fewer than ``k`` times) have value nan, sequence/position/tokens -1."""

    hook_name: str
    features: Tensor  # [feature] indices into d_sae
    values: Tensor  # [feature k] largest activations, descending
    sequences: Tensor  # [feature k]
    positions: Tensor  # [feature k] token positions
    window_tokens: Tensor  # [feature k window] token ids, -1 outside the sequence
    window_activations: Tensor  # [feature k window] the feature's activation there, nan where unknown
    before: int  # window index of the activating token
    n_tokens: int  # activations seen per feature
    n_firing: Tensor  # [feature] activations above min_activation
    activation_sum: Tensor  # [feature] float64 sum of those activations
    histogram: Tensor  # [feature bin] counts of activations above min_activation
    bin_width: Tensor  # [feature] float64; bin i holds [i * width, (i + 1) * width); 0 if never fired
    min_activation: float

    def row(self, feature: int) -> int:
        """The row of ``feature`` (an index into d_sae) in this result."""
        matches = (self.features == feature).nonzero()
        if isinstance(feature, bool) or not isinstance(feature, int) or matches.numel() == 0:
            shown = self.features.tolist() if self.features.numel() <= 20 else f"{self.features.numel()} features"
            raise KeyError(f"feature {feature!r} was not analysed; this result holds {shown}")
        return int(matches[0, 0])

    def contexts(self, feature: int) -> list[ActivatingContext]:
        """``feature``'s top activating contexts, largest first."""
        row = self.row(feature)
        found = []
        for rank in range(self.values.shape[1]):
            if int(self.sequences[row, rank]) < 0:
                break
            tokens = self.window_tokens[row, rank]
            inside = (tokens >= 0).nonzero().squeeze(1)
            first, last = int(inside[0]), int(inside[-1]) + 1
            found.append(
                ActivatingContext(
                    sequence=int(self.sequences[row, rank]),
                    position=int(self.positions[row, rank]),
                    activation=float(self.values[row, rank]),
                    tokens=tokens[first:last].tolist(),
                    activations=self.window_activations[row, rank, first:last].tolist(),
                    center=self.before - first,
                )
            )
        return found

    @property
    def firing_fraction(self) -> Tensor:
        """[feature] fraction of activations above ``min_activation``."""
        return self.n_firing.double() / max(self.n_tokens, 1)

    @property
    def mean_firing_activation(self) -> Tensor:
        """[feature] mean of the activations above ``min_activation`` (nan for a feature that never fired)."""
        return self.activation_sum / self.n_firing.double()

    def bin_edges(self, feature: int) -> Tensor:
        """[bin + 1] float64 edges of ``feature``'s histogram."""
        row = self.row(feature)
        return self.bin_width[row] * torch.arange(self.histogram.shape[1] + 1, dtype=torch.float64)


def top_activating_contexts(
    store: "ActivationStore | str | Path",
    sae: SparseAutoencoder,
    *,
    k: int = 10,
    features: Sequence[int] | Tensor | None = None,
    window: tuple[int, int] = DEFAULT_WINDOW,
    bins: int = DEFAULT_BINS,
    min_activation: float = 0.0,
    batch_size: int = 8,
    hook: str | None = None,
    progress: bool = True,
) -> FeatureActivations:
    """The ``k`` largest activations of each feature over a store written by ``cache_dataset``, with
    ``window = (before, after)`` tokens around each, and each feature's activation histogram.

    ``hook`` defaults to ``sae.cfg.hook_name`` (where the dictionary reads); the store must hold it.
    ``features`` (default all ``d_sae``) limits the analysis, and the memory, to some features.
    Only activations above ``min_activation`` count as firing (ranked, counted, binned).
    """
    from interp_transformer.store import ActivationStore

    hook = check_dictionary(sae, hook)
    if isinstance(store, (str, Path)):
        store = ActivationStore(store)
    if not isinstance(store, ActivationStore):
        raise TypeError(f"store must be an ActivationStore or the path of one, got {type(store).__name__}")
    settings = store.manifest["settings"]
    if hook not in settings["hooks"]:
        raise KeyError(
            f"the store at {store.path} does not hold {hook!r} (it holds {list(settings['hooks'])}); cache it with "
            f"cache_dataset(model, corpus, [{hook!r}], out), or pass the hook this dictionary reads as hook="
        )
    if store.hooks != [hook]:
        store = ActivationStore(store.path, hooks=[hook])  # read only this hook's activations
    seq_len = settings["tokens"]["seq_len"]
    pos_slice = slicing.from_json(settings["pos_slice"])
    positions = slicing.apply_slice(torch.arange(seq_len), pos_slice, 0).reshape(-1)
    stored_shape = tuple(settings["hooks"][hook]["shape"])
    width_shape = stored_shape[1:] if slicing.keeps_axis(pos_slice) else stored_shape
    _check_width(sae, hook, width_shape, f"the store at {store.path}")
    check_count("batch_size", batch_size)

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        for batch in store.iter_batches(batch_size):
            yield batch["tokens"], batch[hook].reshape(batch["tokens"].shape[0], positions.numel(), -1)

    return _one_pass(batches(), len(store), seq_len, positions, sae, hook, k, features, window, bins, min_activation, progress)


def top_activating_contexts_in_corpus(
    model: "HookedTransformer",
    tokens: Tensor,
    sae: SparseAutoencoder,
    *,
    k: int = 10,
    features: Sequence[int] | Tensor | None = None,
    window: tuple[int, int] = DEFAULT_WINDOW,
    bins: int = DEFAULT_BINS,
    min_activation: float = 0.0,
    batch_size: int = 8,
    hook: str | None = None,
    progress: bool = True,
) -> FeatureActivations:
    """As ``top_activating_contexts``, running ``model`` on ``tokens [n_sequences pos]`` instead of reading a store."""
    hook = check_dictionary(sae, hook)
    if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.dtype not in (torch.int32, torch.int64) or tokens.numel() == 0:
        described = f"shape {tuple(tokens.shape)}, dtype {tokens.dtype}" if isinstance(tokens, Tensor) else type(tokens).__name__
        raise TypeError(f"tokens must be a non-empty [n_sequences pos] integer tensor, got {described}; use model.to_tokens(texts)")
    from interp_transformer.names import concrete_shape, hook_shapes

    table = hook_shapes(model.cfg)
    if hook not in table:
        raise KeyError(f"the model has no hook {hook!r}; hooks look like 'blocks.0.hook_resid_post' (see model.hook_dict)")
    n_sequences, seq_len = tokens.shape
    _check_width(sae, hook, concrete_shape(table[hook], model.cfg, 1, seq_len)[2:], "the model")
    check_count("batch_size", batch_size)

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        caught: dict[str, Tensor] = {}

        def keep(activation: Tensor, hook) -> None:
            caught["acts"] = activation.detach()

        with torch.inference_mode(), model.hooks(fwd_hooks=[(hook, keep)]):
            for start in range(0, n_sequences, batch_size):
                batch = tokens[start : start + batch_size].long()
                model(batch.to(model.device), return_type=None)
                yield batch, caught.pop("acts").reshape(batch.shape[0], seq_len, -1)

    return _one_pass(batches(), n_sequences, seq_len, torch.arange(seq_len), sae, hook, k, features, window, bins, min_activation, progress)


def _check_width(sae: SparseAutoencoder, hook: str, width_shape: tuple[int, ...], where: str) -> None:
    width = math.prod(width_shape)
    if width != sae.cfg.d_in:
        raise ValueError(
            f"{hook!r} in {where} has width {width} (per-position shape {list(width_shape)}) but the dictionary reads "
            f"d_in={sae.cfg.d_in}; use a dictionary trained on this hook, or pass the hook it reads as hook="
        )


def _one_pass(
    batches: Iterator[tuple[Tensor, Tensor]],
    n_sequences: int,
    seq_len: int,
    positions: Tensor,
    sae: SparseAutoencoder,
    hook: str,
    k: int,
    features: Sequence[int] | Tensor | None,
    window: tuple[int, int],
    bins: int,
    min_activation: float,
    progress: bool,
) -> FeatureActivations:
    check_count("k", k)
    check_count("bins", bins)
    before, after = check_window(window)
    if isinstance(min_activation, bool) or not isinstance(min_activation, (int, float)) or not 0 <= min_activation < math.inf:
        raise ValueError(f"min_activation must be a finite number >= 0 (feature activations are non-negative), got {min_activation!r}")
    selected = check_features(features, sae.cfg.d_sae)
    running = _RunningTop(selected, k, before, after, bins, float(min_activation))
    first = 0
    with torch.inference_mode(), tqdm(total=n_sequences, unit="seq", desc="feature contexts", disable=not progress) as bar:
        for tokens, acts in batches:
            feature_acts = sae.encode(acts.to(device=sae.device, dtype=sae.dtype))[..., selected.to(sae.device)]
            if bool(torch.isnan(feature_acts).any()):
                raise ValueError(f"the dictionary's activations on sequences {first}..{first + tokens.shape[0] - 1} hold NaN; check the store and the dictionary's weights")
            running.add(first, tokens.cpu(), feature_acts.cpu(), positions)
            first += tokens.shape[0]
            bar.update(tokens.shape[0])
    return running.result(hook, n_tokens=first * positions.numel())


class _RunningTop:
    """The running top-k (state laid out ``[k feature ...]`` so selections run along dim 0) and histogram."""

    def __init__(self, features: Tensor, k: int, before: int, after: int, bins: int, min_activation: float) -> None:
        n = features.numel()
        self.features, self.k, self.before, self.bins, self.min_activation = features, k, before, bins, min_activation
        self.offsets = torch.arange(-before, after + 1)
        self.values = torch.full((0, n), -math.inf, dtype=torch.float64)
        self.sequences = torch.empty((0, n), dtype=torch.long)
        self.positions = torch.empty((0, n), dtype=torch.long)
        self.window_tokens = torch.empty((0, n, self.offsets.numel()), dtype=torch.long)
        self.window_acts = torch.empty((0, n, self.offsets.numel()), dtype=torch.float64)
        self.n_firing = torch.zeros(n, dtype=torch.long)
        self.activation_sum = torch.zeros(n, dtype=torch.float64)
        self.histogram = torch.zeros((n, bins), dtype=torch.long)
        self.bin_width = torch.zeros(n, dtype=torch.float64)

    def add(self, first: int, tokens: Tensor, acts: Tensor, positions: Tensor) -> None:
        """Fold in sequences ``first..`` : ``tokens [batch seq_len]``, ``acts [batch stored_pos feature]``."""
        batch, n_stored, n = acts.shape
        acts = acts.double()  # exact for every dictionary dtype, so ranking is on the true values
        flat = acts.reshape(batch * n_stored, n)
        firing = flat > self.min_activation
        self._add_to_histogram(flat, firing)
        ranked = flat.masked_fill(~firing, -math.inf)
        values, rows = _top_rows(ranked, self.k)
        b, p = rows // n_stored, rows % n_stored
        center = positions[p]
        token_pos = center[..., None] + self.offsets  # [k feature window]
        inside = (token_pos >= 0) & (token_pos < tokens.shape[1])
        clamped = token_pos.clamp(0, tokens.shape[1] - 1)
        per_token = torch.full((batch, tokens.shape[1], n), math.nan, dtype=torch.float64)
        per_token[:, positions] = acts
        window_tokens = tokens[b[..., None], clamped].masked_fill(~inside, -1)
        window_acts = per_token[b[..., None], clamped, torch.arange(n)[None, :, None]].masked_fill(~inside, math.nan)
        self._merge(values, first + b, center, window_tokens, window_acts)

    def _merge(self, values: Tensor, sequences: Tensor, positions: Tensor, window_tokens: Tensor, window_acts: Tensor) -> None:
        # The running entries all come from earlier sequences than the new ones, and each part is
        # already in (value desc, index asc) order, so a stable sort keeps ties earliest first.
        values = torch.cat([self.values, values])
        order = values.sort(dim=0, descending=True, stable=True).indices[: self.k]
        self.values = values.gather(0, order)
        self.sequences = torch.cat([self.sequences, sequences]).gather(0, order)
        self.positions = torch.cat([self.positions, positions]).gather(0, order)
        expanded = order[..., None].expand(-1, -1, self.offsets.numel())
        self.window_tokens = torch.cat([self.window_tokens, window_tokens]).gather(0, expanded)
        self.window_acts = torch.cat([self.window_acts, window_acts]).gather(0, expanded)

    def _add_to_histogram(self, flat: Tensor, firing: Tensor) -> None:
        self.n_firing += firing.sum(0)
        self.activation_sum += flat.where(firing, 0.0).sum(0)
        chunk_max = flat.where(firing, 0.0).amax(0)
        fired = chunk_max > 0
        # Smallest power of two with max < width * bins: frexp gives max / bins = m * 2**e, m in [0.5, 1).
        needed = torch.where(fired, torch.ldexp(torch.ones_like(chunk_max), torch.frexp(chunk_max / self.bins).exponent), 0.0)
        grow = needed > self.bin_width
        if bool(grow.any()):
            # Widening by a power of two maps old bin i into new bin floor(i / factor): exact merging.
            factor = torch.where(self.bin_width > 0, needed / self.bin_width, math.inf)[grow]
            target = torch.floor(torch.arange(self.bins, dtype=torch.float64) / factor[:, None]).long()
            merged = torch.zeros_like(self.histogram[grow]).scatter_add_(1, target, self.histogram[grow])
            self.histogram[grow] = merged
            self.bin_width = torch.where(grow, needed, self.bin_width)
        feature_index = torch.arange(flat.shape[1]).expand_as(flat)[firing]
        bin_index = torch.floor(flat[firing] / self.bin_width[feature_index]).long()  # exact: widths are powers of two
        assert bool((bin_index < self.bins).all()), "the width covers every activation by construction"
        flat_bins = feature_index * self.bins + bin_index
        self.histogram += torch.bincount(flat_bins, minlength=self.histogram.numel()).reshape(self.histogram.shape)

    def result(self, hook: str, n_tokens: int) -> FeatureActivations:
        have = self.values.shape[0]  # below k when the whole source held fewer positions
        found = torch.isfinite(self.values)  # -inf: an entry that never fired

        def by_feature(tensor: Tensor, fill: float) -> Tensor:
            out = torch.full((self.k, *tensor.shape[1:]), fill, dtype=tensor.dtype)
            mask = found.reshape(found.shape + (1,) * (tensor.ndim - 2))
            out[:have] = torch.where(mask, tensor, torch.tensor(fill, dtype=tensor.dtype))
            return out.transpose(0, 1).contiguous()

        return FeatureActivations(
            hook_name=hook,
            features=self.features.clone(),
            values=by_feature(self.values.float(), math.nan),
            sequences=by_feature(self.sequences, -1),
            positions=by_feature(self.positions, -1),
            window_tokens=by_feature(self.window_tokens, -1),
            window_activations=by_feature(self.window_acts.float(), math.nan),
            before=self.before,
            n_tokens=n_tokens,
            n_firing=self.n_firing.clone(),
            activation_sum=self.activation_sum.clone(),
            histogram=self.histogram.clone(),
            bin_width=self.bin_width.clone(),
            min_activation=self.min_activation,
        )


def _top_rows(ranked: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` largest entries of each column of ``ranked [row feature]`` and their rows, in (value
    desc, row asc) order: exact under ties, which ``topk`` alone breaks arbitrarily."""
    k = min(k, ranked.shape[0])
    values, rows = ranked.topk(k, dim=0)  # the values are exact; only which of equal entries is not
    threshold = values[-1]
    crowded = ((ranked >= threshold).sum(0) > k) & torch.isfinite(threshold)
    if bool(crowded.any()):  # ties at the cut: a stable sort keeps the earliest rows
        columns = crowded.nonzero().squeeze(1)
        exact = ranked[:, columns].sort(dim=0, descending=True, stable=True)
        values[:, columns], rows[:, columns] = exact.values[:k], exact.indices[:k]
    rows, order = rows.sort(dim=0)
    values = values.gather(0, order)
    values, order = values.sort(dim=0, descending=True, stable=True)
    return values, rows.gather(0, order)
