"""Card figures of the shipped dictionaries, measured on fresh data from each model's training sampler.

Every figure is measured once per evaluation seed (a fresh batch of ``EVAL_SEQUENCES`` rows drawn
by the embedded model's own ``sample_batch``) and reported as mean ± std, like the model cards:

- The model reads each row up to its context (``model_input``: a row one token longer than
  ``n_ctx``, like modadd's ``a b = answer``, ends in a token that is only ever a target).
- ``explained_variance``: ``1 - sum ||y - y_hat||^2 / sum ||y - mean(y)||^2`` over the evaluated
  positions (every position the model reads but padding and a leading ``<bos>``: ``evaluated_positions``);
  ``y`` is the replaced hook's activation (the residual stream for an SAE, the MLP's output for a transcoder).
- ``l0``: features active per evaluated position; ``dead_fraction``: features silent on the whole batch.
- ``clean_loss`` / ``spliced_loss`` / ``mean_ablated_loss``: the model's task loss as shipped, with the
  dictionary's reconstruction in place of the hook (``splice``, no error term), and with the hook
  replaced by its mean; ``loss_recovered = (ablated - spliced) / (ablated - clean)``. The task loss is
  the next-token loss weighted by the sampler's ``loss_mask`` (``scored_predictions``): the predictions
  the model was trained on, so every real next token for the induction model and only the answer at
  ``=`` for modadd-1l.
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
from interp_transformer.toy.train import Batch

EVAL_SEQUENCES = 256
SAE_CARD_SEEDS = tuple(range(12345, 12350))  # 5 evaluation seeds
SEARCH_SEED = 1  # the data the demonstrated feature is found on (training used seed 0)
SEARCH_SEQUENCES = 512


def sample_batch(model_name: str, n: int, seed: int) -> Batch:
    """``n`` rows (``tokens [n pos]``, ``loss_mask [n pos-1]``) from the embedded model's own training sampler, seeded."""
    from interp_transformer.toy.recipes import all_recipes

    return all_recipes()[model_name].sample_batch(torch.Generator().manual_seed(seed), n)


def sample_tokens(model_name: str, n: int, seed: int) -> Tensor:
    """``[n pos]`` the model's input (``model_input``) for ``n`` rows of its training sampler, seeded."""
    from interp_transformer.toy.recipes import all_recipes

    return model_input(sample_batch(model_name, n, seed).tokens, all_recipes()[model_name].config.n_ctx)


def model_input(rows: Tensor, n_ctx: int) -> Tensor:
    """The part of ``[batch pos]`` rows a model with context ``n_ctx`` reads.

    A row that fits is read whole; a row one token longer ends in a token that is only ever a target
    (modadd-1l's ``a b = answer``: the model reads ``a b =``), so it is read without that token.
    """
    if rows.shape[1] <= n_ctx:
        return rows
    if rows.shape[1] == n_ctx + 1:
        return rows[:, :-1]
    raise ValueError(f"rows of {rows.shape[1]} tokens do not fit a context of {n_ctx} (nor do all but their last token)")


def evaluated_positions(model: HookedTransformer, tokens: Tensor) -> Tensor:
    """``[batch pos]`` True at every position of the model's input but padding and a ``<bos>`` at position 0.

    ``<bos>`` is dropped only where a row starts with it (the induction model's rows do; modadd-1l's
    ``a b =`` has none, so its position 0, the token ``a``, is evaluated).
    """
    keep = torch.ones_like(tokens, dtype=torch.bool)
    bos = getattr(model.tokenizer, "bos_token_id", None)
    if bos is not None:
        keep[:, 0] = tokens[:, 0] != bos
    pad = getattr(model.tokenizer, "pad_token_id", None)
    if pad is not None:
        keep &= tokens != pad
    return keep


def scored_predictions(model: HookedTransformer, batch: Batch) -> Tensor:
    """``[batch pos-1]`` the weight of each next-token prediction in the task loss: ``loss_mask``, zero where padding is involved."""
    weights = batch.loss_mask.double()
    pad = getattr(model.tokenizer, "pad_token_id", None)
    if pad is not None:
        weights = weights * (batch.tokens[:, 1:] != pad) * (batch.tokens[:, :-1] != pad)
    return weights


def next_token_losses(logits: Tensor, rows: Tensor) -> Tensor:
    """``[batch pos-1]`` cross-entropy of each row's next token, from the logits of the model's input (``model_input``)."""
    log_probs = torch.log_softmax(logits[:, : rows.shape[1] - 1].float(), dim=-1)
    return -log_probs.gather(-1, rows[:, 1:, None]).squeeze(-1)


def task_loss(logits: Tensor, batch: Batch, weights: Tensor) -> float:
    """The next-token loss weighted by ``weights`` (``scored_predictions``)."""
    return float((next_token_losses(logits, batch.tokens).double() * weights).sum() / weights.sum())


