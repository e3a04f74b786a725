"""Recipe for ``ioi-mini``: a small model with MLPs trained on templated indirect-object sentences.

"When Mary and John went to the store , John gave a drink to" -> "Mary". The subject (S) is
named twice, the indirect object (IO) once; the answer is the IO. Names split into a training
set and a held-out set. Held-out names appear in training only in copying sentences
("Hannah met Hugo . Hannah met Hugo ."), never in an IOI sentence, so held-out accuracy
measures whether the model learned the IOI algorithm rather than memorised names.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from interp_transformer.config import TransformerConfig
from interp_transformer.model import HookedTransformer
from interp_transformer.toy.evaluation import Figure
from interp_transformer.toy.recipes import Recipe
from interp_transformer.toy.tokenizer import build_word_tokenizer
from interp_transformer.toy.train import Batch, TrainSettings
from interp_transformer.toy.words import IOI_NAMES_HELDOUT, IOI_NAMES_TRAIN, IOI_OBJECTS, IOI_PLACES

# {A} is the indirect object (the answer), {B} the subject named twice. Each template also
# runs with the first two names swapped, so the IO is first or second equally often.
TEMPLATES = (
    "When {A} and {B} went to the {place} , {B} gave a {object} to",
    "When {A} and {B} got a {object} at the {place} , {B} decided to give it to",
    "After {A} and {B} went to the {place} , {B} handed a {object} to",
    "While {A} and {B} were at the {place} , {B} gave a {object} to",
    "Then , {A} and {B} had a long day at the {place} . {B} gave a {object} to",
    "Friends {A} and {B} found a {object} at the {place} . {B} gave it to",
    "The {place} was quiet when {A} and {B} arrived . {B} passed a {object} to",
    "Yesterday {A} and {B} visited the {place} , and {B} showed a {object} to",
)
COPY_TEMPLATE = "{A} met {B} at the {place} . {A} met {B} at the {place} ."
COPY_FRACTION = 0.25
SEQ_LEN = 24
FILLER_WORDS = sorted({w for t in TEMPLATES + (COPY_TEMPLATE,) for w in t.split() if not w.startswith("{")})
VOCAB = FILLER_WORDS + IOI_NAMES_TRAIN + IOI_NAMES_HELDOUT + IOI_PLACES + IOI_OBJECTS


@functools.cache
def tokenizer():
    """The word-level tokenizer, built once: the data sampler tokenizes every step."""
    return build_word_tokenizer(VOCAB)


CONFIG = TransformerConfig(
    d_model=128, n_layers=3, n_heads=4, d_head=32, d_mlp=512, d_vocab=3 + len(VOCAB), n_ctx=SEQ_LEN,
    act_fn="gelu_new", normalization_type="LN", init_range=0.07, seed=0, model_name="ioi-mini",
)


class IOIPrompts(NamedTuple):
    """Token ids of IOI prompts (left-aligned, right-padded), answer and subject ids, and the answer position."""

    tokens: Tensor  # [batch pos]
    io_ids: Tensor  # [batch]
    s_ids: Tensor  # [batch]
    end_pos: Tensor  # [batch]: position whose next-token prediction is the answer


def _pick(options: list[str], generator: torch.Generator) -> str:
    return options[int(torch.randint(len(options), (1,), generator=generator))]


def ioi_sentence(names: list[str], generator: torch.Generator) -> tuple[str, str, str]:
    """One prompt (without the answer), the IO name and the S name."""
    template = _pick(list(TEMPLATES), generator)
    order = torch.randperm(len(names), generator=generator)[:2].tolist()
    io, s = names[order[0]], names[order[1]]
    if bool(torch.rand(1, generator=generator) < 0.5):  # BABA order: subject named first
        template = template.replace("{A} and {B}", "{B} and {A}", 1)
    prompt = template.format(A=io, B=s, place=_pick(IOI_PLACES, generator), object=_pick(IOI_OBJECTS, generator))
    return prompt, io, s


def ioi_prompts(n: int, names: list[str], generator: torch.Generator) -> IOIPrompts:
    tok = tokenizer()
    rows, io_ids, s_ids = [], [], []
    for _ in range(n):
        prompt, io, s = ioi_sentence(names, generator)
        rows.append([tok.bos_token_id] + tok(prompt, add_special_tokens=False)["input_ids"])
        io_ids.append(tok.convert_tokens_to_ids(io))
        s_ids.append(tok.convert_tokens_to_ids(s))
    tokens = torch.full((n, SEQ_LEN), tok.pad_token_id)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row)
    end_pos = torch.tensor([len(row) - 1 for row in rows])
    return IOIPrompts(tokens, torch.tensor(io_ids), torch.tensor(s_ids), end_pos)


def sample_batch(generator: torch.Generator, batch_size: int) -> Batch:
    """IOI prompts on training names with the answer appended, mixed with copying sentences on all names."""
    n_copy = int(batch_size * COPY_FRACTION)
    prompts = ioi_prompts(batch_size - n_copy, IOI_NAMES_TRAIN, generator)
    tokens = prompts.tokens.clone()
    tokens[torch.arange(len(tokens)), prompts.end_pos + 1] = prompts.io_ids
    lengths = prompts.end_pos + 2
    copies = [_copy_sentence(generator) for _ in range(n_copy)]
    tokens = torch.cat([tokens, torch.stack([c for c, _ in copies])]) if copies else tokens
    lengths = torch.cat([lengths, torch.tensor([n for _, n in copies], dtype=torch.long)])
    mask = (torch.arange(SEQ_LEN - 1)[None, :] < (lengths - 1)[:, None]).float()
    return Batch(tokens, mask)


def _copy_sentence(generator: torch.Generator) -> tuple[Tensor, int]:
    tok = tokenizer()
    names = IOI_NAMES_TRAIN + IOI_NAMES_HELDOUT
    order = torch.randperm(len(names), generator=generator)[:2].tolist()
    text = COPY_TEMPLATE.format(A=names[order[0]], B=names[order[1]], place=_pick(IOI_PLACES, generator))
    ids = [tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]
    row = torch.full((SEQ_LEN,), tok.pad_token_id)
    row[: len(ids)] = torch.tensor(ids)
    return row, len(ids)


def answer_logits(model: HookedTransformer, prompts: IOIPrompts) -> tuple[Tensor, Tensor]:
    """Logits at each prompt's end position ``[batch d_vocab]`` and the IO-minus-S logit difference ``[batch]``."""
    logits = model(prompts.tokens)[torch.arange(len(prompts.tokens)), prompts.end_pos]
    rows = torch.arange(len(logits))
    return logits, logits[rows, prompts.io_ids] - logits[rows, prompts.s_ids]


