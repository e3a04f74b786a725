"""The IOI circuit's head classes on ``ioi-mini`` and their evidence, measured as Wang et al. (2022) measure GPT-2's.

Every measurement runs on IOI prompts and their ABC corruption (the same sentences with IO, S1
and S2 replaced by three different names, so nothing in them says which name is the answer).
The metric is the IO-minus-S logit difference at the end; an effect is its relative change,
``patched / clean - 1`` (-1: the path carries all of it).

- **Name movers** attend from the end (END) to the IO and copy it: patching their direct path to
  the logits with the ABC run lowers the logit difference, and their OV circuit maps a name's
  embedding to that name's logit (``name_copy_score``: the share of names whose own logit is in
  the top 5, Wang et al.'s copying score).
- **S-inhibition heads** attend from END to S2; patching their output into the name movers'
  *queries* only (path patching) lowers the logit difference and moves the name movers'
  attention from the IO back towards S (``name_mover_attention_with_patched_queries``).
- **Duplicate-token / induction heads** act at S2, attending to S1 (duplicate token) or to the
  token after S1 (induction); patching their output into the S-inhibition heads' values lowers
  the logit difference.
"""

from __future__ import annotations

import operator
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from interp_transformer.model import HookedTransformer
from interp_transformer.patching import LogitDiff, Receiver, Sender, path_patch, path_patch_heads
from interp_transformer.toy.ioi import ALL_NAMES, SPLITS, IOIPrompts, abc_prompts, ioi_prompts, label, name_positions, tokenizer

Head = tuple[int, int]  # (layer, head)


class IOIRun(NamedTuple):
    """Prompts, their ABC corruption, the metric, the clean logit difference and the clean attention patterns."""

    prompts: IOIPrompts
    corrupted: Tensor
    metric: LogitDiff
    clean_logit_diff: float
    patterns: Tensor  # [layer batch head_index query_pos key_pos]


