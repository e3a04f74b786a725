"""Feature analysis: each feature's top-activating contexts and activation histogram, in one pass over a store.

Axis words: ``feature`` (the analysed features, a subset of ``d_sae``), ``k`` (rank among a
feature's largest activations), ``window`` (the tokens around an activation: ``before`` tokens,
the activating token, ``after`` tokens), ``bin`` (a histogram bin).

One pass, bounded memory: sequences are read ``batch_size`` at a time and folded into a running
top-k per feature, so memory holds one batch's feature activations (``batch_size x pos x d_sae``,
plus 16 bytes per firing entry) and the running state (``k x feature x window x 16`` bytes), whatever
the size of the store. Ties are broken deterministically: equal activations rank by (sequence,
stored position), earliest first, so the result does not depend on ``batch_size``.

The histogram needs no second pass: each feature's bins have a power-of-two width, and when a
larger activation arrives the width doubles and neighbouring bins merge, which is exact; the
final width is the smallest power of two with ``max_activation < width * bins``.
"""

from __future__ import annotations

import math
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generator, Sequence

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


@dataclass(frozen=True, eq=False)  # tensors have no single truth value: compare fields with torch.equal
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

    def batches() -> Generator[tuple[Tensor, Tensor], None, None]:
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

    def batches() -> Generator[tuple[Tensor, Tensor], None, None]:
        caught: dict[str, Tensor] = {}

        def keep(activation: Tensor, hook) -> None:
            caught["acts"] = activation.detach()

        # Blocks after the hook's are not run (nor the unembedding, the largest matmul).
        stop_at_layer = int(hook.split(".")[1]) + 1 if hook.startswith("blocks.") else None
        with torch.inference_mode(), model.hooks(fwd_hooks=[(hook, keep)]):
            for start in range(0, n_sequences, batch_size):
                batch = tokens[start : start + batch_size].long()
                if stop_at_layer is None:
                    model(batch.to(model.device), return_type=None)
                else:
                    model(batch.to(model.device), stop_at_layer=stop_at_layer)
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
    batches: Generator[tuple[Tensor, Tensor], None, None],
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
    # closing(): on an error the batch generator exits at once, removing any hooks it put on a model.
    with torch.inference_mode(), closing(batches), tqdm(total=n_sequences, unit="seq", desc="feature contexts", disable=not progress) as bar:
        for tokens, acts in batches:
            feature_acts = sae.encode(acts.to(device=sae.device, dtype=sae.dtype))
            if selected.numel() != sae.cfg.d_sae or not bool((selected == torch.arange(sae.cfg.d_sae)).all()):
                feature_acts = feature_acts[..., selected.to(sae.device)]
            if bool(torch.isnan(feature_acts).any()):
                raise ValueError(f"the dictionary's activations on sequences {first}..{first + tokens.shape[0] - 1} hold NaN; check the store and the dictionary's weights")
            running.add(first, tokens.cpu(), feature_acts.cpu(), positions)
            first += tokens.shape[0]
            bar.update(tokens.shape[0])
    return running.result(hook, n_tokens=first * positions.numel())