def evaluate(model: HookedTransformer, generator: torch.Generator) -> dict[str, float]:
    metrics = {}
    for split, names in (("heldout", IOI_NAMES_HELDOUT), ("train_names", IOI_NAMES_TRAIN)):
        prompts = ioi_prompts(300, names, generator)
        logits, logit_diff = answer_logits(model, prompts)
        metrics[f"{split}_accuracy"] = (logits.argmax(-1) == prompts.io_ids).float().mean().item()
        metrics[f"{split}_logit_diff"] = logit_diff.mean().item()
    return metrics



def name_positions(prompts: IOIPrompts) -> dict[str, Tensor]:
    """``[batch]`` positions of the IO name, the subject's first mention (S1) and its second (S2)."""
    io = (prompts.tokens == prompts.io_ids[:, None]).int().argmax(-1)
    s_mask = (prompts.tokens == prompts.s_ids[:, None]).int()
    s1 = s_mask.argmax(-1)
    s2 = (s_mask * (s_mask.cumsum(-1) == 2)).argmax(-1)
    return {"IO": io, "S1": s1, "S2": s2}


def abc_prompts(prompts: IOIPrompts, names: Sequence[str], generator: torch.Generator) -> Tensor:
    """Wang et al.'s ABC corruption: the same sentences with IO, S1 and S2 replaced by three different random names.

    Nothing in an ABC prompt says which name answers, so patching from it removes the IOI signal.
    """
    ids = torch.tensor(tokenizer().convert_tokens_to_ids(list(names)))
    where, tokens = name_positions(prompts), prompts.tokens.clone()
    for i in range(len(tokens)):
        picked = ids[torch.randperm(len(ids), generator=generator)[:3]]
        for slot, name in zip(("IO", "S1", "S2"), picked):
            tokens[i, where[slot][i]] = name
    return tokens


def last_layer_heads(model: HookedTransformer, prompts: IOIPrompts) -> dict[str, float]:
    """Per last-layer head: mean attention from the end to S2 and to IO, and its direct effect on the S and IO logits.

    The direct effect is the head's output at the end position through the final LayerNorm (the
    whole stream's scale) and the unembedding, minus its mean over all names: softmax ignores a
    shift shared by every name, so only the difference says whether the head favours or suppresses one.
    """
    layer, rows = model.cfg.n_layers - 1, torch.arange(len(prompts.tokens))
    _, cache = model.run_with_cache(prompts.tokens)
    pattern = cache[f"blocks.{layer}.attn.hook_pattern"][rows, :, prompts.end_pos]  # [batch head_index key_pos]
    z = cache[f"blocks.{layer}.attn.hook_z"][rows, prompts.end_pos]  # [batch head_index d_head]
    head_out = torch.einsum("bhd,hdm->bhm", z, model.blocks[layer].attn.W_O)
    normalized = (head_out - head_out.mean(-1, keepdim=True)) / cache["ln_final.hook_scale"][rows, prompts.end_pos][:, None]
    name_ids = torch.tensor(tokenizer().convert_tokens_to_ids(IOI_NAMES_TRAIN + IOI_NAMES_HELDOUT))
    name_logits = (normalized * model.ln_final.w) @ model.W_U[:, name_ids]  # [batch head_index name]
    name_logits = name_logits - name_logits.mean(-1, keepdim=True)
    position_of = {int(token): i for i, token in enumerate(name_ids)}
    s_col = torch.tensor([position_of[int(t)] for t in prompts.s_ids])
    io_col = torch.tensor([position_of[int(t)] for t in prompts.io_ids])
    where = name_positions(prompts)
    metrics = {}
    for head in range(model.cfg.n_heads):
        label = f"L{layer}H{head}"
        metrics[f"{label}_attention_end_to_S2"] = pattern[rows, head, where["S2"]].mean().item()
        metrics[f"{label}_attention_end_to_IO"] = pattern[rows, head, where["IO"]].mean().item()
        metrics[f"{label}_direct_effect_on_S_logit"] = name_logits[rows, head, s_col].mean().item()
        metrics[f"{label}_direct_effect_on_IO_logit"] = name_logits[rows, head, io_col].mean().item()
    return metrics