def ioi_run(model: HookedTransformer, prompts: IOIPrompts, names: Sequence[str], generator: torch.Generator) -> IOIRun:
    metric = LogitDiff(prompts.io_ids, prompts.s_ids, positions=prompts.end_pos)
    with torch.no_grad():
        logits, cache = model.run_with_cache(prompts.tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    patterns = torch.stack([cache["pattern", layer] for layer in range(model.cfg.n_layers)])
    return IOIRun(prompts, abc_prompts(prompts, names, generator), metric, metric(logits).item(), patterns)


def attention(run: IOIRun, query: str, key: str, key_offset: int = 0) -> Tensor:
    """``[layer head_index]`` mean attention from the ``query`` slot to the ``key`` slot (``IO``, ``S1``, ``S2``, ``END``)."""
    where, rows = name_positions(run.prompts), torch.arange(len(run.prompts.tokens))
    by_prompt = run.patterns.transpose(0, 1)  # [batch layer head_index query_pos key_pos]
    return by_prompt[rows, :, :, where[query], where[key] + key_offset].mean(0)


def checked_head(model: HookedTransformer, head: Head) -> Head:
    """``head`` as ``(layer, head_index)`` if the model has it; otherwise a ValueError naming the valid range."""
    try:
        layer, index = (operator.index(part) for part in head)
    except (TypeError, ValueError):
        raise ValueError(f"a head is (layer, head_index), got {head!r}") from None
    if not (0 <= layer < model.cfg.n_layers and 0 <= index < model.cfg.n_heads):
        raise ValueError(f"head {head!r} is not in the model: layers 0-{model.cfg.n_layers - 1}, heads 0-{model.cfg.n_heads - 1}")
    return layer, index


def _checked_top(model: HookedTransformer, top: int) -> int:
    if not 1 <= top <= model.cfg.d_vocab:
        raise ValueError(f"top={top}: count the name as copied when it is among the top 1 to {model.cfg.d_vocab} logits")
    return top


def relative_effect(values: Tensor, run: IOIRun) -> Tensor:
    return values / run.clean_logit_diff - 1


def direct_effects(model: HookedTransformer, run: IOIRun) -> Tensor:
    """``[layer head_index]``: each head's path straight to the logits patched with the ABC run."""
    tokens = run.prompts.tokens
    return relative_effect(path_patch_heads(model, tokens, run.corrupted, run.metric, progress=False).values, run)


def effects_through(model: HookedTransformer, run: IOIRun, receivers: Sequence[Head], receiver_input: str) -> Tensor:
    """``[layer head_index]``: each head's paths to the ``receivers``' query, key or value input patched with the ABC run."""
    targets = [Receiver(layer, head, receiver_input) for layer, head in receivers]
    values = path_patch_heads(model, run.prompts.tokens, run.corrupted, run.metric, receivers=targets, progress=False).values
    return relative_effect(values, run)


def group_effect_through(model: HookedTransformer, run: IOIRun, senders: Sequence[Head], receivers: Sequence[Head], receiver_input: str) -> float:
    """The relative effect of patching a group of heads together into the ``receivers``' inputs."""
    group = tuple(Sender("head", layer, head) for layer, head in senders)
    targets = [Receiver(layer, head, receiver_input) for layer, head in receivers]
    result = path_patch(model, run.prompts.tokens, run.corrupted, run.metric, [group], receivers=targets, progress=False)
    return relative_effect(result.values, run).item()


def name_mover_attention_with_patched_queries(
    model: HookedTransformer, run: IOIRun, senders: Sequence[Head], name_movers: Sequence[Head]
) -> dict[str, float]:
    """Mean END->IO and END->S (S1 + S2) attention of the name movers when only their queries see the senders' ABC output.

    Keys ``clean_IO``, ``clean_S``, ``patched_IO``, ``patched_S``, and ``patched_logit_diff`` (the metric of that run).

    The queries are computed by hand, as path patching defines them: the clean residual stream
    plus the senders' output change, through the receiver's LayerNorm and ``W_Q``.
    """
    layers = {layer for layer, _ in name_movers}
    if len(layers) != 1 or max(layer for layer, _ in senders) >= min(layers):
        raise ValueError(f"name movers {name_movers} must share one layer after every sender {senders}")
    layer = layers.pop()
    tokens, corrupted = run.prompts.tokens, run.corrupted
    with torch.no_grad():
        _, clean = model.run_with_cache(tokens)
        _, source = model.run_with_cache(corrupted)
        resid = clean[f"blocks.{layer}.hook_resid_pre"].clone()
        for sender_layer, head in senders:
            change = source["z", sender_layer][:, :, head] - clean["z", sender_layer][:, :, head]
            resid += change @ model.W_O[sender_layer, head]
        queries = torch.einsum("bpm,hmd->bphd", model.blocks[layer].ln1(resid), model.W_Q[layer]) + model.b_Q[layer]
        heads = [head for _, head in name_movers]

        def patch_queries(q: Tensor, hook) -> Tensor:
            q[:, :, heads] = queries[:, :, heads]
            return q

        patterns = {}

        def keep_pattern(pattern: Tensor, hook) -> None:
            patterns["patched"] = pattern

        logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_q", patch_queries),
                                                         (f"blocks.{layer}.attn.hook_pattern", keep_pattern)])
    where, rows = name_positions(run.prompts), torch.arange(len(tokens))
    out = {"patched_logit_diff": run.metric(logits).item()}  # the same number path patching gives
    for name, pattern in (("clean", run.patterns[layer]), ("patched", patterns["patched"])):
        at = pattern[rows][:, heads][rows, :, where["END"]]  # [batch head key_pos]
        out[f"{name}_IO"] = at[rows, :, where["IO"]].mean().item()
        out[f"{name}_S"] = (at[rows, :, where["S1"]] + at[rows, :, where["S2"]]).mean().item()
    return out


def _copy_share(model: HookedTransformer, head: Head, resid: Tensor, targets: Tensor, top: int) -> float:
    """Share of rows of ``resid`` ``[n d_model]`` whose ``targets`` id is in the top ``top`` logits after the head's
    LayerNorm, ``W_V``, ``W_O``, the final LayerNorm and the unembedding."""
    layer, index = checked_head(model, head)
    top = _checked_top(model, top)
    with torch.no_grad():
        normalized = model.blocks[layer].ln1(resid[None])[0]
        out = (normalized @ model.W_V[layer, index] + model.b_V[layer, index]) @ model.W_O[layer, index]
        logits = model.ln_final(out[None])[0] @ model.W_U + model.b_U  # [n d_vocab]
    return (logits.topk(top, dim=-1).indices == targets[:, None]).any(-1).float().mean().item()


def name_copy_score(model: HookedTransformer, head: Head, top: int = 5) -> float:
    """Share of all names whose own logit is in the top ``top`` after the head's OV circuit (Wang et al.'s copying score).

    A name's embedding goes through the head's LayerNorm, ``W_V``, ``W_O``, the final LayerNorm
    and the unembedding, with nothing else in the residual stream (Wang et al. add the first MLP's
    output to the embedding; a model with MLPs scores lower here for skipping it). Weights only: it
    misses what earlier layers add at the name's position, which ``in_context_copy_score`` includes.
    """
    ids = torch.tensor(tokenizer().convert_tokens_to_ids(ALL_NAMES))
    return _copy_share(model, head, model.W_E[ids].detach(), ids, top)


