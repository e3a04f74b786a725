"""Card figures of the shipped dictionaries, measured on fresh data from each model's training sampler.

Every figure is measured once per evaluation seed (a fresh batch of ``EVAL_SEQUENCES`` rows drawn
by the embedded model's own ``sample_batch``) and reported as mean ± std, like the model cards:

- ``explained_variance``: ``1 - sum ||y - y_hat||^2 / sum ||y - mean(y)||^2`` over the evaluated
  positions (every position but ``<bos>`` and padding); ``y`` is the replaced hook's activation
  (the residual stream for an SAE, the MLP's output for a transcoder).
- ``l0``: features active per evaluated position; ``dead_fraction``: features silent on the whole batch.
- ``clean_loss`` / ``spliced_loss`` / ``mean_ablated_loss``: next-token loss of the model as shipped,
  with the dictionary's reconstruction in place of the hook (``splice``, no error term), and with the
  hook replaced by its mean; ``loss_recovered = (ablated - spliced) / (ablated - clean)``.
- For a dictionary with feature labels (the induction SAE: ``repeated_pair`` and its complement
  ``no_repeated_pair``): each feature is *found*, not named. On the search seed's data every feature
  is scored by Youden's J (firing rate on the labelled positions minus firing rate elsewhere) and the
  best is kept; the card reports its precision, recall, J and mean activation in and out of the
  labelled positions on each evaluation seed, on how many evaluation seeds the same search picks the
  same feature, and how its activation correlates with the last layer's attention to ``<bos>``
  (where an induction head rests when the current token has no earlier match).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from interp_transformer.model import HookedTransformer
from interp_transformer.sae.dictionary import SparseAutoencoder
from interp_transformer.sae.splice import replaced_hook, splice
from interp_transformer.toy.evaluation import Figure

EVAL_SEQUENCES = 256
SAE_CARD_SEEDS = tuple(range(12345, 12350))  # 5 evaluation seeds
SEARCH_SEED = 1  # the data the demonstrated feature is found on (training used seed 0)
SEARCH_SEQUENCES = 512


def sample_tokens(model_name: str, n: int, seed: int) -> Tensor:
    """``[n pos]`` tokens from the embedded model's own training sampler, seeded."""
    from interp_transformer.toy.recipes import all_recipes

    return all_recipes()[model_name].sample_batch(torch.Generator().manual_seed(seed), n).tokens


def evaluated_positions(model: HookedTransformer, tokens: Tensor) -> Tensor:
    """``[batch pos]`` True at every position but ``<bos>`` (position 0) and padding."""
    keep = torch.ones_like(tokens, dtype=torch.bool)
    keep[:, 0] = False
    pad = getattr(model.tokenizer, "pad_token_id", None)
    if pad is not None:
        keep &= tokens != pad
    return keep


def second_copy_positions(tokens: Tensor) -> Tensor:
    """``[batch pos]`` True where the token *and* the one before it occurred as a pair earlier in the row.

    That is the token after a repeated token inside a repeated stretch (``A B ... A [B]``): where an
    induction head, having matched the previous token, already saw the current one follow it.
    """
    same = tokens[:, :, None] == tokens[:, None, :]  # [batch pos_i pos_j]
    pair = same[:, 1:, 1:] & same[:, :-1, :-1]  # (t[i], t[i-1]) == (t[j], t[j-1]) for i, j >= 1
    earlier = torch.ones(pair.shape[-1], pair.shape[-1], dtype=torch.bool).tril(-1)
    found = (pair & earlier).any(-1)
    return torch.cat([torch.zeros_like(tokens[:, :1], dtype=torch.bool), found], dim=1)


def no_repeated_pair_positions(tokens: Tensor) -> Tensor:
    """The complement of ``second_copy_positions``: tokens that do not continue an earlier pair."""
    return ~second_copy_positions(tokens)


FEATURE_LABELS: dict[str, tuple[Callable[[Tensor], Tensor], str]] = {
    "repeated_pair": (second_copy_positions, "the token after a repeated token inside a repeat, B in A B ... A B"),
    "no_repeated_pair": (no_repeated_pair_positions, "every token that does not continue an earlier pair, i.e. fresh text"),
}