def card_figures(model: HookedTransformer, seeds: Sequence[int]) -> list[Figure]:
    from interp_transformer.toy.train import masked_loss

    def measure(generator: torch.Generator) -> dict[str, float]:
        metrics = evaluate(model, generator) | {"training_data_loss": masked_loss(model, sample_batch(generator, 256)).item()}
        for split, names in (("train_names", IOI_NAMES_TRAIN), ("heldout", IOI_NAMES_HELDOUT)):
            heads = last_layer_heads(model, ioi_prompts(300, names, generator))
            metrics |= {f"{key} ({split})": value for key, value in heads.items()}
        return metrics

    runs = [measure(torch.Generator().manual_seed(seed)) for seed in seeds]
    how = {
        "training_data_loss": "next-token loss on 256 fresh training sequences (IOI and copying)",
        "heldout_accuracy": "IO is the top-1 prediction; 300 IOI prompts on held-out names",
        "heldout_logit_diff": "logit(IO) - logit(S); 300 IOI prompts on held-out names",
        "train_names_accuracy": "IO is the top-1 prediction; 300 IOI prompts on training names",
        "train_names_logit_diff": "logit(IO) - logit(S); 300 IOI prompts on training names",
    }
    last = model.cfg.n_layers - 1
    for split in ("train_names", "heldout"):
        for head in range(model.cfg.n_heads):
            label, prompts = f"L{last}H{head}", f"300 IOI prompts on {split.replace('_', ' ')}"
            how[f"{label}_attention_end_to_S2 ({split})"] = f"attention from the last prompt token to S2; {prompts}"
            if split == "heldout":  # held-out rows: only what changes (the heads lose S2 and stop suppressing S)
                how[f"{label}_direct_effect_on_S_logit ({split})"] = (
                    f"head output through ln_final and W_U: logit(S) minus the mean name logit; {prompts}")
                continue
            how[f"{label}_attention_end_to_IO ({split})"] = f"attention from the last prompt token to IO; {prompts}"
            for name in ("S", "IO"):
                how[f"{label}_direct_effect_on_{name}_logit ({split})"] = (
                    f"head output through ln_final and W_U: logit({name}) minus the mean name logit; {prompts}")
    return [Figure(name, tuple(run[name] for run in runs), text) for name, text in how.items()]

RECIPE = Recipe(
    name="ioi-mini",
    config=CONFIG,
    settings=TrainSettings(steps=3000, batch_size=64, lr=1e-3, weight_decay=0.01, warmup_steps=100, eval_every=500),
    build_tokenizer=tokenizer,
    sample_batch=sample_batch,
    evaluate=evaluate,
    card_figures=card_figures,
    card_notes=(
        "The shipped run shared the machine's 2 cores with other jobs (load average 4-8), so its time is inflated. "
        "Retraining with `python -m interp_transformer.toy.train ioi-mini` on an idle 2-core machine (2 threads) took "
        "226 s and reproduced the training-time metrics closely (one evaluation draw, seed 12345: held-out accuracy "
        "0.740, logit diff 1.19; training names 1.00, 7.03).\n\n"
        "What the last-layer heads do: L2H1, L2H2 and L2H3 attend from the last prompt token to the subject's second "
        "mention S2 (0.97, 0.97, 0.99 on training names) and almost never to the indirect object (< 0.001). Their "
        "direct effect lowers the subject's logit (-1.0, -1.1, -2.1 against the mean name) and raises the IO's only "
        "a little (+0.1 to +0.2). They are subject-suppression heads, not name movers in the sense of Wang et al. "
        "(2022), which attend to the IO and copy it. On held-out names they attend to S2 less (0.77-0.84) and "
        "barely lower, or even raise, the subject's logit (-0.11 to +0.18), in line with the lower held-out accuracy."
    ),
    data_description=(
        f"{len(TEMPLATES)} indirect-object templates (each in ABBA and BABA order) over {len(IOI_NAMES_TRAIN)} "
        f"training names, {len(IOI_PLACES)} places and {len(IOI_OBJECTS)} objects, with the answer appended; "
        f"{COPY_FRACTION:.0%} of each batch are copying sentences over all names, including the "
        f"{len(IOI_NAMES_HELDOUT)} held-out names ({', '.join(IOI_NAMES_HELDOUT)}), which never appear in an "
        "IOI sentence during training. Loss on every next-token prediction of the real tokens. "
        "Accuracy = the IO name is the top-1 prediction; logit diff = logit(IO) - logit(S)."
    ),
)