def in_context_copy_score(model: HookedTransformer, head: Head, prompts: IOIPrompts, top: int = 5) -> float:
    """Share of prompts whose IO is in the top ``top`` logits after the head's OV circuit reads the IO's position.

    The same path as ``name_copy_score`` (the head's LayerNorm, ``W_V``, ``W_O``, the final
    LayerNorm, the unembedding), but its input is the residual stream the head really reads at the
    IO position of each prompt: the IO's embedding plus what earlier layers wrote there. In an
    attention-only model that stands where Wang et al. put the first MLP's output.
    """
    layer, _ = checked_head(model, head)
    _checked_top(model, top)
    missing = ~(prompts.tokens == prompts.io_ids[:, None]).any(-1)
    if missing.any():
        raise ValueError(f"prompts {missing.nonzero().flatten().tolist()[:5]} do not contain their IO name; build them with ioi.ioi_prompts")
    hook = f"blocks.{layer}.hook_resid_pre"
    with torch.no_grad():
        _, cache = model.run_with_cache(prompts.tokens, names_filter=hook)
    resid = cache[hook][torch.arange(len(prompts.tokens)), name_positions(prompts)["IO"]]  # [batch d_model]
    return _copy_share(model, head, resid, prompts.io_ids, top)


def effects_of(model: HookedTransformer, run: IOIRun, senders: Sequence[Head], receivers: Sequence[Head] | None, receiver_input: str = "q") -> list[float]:
    """The relative effect of each sender head alone, on the logits directly (``receivers=None``) or via the receivers' inputs."""
    groups = [(Sender("head", layer, head),) for layer, head in senders]
    targets = "final_residual" if receivers is None else [Receiver(layer, head, receiver_input) for layer, head in receivers]
    result = path_patch(model, run.prompts.tokens, run.corrupted, run.metric, groups, receivers=targets, progress=False)
    return relative_effect(result.values, run).tolist()


def class_evidence(model: HookedTransformer, classes: dict[str, list[Head]], generator: torch.Generator) -> dict[str, float]:
    """One seed's evidence for each head class, on fresh held-out prompts (names and templates never in IOI training)."""
    names, templates = SPLITS["heldout"]
    run = ioi_run(model, ioi_prompts(300, names, generator, templates), names, generator)
    small = ioi_run(model, ioi_prompts(100, names, generator, templates), names, generator)  # path patching is costlier
    to_io, to_s1, to_s2 = (attention(run, "END", slot) for slot in ("IO", "S1", "S2"))
    s2_to_s1, s2_to_after_s1 = attention(run, "S2", "S1"), attention(run, "S2", "S1", key_offset=1)
    movers, inhibition = classes["name_movers"], classes["s_inhibition"]
    found = {}
    for head, effect in zip(movers, effects_of(model, small, movers, None)):
        found |= {f"name mover {label(head)}: attention END->IO": to_io[head].item(),
                  f"name mover {label(head)}: attention END->S1+S2": (to_s1[head] + to_s2[head]).item(),
                  f"name mover {label(head)}: direct path to logits": effect,
                  f"name mover {label(head)}: copying score in context": in_context_copy_score(model, head, run.prompts)}
    for head, effect in zip(inhibition, effects_of(model, small, inhibition, movers, "q")):
        found |= {f"S-inhibition {label(head)}: attention END->S2": to_s2[head].item(),
                  f"S-inhibition {label(head)}: path via name-mover queries": effect}
    found["S-inhibition heads together: path via name-mover queries"] = group_effect_through(model, small, inhibition, movers, "q")
    moved = name_mover_attention_with_patched_queries(model, small, inhibition, movers)
    found |= {"name movers' END->IO attention, clean": moved["clean_IO"],
              "name movers' END->IO attention, S-inhibition patched into queries": moved["patched_IO"],
              "name movers' END->S1+S2 attention, S-inhibition patched into queries": moved["patched_S"]}
    for kind in ("duplicate_token", "induction"):
        heads = classes[kind]
        title = kind.replace("_", "-")
        for head, effect in zip(heads, effects_of(model, small, heads, inhibition, "v") if heads else []):
            found |= {f"{title} {label(head)}: attention S2->S1": s2_to_s1[head].item(),
                      f"{title} {label(head)}: attention S2->after S1": s2_to_after_s1[head].item(),
                      f"{title} {label(head)}: path via S-inhibition values": effect}
    return found