class _RunningTop:
    """The running top-k per feature (laid out ``[k feature ...]``; -inf values mark empty slots) and histogram."""

    def __init__(self, features: Tensor, k: int, before: int, after: int, bins: int, min_activation: float) -> None:
        n = features.numel()
        self.features, self.k, self.before, self.bins, self.min_activation = features, k, before, bins, min_activation
        self.offsets = torch.arange(-before, after + 1)
        width = self.offsets.numel()
        self.values = torch.full((k, n), -math.inf, dtype=torch.float64)
        self.sequences = torch.full((k, n), -1, dtype=torch.long)
        self.positions = torch.full((k, n), -1, dtype=torch.long)
        self.window_tokens = torch.full((k, n, width), -1, dtype=torch.long)
        self.window_acts = torch.full((k, n, width), math.nan, dtype=torch.float64)
        self.n_firing = torch.zeros(n, dtype=torch.long)
        self.activation_sum = torch.zeros(n, dtype=torch.float64)
        self.histogram = torch.zeros((n, bins), dtype=torch.long)
        self.bin_width = torch.zeros(n, dtype=torch.float64)

    def add(self, first: int, tokens: Tensor, acts: Tensor, positions: Tensor) -> None:
        """Fold in sequences ``first..`` : ``tokens [batch seq_len]``, ``acts [batch stored_pos feature]``."""
        batch, n_stored, n = acts.shape
        if acts.dtype in (torch.float16, torch.bfloat16):
            acts = acts.float()  # exact; half-precision comparisons are slow on CPU
        flat = acts.reshape(batch * n_stored, n)
        # Only the (usually few) firing entries are listed; everything after this line works on them.
        rows, features = (flat > self.min_activation).nonzero().unbind(1)
        values = flat[rows, features].double()
        self._add_to_histogram(features, values)
        rank, rows, features, values = self._candidates(rows, features, values)
        b, p = rows // n_stored, rows % n_stored
        center = positions[p]
        window_tokens, window_acts = self._windows(tokens, acts, positions, b, center, features)
        self._merge(rank, features, values, first + b, center, window_tokens, window_acts)

    def _candidates(self, rows: Tensor, features: Tensor, values: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The firing entries that can enter the top-k, with their rank among this batch's entries of
        the same feature (value desc, row asc). Only entries above the running k-th value can enter,
        so after the first batches few are sorted."""
        beats = values > self.values[-1][features]  # strictly: a tie with an earlier entry loses to it
        rows, features, values = rows[beats], features[beats], values[beats]
        # ``nonzero`` listed them by row; two stable sorts group them by feature, value desc, row asc.
        order = values.sort(descending=True, stable=True).indices
        order = order[features[order].sort(stable=True).indices]
        rows, features, values = rows[order], features[order], values[order]
        counts = torch.bincount(features, minlength=self.values.shape[1])
        rank = torch.arange(features.numel()) - (counts.cumsum(0) - counts)[features]
        kept = rank < self.k
        return rank[kept], rows[kept], features[kept], values[kept]

    def _windows(self, tokens: Tensor, acts: Tensor, positions: Tensor, b: Tensor, center: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        """``[entry window]`` token ids (-1 outside the sequence) and the feature's activations there (nan where not stored)."""
        seq_len, n_stored = tokens.shape[1], positions.numel()
        token_pos = center[:, None] + self.offsets
        inside = (token_pos >= 0) & (token_pos < seq_len)
        clamped = token_pos.clamp(0, seq_len - 1)
        stored_index = torch.full((seq_len,), -1, dtype=torch.long)
        stored_index[positions] = torch.arange(n_stored)
        window_stored = stored_index[clamped]  # -1 where the store kept no activation for that token
        in_batch = b[:, None].expand_as(clamped)
        window_tokens = tokens[in_batch, clamped].masked_fill(~inside, -1)
        window_acts = acts[in_batch, window_stored.clamp(min=0), features[:, None].expand_as(clamped)].double()
        return window_tokens, window_acts.masked_fill(~(inside & (window_stored >= 0)), math.nan)

    def _merge(self, rank: Tensor, features: Tensor, values: Tensor, sequences: Tensor, positions: Tensor, window_tokens: Tensor, window_acts: Tensor) -> None:
        """Merge the new entries into the running top-k of the features they belong to (only those)."""
        touched, column = torch.unique(features, return_inverse=True)
        if touched.numel() == 0:
            return
        k, width = self.k, self.offsets.numel()

        def new(fill, dtype, source, *extra):
            part = torch.full((k, touched.numel(), *extra), fill, dtype=dtype)
            part[rank, column] = source
            return part

        # The running entries all come from earlier sequences than the new ones, and each part is
        # already in (value desc, sequence, position) order, so a stable sort keeps ties earliest first.
        merged_values = torch.cat([self.values[:, touched], new(-math.inf, torch.float64, values)])
        order = merged_values.sort(dim=0, descending=True, stable=True).indices[:k]
        self.values[:, touched] = merged_values.gather(0, order)
        self.sequences[:, touched] = torch.cat([self.sequences[:, touched], new(-1, torch.long, sequences)]).gather(0, order)
        self.positions[:, touched] = torch.cat([self.positions[:, touched], new(-1, torch.long, positions)]).gather(0, order)
        expanded = order[..., None].expand(-1, -1, width)
        merged_tokens = torch.cat([self.window_tokens[:, touched], new(-1, torch.long, window_tokens, width)])
        self.window_tokens[:, touched] = merged_tokens.gather(0, expanded)
        merged_acts = torch.cat([self.window_acts[:, touched], new(math.nan, torch.float64, window_acts, width)])
        self.window_acts[:, touched] = merged_acts.gather(0, expanded)

    def _add_to_histogram(self, features: Tensor, values: Tensor) -> None:
        """Count the firing activations ``values`` (float64) of ``features`` (indices into this result's rows)."""
        n = self.n_firing.numel()
        self.n_firing += torch.bincount(features, minlength=n)
        self.activation_sum.index_add_(0, features, values)
        chunk_max = torch.zeros(n, dtype=torch.float64).scatter_reduce_(0, features, values, "amax")
        # Smallest power of two with max < width * bins: frexp gives max / bins = m * 2**e, m in [0.5, 1).
        exponent = torch.frexp(chunk_max / self.bins).exponent
        needed = torch.where(chunk_max > 0, torch.ldexp(torch.ones_like(chunk_max), exponent), 0.0)
        grow = needed > self.bin_width
        if bool(grow.any()):
            # Widening by a power of two maps old bin i into new bin floor(i / factor): exact merging.
            factor = torch.where(self.bin_width > 0, needed / self.bin_width, math.inf)[grow]
            target = torch.floor(torch.arange(self.bins, dtype=torch.float64) / factor[:, None]).long()
            self.histogram[grow] = torch.zeros_like(self.histogram[grow]).scatter_add_(1, target, self.histogram[grow])
            self.bin_width = torch.where(grow, needed, self.bin_width)
        bin_index = torch.floor(values / self.bin_width[features]).long()  # exact: widths are powers of two
        assert bool((bin_index < self.bins).all()), "the width covers every activation by construction"
        self.histogram += torch.bincount(features * self.bins + bin_index, minlength=n * self.bins).reshape(n, self.bins)

    def result(self, hook: str, n_tokens: int) -> FeatureActivations:
        empty = torch.isinf(self.values)  # a slot no firing activation filled

        def by_feature(tensor: Tensor, fill: float) -> Tensor:
            mask = empty.reshape(empty.shape + (1,) * (tensor.ndim - 2))
            return tensor.masked_fill(mask, fill).transpose(0, 1).contiguous()

        return FeatureActivations(
            hook_name=hook,
            features=self.features.clone(),
            values=by_feature(self.values, math.nan).float(),
            sequences=by_feature(self.sequences, -1),
            positions=by_feature(self.positions, -1),
            window_tokens=by_feature(self.window_tokens, -1),
            window_activations=by_feature(self.window_acts, math.nan).float(),
            before=self.before,
            n_tokens=n_tokens,
            n_firing=self.n_firing.clone(),
            activation_sum=self.activation_sum.clone(),
            histogram=self.histogram.clone(),
            bin_width=self.bin_width.clone(),
            min_activation=self.min_activation,
        )