def firing_statistics(acts: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Per feature, for ``[rows d_sae]`` activations and ``[rows]`` bool labels: precision, recall, J, mean in/out."""
    fires = acts > 0
    labels = labels[:, None]
    hits = (fires & labels).sum(0).double()
    recall = hits / labels.sum().clamp_min(1)
    false_rate = (fires & ~labels).sum(0).double() / (~labels).sum().clamp_min(1)
    return {
        "precision": hits / fires.sum(0).clamp_min(1),
        "recall": recall,
        "youden_j": recall - false_rate,
        "mean_in": acts[labels[:, 0]].double().mean(0),
        "mean_out": acts[~labels[:, 0]].double().mean(0),
    }


def find_feature(acts: Tensor, labels: Tensor) -> int:
    """The feature whose firing best separates the labelled rows from the rest (largest Youden's J)."""
    return int(firing_statistics(acts, labels)["youden_j"].argmax())


def _activations(model: HookedTransformer, sae: SparseAutoencoder, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token clean loss ``[batch pos-1]``, the dictionary's input and the replaced hook's activation."""
    hooks = [sae.cfg.hook_name, replaced_hook(sae)]
    loss, cache = model.run_with_cache(tokens, return_type="loss", loss_per_token=True, names_filter=lambda name: name in hooks)
    return loss, cache[hooks[0]], cache[hooks[1]]


def feature_rows(model: HookedTransformer, sae: SparseAutoencoder, tokens: Tensor, label: str) -> tuple[Tensor, Tensor]:
    """``([rows d_sae] activations, [rows] labels)`` over the evaluated positions of ``tokens``."""
    _, sae_in, _ = _activations(model, sae, tokens)
    keep = evaluated_positions(model, tokens)
    return sae.encode(sae_in)[keep], FEATURE_LABELS[label][0](tokens)[keep]


@torch.no_grad()
def seed_figures(model: HookedTransformer, sae: SparseAutoencoder, tokens: Tensor, features: dict[str, int] | None = None) -> dict[str, float]:
    """Every card figure on one batch of tokens; ``features`` maps a label of ``FEATURE_LABELS`` to the feature found for it."""
    keep = evaluated_positions(model, tokens)
    targets = keep[:, 1:]  # predictions of a real next token
    clean_loss, sae_in, y = _activations(model, sae, tokens)
    acts = sae.encode(sae_in)
    y_hat = sae.decode(acts)
    y_kept, error = y[keep], (y - y_hat)[keep]
    with splice(model, sae):
        spliced = model(tokens, return_type="loss", loss_per_token=True)
    mean = y_kept.mean(0)
    ablated = model.run_with_hooks(
        tokens, return_type="loss", loss_per_token=True,
        fwd_hooks=[(replaced_hook(sae), lambda activation, hook: mean.expand_as(activation).clone())],
    )
    clean, spliced, ablated = (float(loss[targets].mean()) for loss in (clean_loss, spliced, ablated))
    figures = {
        "explained_variance": float(1 - error.pow(2).sum() / (y_kept - mean).pow(2).sum()),
        "l0": float((acts[keep] > 0).sum(-1).double().mean()),
        "dead_fraction": float((~(acts[keep] > 0).any(0)).double().mean()),
        "clean_loss": clean,
        "spliced_loss": spliced,
        "mean_ablated_loss": ablated,
        "loss_recovered": (ablated - spliced) / (ablated - clean),
    }
    if features:
        bos_attention = _last_layer_attention_to_bos(model, tokens)[keep]
        for label, feature in features.items():
            labels = FEATURE_LABELS[label][0](tokens)[keep]
            stats = firing_statistics(acts[keep], labels)
            figures |= {f"{label}_feature_{name}": float(values[feature]) for name, values in stats.items()}
            figures[f"{label}_feature_found_again"] = float(find_feature(acts[keep], labels) == feature)
            pair = torch.stack([acts[keep][:, feature].double(), bos_attention.double()])
            figures[f"{label}_feature_bos_attention_corr"] = float(torch.corrcoef(pair)[0, 1])
    return figures


def _last_layer_attention_to_bos(model: HookedTransformer, tokens: Tensor) -> Tensor:
    """``[batch pos]`` the last layer's heads' mean attention to ``<bos>``: where an induction head finds no match, it rests there."""
    name = f"blocks.{model.cfg.n_layers - 1}.attn.hook_pattern"
    _, cache = model.run_with_cache(tokens, names_filter=name)
    return cache[name][..., 0].mean(1)


FIGURE_HOW = {
    "explained_variance": "fraction of the replaced hook's variance the reconstruction explains, every position but <bos> and padding",
    "l0": "features active per position (same positions)",
    "dead_fraction": "features that never fire on the batch",
    "clean_loss": "next-token loss of the shipped model",
    "spliced_loss": "next-token loss with the dictionary spliced in (reconstruction only, no error term)",
    "mean_ablated_loss": "next-token loss with the hook replaced by its mean (the floor the dictionary must beat)",
    "loss_recovered": "(mean_ablated_loss - spliced_loss) / (mean_ablated_loss - clean_loss)",
    "feature_precision": "of the positions where the feature fires, the fraction that are labelled",
    "feature_recall": "of the labelled positions, the fraction where the feature fires",
    "feature_youden_j": "recall minus the firing rate on unlabelled positions",
    "feature_mean_in": "mean activation of the feature on labelled positions",
    "feature_mean_out": "mean activation of the feature on every other position",
    "feature_found_again": "1 when the search on this seed's data picks the same feature",
    "feature_bos_attention_corr": "correlation of the feature's activation with the last layer's mean attention to <bos>",
}


def _how(name: str) -> str:
    if name in FIGURE_HOW:
        return FIGURE_HOW[name]
    label, _, stat = name.partition("_feature_")
    return f"`{label}` feature: {FIGURE_HOW['feature_' + stat]}"


def card_figures(model: HookedTransformer, sae: SparseAutoencoder, seeds: Sequence[int] = SAE_CARD_SEEDS,
                 features: dict[str, int] | None = None) -> list[Figure]:
    """The card's figures over ``seeds`` (fresh ``EVAL_SEQUENCES`` rows each), mean ± std."""
    if len(seeds) < 2:
        raise ValueError(f"a spread needs at least 2 evaluation seeds, got {list(seeds)}; pass more seeds")
    per_seed = [seed_figures(model, sae, sample_tokens(model.cfg.model_name, EVAL_SEQUENCES, seed), features) for seed in seeds]
    return [Figure(name, tuple(values[name] for values in per_seed), _how(name)) for name in per_seed[0]]