def evaluation_words(model: HookedTransformer) -> dict[str, str]:
    """The card's words for what is read, evaluated and scored, found on the model's own rows by the functions above."""
    batch = sample_batch(model.cfg.model_name, EVAL_SEQUENCES, SAE_CARD_SEEDS[0])
    tokens = model_input(batch.tokens, model.cfg.n_ctx)
    weights = scored_predictions(model, batch)
    bos, pad = (getattr(model.tokenizer, name, None) for name in ("bos_token_id", "pad_token_id"))
    has_bos = bos is not None and bool((tokens[:, 0] == bos).any())
    has_pad = pad is not None and bool((tokens == pad).any())
    dropped = [what for what, found in (("the leading `<bos>`", has_bos), ("padding", has_pad)) if found]
    scored = weights[0] > 0
    if not (bool((weights == weights[:1]).all()) and bool(((weights == 0) | (weights == 1)).all())):
        loss = "the next-token loss weighted by the sampler's `loss_mask`"
    elif bool(scored.all()):
        loss = "the mean next-token loss over every prediction (the sampler's `loss_mask` scores them all)"
    else:
        positions = scored.nonzero()[:, 0].tolist()
        where = ", ".join(f"{position} (`{model.to_str_tokens(tokens[0])[position]}`)" for position in positions)
        word = "positions" if len(positions) > 1 else "position"
        loss = f"the next-token loss where the sampler's `loss_mask` scores it: the prediction made at {word} {where} only"
    return {
        "reads": ("the model reads whole rows" if tokens.shape == batch.tokens.shape else
                  f"the model reads the first {tokens.shape[1]} of each row's {batch.tokens.shape[1]} tokens; "
                  "the last is only ever a target"),
        "positions": f"every position read but {' and '.join(dropped)}" if dropped else f"all {tokens.shape[1]} positions read",
        "bos": "`<bos>` included" if has_bos else "which have no `<bos>`",
        "loss": loss,
    }


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
    """Clean logits, the dictionary's input and the replaced hook's activation, on the model's input ``tokens``."""
    hooks = [sae.cfg.hook_name, replaced_hook(sae)]
    logits, cache = model.run_with_cache(tokens, names_filter=lambda name: name in hooks)
    return logits, cache[hooks[0]], cache[hooks[1]]


def feature_rows(model: HookedTransformer, sae: SparseAutoencoder, tokens: Tensor, label: str) -> tuple[Tensor, Tensor]:
    """``([rows d_sae] activations, [rows] labels)`` over the evaluated positions of ``tokens``."""
    _, sae_in, _ = _activations(model, sae, tokens)
    keep = evaluated_positions(model, tokens)
    return sae.encode(sae_in)[keep], FEATURE_LABELS[label][0](tokens)[keep]


@torch.no_grad()
def seed_figures(
    model: HookedTransformer, sae: SparseAutoencoder, batch: Batch, features: dict[str, int] | None = None
) -> dict[str, float]:
    """Every card figure on one batch of sampler rows; ``features`` maps a label of ``FEATURE_LABELS`` to the feature found for it."""
    tokens = model_input(batch.tokens, model.cfg.n_ctx)
    keep = evaluated_positions(model, tokens)
    weights = scored_predictions(model, batch)
    clean_logits, sae_in, y = _activations(model, sae, tokens)
    acts = sae.encode(sae_in)
    y_hat = sae.decode(acts)
    y_kept, error = y[keep], (y - y_hat)[keep]
    with splice(model, sae):
        spliced_logits = model(tokens)
    mean = y_kept.mean(0)
    ablated_logits = model.run_with_hooks(
        tokens, fwd_hooks=[(replaced_hook(sae), lambda activation, hook: mean.expand_as(activation).clone())],
    )
    clean, spliced, ablated = (task_loss(logits, batch, weights) for logits in (clean_logits, spliced_logits, ablated_logits))
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
    "explained_variance": "fraction of the replaced hook's variance the reconstruction explains, over the evaluated positions",
    "l0": "features active per position (same positions)",
    "dead_fraction": "features that never fire on the batch",
    "clean_loss": "task loss (next-token loss weighted by the sampler's loss_mask) of the shipped model",
    "spliced_loss": "task loss with the dictionary spliced in (reconstruction only, no error term)",
    "mean_ablated_loss": "task loss with the hook replaced by its mean over the evaluated positions (the floor the dictionary must beat)",
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
    per_seed = [seed_figures(model, sae, sample_batch(model.cfg.model_name, EVAL_SEQUENCES, seed), features) for seed in seeds]
    return [Figure(name, tuple(values[name] for values in per_seed), _how(name)) for name in per_seed[0]]
