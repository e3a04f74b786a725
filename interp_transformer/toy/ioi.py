"""Recipe for ``ioi-mini``: an attention-only model organism of Wang et al.'s (2022) IOI circuit.

"When Mary and John went to the store , John gave a drink to" -> "Mary". The subject (S) is
named twice (S1, S2), the indirect object (IO) once; the answer is the IO. 250 names appear in
IOI training sentences (``NAMES_IN_IOI``), only on the training templates. The other 121 names
(``NAMES_HELDOUT``) appear only in copying text: a sentence with one name repeated at its end
("Mia went to the park . Everyone at the park waved to Mia"), or a sentence said twice
(induction). Held-out names on held-out templates measure whether the model finds the IO without
having memorised names or templates; a probe frame with the names first (``NAMES_FIRST_PROBE``) shows
where it still fails.

Trained on next-token loss alone, small models solve this task another way: every run we tried
copied both names and suppressed the one at S2 (no name movers). So for the first
``HINT_STEPS`` steps the loss also asks five heads to attend where Wang et al.'s head classes
attend (``ATTENTION_HINTS``): a duplicate-token head from S2 to S1, two S-inhibition heads from
the end to S2, two name movers from the end to the IO. After that the hint is dropped and
training continues on next-token loss only. The hint fixes *where* those heads look, nothing
else: what they write (the name movers' OV copying), how the S-inhibition heads steer the name
movers (path patching into their queries), which heads join each class, and the held-out
accuracy are learned, and are what the card measures.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from interp_transformer.config import TransformerConfig
from interp_transformer.model import HookedTransformer
from interp_transformer.toy.evaluation import Figure
from interp_transformer.toy.ioi_names import MORE_NAMES
from interp_transformer.toy.recipes import Recipe
from interp_transformer.toy.tokenizer import build_word_tokenizer
from interp_transformer.toy.train import Batch, TrainSettings, masked_loss
from interp_transformer.toy.words import IOI_NAMES_HELDOUT, IOI_NAMES_TRAIN, IOI_OBJECTS, IOI_PLACES

# With many names in the IOI sentences, knowing which names ever answer is worth little; the
# held-out names compete with them only through copying.
N_MORE_IOI_NAMES = 150
NAMES_IN_IOI = IOI_NAMES_TRAIN + MORE_NAMES[:N_MORE_IOI_NAMES]
NAMES_HELDOUT = IOI_NAMES_HELDOUT + MORE_NAMES[N_MORE_IOI_NAMES:]  # never in an IOI training sentence
ALL_NAMES = IOI_NAMES_TRAIN + IOI_NAMES_HELDOUT + MORE_NAMES

# {A} is the indirect object (the answer), {B} the subject named twice; "{A} and {B}" is swapped
# to "{B} and {A}" half the time, so the IO comes first or second equally often.
TRAIN_TEMPLATES = (
    "When {A} and {B} went to the {place} , {B} gave a {object} to",
    "When {A} and {B} got a {object} at the {place} , {B} decided to give it to",
    "When {A} and {B} got a {object} at the {place} , {B} decided to give the {object} to",
    "After {A} and {B} went to the {place} , {B} handed a {object} to",
    "While {A} and {B} were at the {place} , {B} gave a {object} to",
    "While {A} and {B} were commuting to the {place} , {B} gave a {object} to",
    "Then , {A} and {B} had a long day at the {place} . {B} gave a {object} to",
    "Then , {A} and {B} went to the {place} . {B} gave a {object} to",
    "Then , {A} and {B} were working at the {place} . {B} decided to give a {object} to",
    "Then , {A} and {B} were thinking about going to the {place} . {B} wanted to give a {object} to",
    "Then , {A} and {B} had a long argument , and afterwards {B} said to",
    "Friends {A} and {B} found a {object} at the {place} . {B} gave it to",
    "The {place} was quiet when {A} and {B} arrived . {B} passed a {object} to",
    "Yesterday {A} and {B} visited the {place} , and {B} showed a {object} to",
    "After the lunch , {A} and {B} went to the {place} . {B} gave a {object} to",
    "Afterwards , {A} and {B} went to the {place} . {B} gave a {object} to",
)
HELDOUT_TEMPLATES = (  # never in an IOI training sentence; their words all occur in the training text
    "The {place} {A} and {B} went to had a {object} . {B} gave it to",
    "Then , {A} and {B} had a lot of fun at the {place} . {B} gave a {object} to",
    "While {A} and {B} were working at the {place} , {B} gave a {object} to",
    "Yesterday , {A} and {B} found a {object} . Later {B} handed it to",
    "At the {place} , {A} and {B} were quiet . Then {B} showed a {object} to",
)
# Copying text over every name. One name, copied at the end (the answer is the only name there):
SINGLE_NAME_TEMPLATES = (
    "{A} went to the {place} . Everyone at the {place} waved to",
    "{A} found a {object} . Later the {object} was given back to",
    "It was a lot of fun at the {place} with {A} . Then we gave a {object} to",
    "At the {place} , {A} was quiet . We said hello to",
    "The {object} was at the {place} . {A} wanted it , so we handed it to",
    "Then , {A} had a long day at the {place} and afterwards talked to",
)
# ... or a sentence said twice (induction); its second copy is scored from its second token on.
REPEAT_TEMPLATES = (
    "{A} met {B} at the {place} .",
    "{A} , {B} and {C} had a {object} .",
    "Later {A} and {B} went to the {place} .",
)
PREFIXES = ("", "", "", "It was a nice day .", "In the morning ,", "Later that week ,", "Then ,", "It was quiet .")
IOI_FRACTION = 0.5  # of each batch; the rest is copying text, half single-name and half repeats
ANSWER_WEIGHT = 10.0  # extra loss weight on the predictions the tasks score (IO, copied name, repeat)
SEQ_LEN = 32
_ALL_TEXT = TRAIN_TEMPLATES + HELDOUT_TEMPLATES + SINGLE_NAME_TEMPLATES + REPEAT_TEMPLATES + PREFIXES
FILLER_WORDS = sorted({w for t in _ALL_TEXT for w in t.split() if not w.startswith("{")})
VOCAB = FILLER_WORDS + ALL_NAMES + IOI_PLACES + IOI_OBJECTS


@functools.cache
def tokenizer():
    """The word-level tokenizer, built once: the data sampler uses its vocabulary every step."""
    return build_word_tokenizer(VOCAB)


@functools.cache
def _word_ids() -> dict[str, int]:
    return dict(tokenizer().get_vocab())


CONFIG = TransformerConfig(
    d_model=128, n_layers=3, n_heads=8, d_head=16, d_mlp=None, attn_only=True, d_vocab=3 + len(VOCAB), n_ctx=SEQ_LEN,
    normalization_type="LN", init_range=0.05, seed=0, model_name="ioi-mini",
)


class IOIPrompts(NamedTuple):
    """Token ids of IOI prompts (left-aligned, right-padded), answer and subject ids, and the answer position."""

    tokens: Tensor  # [batch pos]
    io_ids: Tensor  # [batch]
    s_ids: Tensor  # [batch]
    end_pos: Tensor  # [batch]: position whose next-token prediction is the answer


def _randint(n: int, generator: torch.Generator) -> int:
    return int(torch.randint(n, (1,), generator=generator))


def _pick(options: Sequence[str], generator: torch.Generator) -> str:
    return options[_randint(len(options), generator)]


def _fill(text: str, values: dict[str, str]) -> list[int]:
    """Token ids of a template with its ``{slots}`` filled (words and names are single tokens)."""
    ids = _word_ids()
    return [ids[values[word[1:-1]]] if word.startswith("{") else ids[word] for word in text.split()]


def _slot_values(names: Sequence[str], generator: torch.Generator) -> dict[str, str]:
    a, b, c = (names[i] for i in torch.randperm(len(names), generator=generator)[:3].tolist())
    return {"A": a, "B": b, "C": c, "place": _pick(IOI_PLACES, generator), "object": _pick(IOI_OBJECTS, generator)}


def _ioi_ids(template: str, names: Sequence[str], generator: torch.Generator) -> tuple[list[int], str, str]:
    """One IOI prompt's ids (without BOS or answer), its IO name and its S name."""
    values = _slot_values(names, generator)
    if _randint(2, generator):  # BABA order: the subject named first
        template = template.replace("{A} and {B}", "{B} and {A}", 1)
    return _fill(template, values), values["A"], values["B"]


def ioi_prompts(n: int, names: Sequence[str], generator: torch.Generator, templates: Sequence[str] = TRAIN_TEMPLATES) -> IOIPrompts:
    """``n`` IOI prompts on ``names`` and ``templates`` (no prefix), each starting with BOS."""
    tok, rows, io_ids, s_ids = tokenizer(), [], [], []
    for _ in range(n):
        ids, io, s = _ioi_ids(_pick(templates, generator), names, generator)
        rows.append([tok.bos_token_id] + ids)
        io_ids.append(_word_ids()[io])
        s_ids.append(_word_ids()[s])
    tokens = _pad(rows)
    return IOIPrompts(tokens, torch.tensor(io_ids), torch.tensor(s_ids), torch.tensor([len(row) - 1 for row in rows]))


def _pad(rows: list[list[int]]) -> Tensor:
    tokens = torch.full((len(rows), SEQ_LEN), tokenizer().pad_token_id)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row)
    return tokens


def _training_row(generator: torch.Generator) -> tuple[list[int], list[float]]:
    """One training sequence and the loss weight of each next-token prediction in it."""
    start = [tokenizer().bos_token_id] + _fill(_pick(PREFIXES, generator), {})
    kind = float(torch.rand(1, generator=generator))
    if kind < IOI_FRACTION:
        body, io, _ = _ioi_ids(_pick(TRAIN_TEMPLATES, generator), NAMES_IN_IOI, generator)
        body, scored = body + [_word_ids()[io]], [len(body)]
    elif kind < (1 + IOI_FRACTION) / 2:
        values = _slot_values(ALL_NAMES, generator)
        body = _fill(_pick(SINGLE_NAME_TEMPLATES, generator), values) + [_word_ids()[values["A"]]]
        scored = [len(body) - 1]
    else:
        once = _fill(_pick(REPEAT_TEMPLATES, generator), _slot_values(ALL_NAMES, generator))
        body, scored = once + once, list(range(len(once) + 1, 2 * len(once)))
    ids = start + body
    weights = [1.0] * (len(ids) - 1)  # every next-token prediction counts once ...
    for index in scored:  # ... and the ones the task is about count ANSWER_WEIGHT more
        weights[len(start) + index - 1] += ANSWER_WEIGHT
    return ids, weights


def sample_batch(generator: torch.Generator, batch_size: int) -> Batch:
    """IOI sentences on training names and templates (with the answer), mixed with copying text on all names."""
    rows = [_training_row(generator) for _ in range(batch_size)]
    mask = torch.zeros(batch_size, SEQ_LEN - 1)
    for i, (_, weights) in enumerate(rows):
        mask[i, : len(weights)] = torch.tensor(weights)
    return Batch(_pad([ids for ids, _ in rows]), mask)


# Where Wang et al.'s head classes attend, asked of five heads during the first HINT_STEPS steps:
# (layer, head, query slot, key slot). The slots are those of ``name_positions``.
ATTENTION_HINTS = (
    (0, 0, "S2", "S1"),  # duplicate-token head: at S2, look back at S1
    (1, 0, "END", "S2"), (1, 1, "END", "S2"),  # S-inhibition heads: from the end, look at S2
    (2, 0, "END", "IO"), (2, 1, "END", "IO"),  # name movers: from the end, look at the IO
)
HINT_STEPS = 1500  # of the recipe's 3000; the rest is next-token loss only
HINT_WEIGHT = 1.0


def training_slots(batch: Batch) -> dict[str, Tensor]:
    """The IOI rows of a training batch (``row``) and their ``IO``, ``S1``, ``S2`` and ``END`` positions, each ``[n]``.

    An IOI row has one scored prediction (the answer, at END + 1), a name said once before it (the
    IO, which is the answer) and a name said twice (S). Copying rows have no name said twice, or
    more than one scored prediction.
    """
    if batch.loss_mask.shape != (batch.tokens.shape[0], batch.tokens.shape[1] - 1):
        raise ValueError(f"loss_mask {tuple(batch.loss_mask.shape)} should be [batch pos-1] = "
                         f"{(batch.tokens.shape[0], batch.tokens.shape[1] - 1)}: one weight per next-token prediction")
    name_ids = {_word_ids()[name] for name in ALL_NAMES}
    found: dict[str, list[int]] = {key: [] for key in ("row", "IO", "S1", "S2", "END")}
    for row, (tokens, weights) in enumerate(zip(batch.tokens.tolist(), batch.loss_mask.tolist())):
        scored = [i for i, weight in enumerate(weights) if weight > 1]
        if len(scored) != 1:
            continue
        end = scored[0]
        names = [token for token in tokens[: end + 1] if token in name_ids]
        twice = {token for token in names if names.count(token) == 2}
        if len(twice) != 1 or names.count(tokens[end + 1]) != 1:
            continue
        s1, s2 = (i for i, token in enumerate(tokens[: end + 1]) if token in twice)
        for key, value in zip(found, (row, tokens.index(tokens[end + 1]), s1, s2, end)):
            found[key].append(value)
    return {key: torch.tensor(values, dtype=torch.long) for key, values in found.items()}


def hinted_loss(model: HookedTransformer, batch: Batch, step: int) -> Tensor:
    """Next-token loss, plus for the first ``HINT_STEPS`` steps ``HINT_WEIGHT`` times the mean over
    ``ATTENTION_HINTS`` of -log(attention from the query slot to the key slot) on the batch's IOI rows."""
    if step >= HINT_STEPS:
        return masked_loss(model, batch)
    hinted = max(layer for layer, *_ in ATTENTION_HINTS), max(head for _, head, *_ in ATTENTION_HINTS)
    if hinted[0] >= model.cfg.n_layers or hinted[1] >= model.cfg.n_heads:
        raise ValueError(f"the attention hint needs layer {hinted[0]} and head {hinted[1]}; the model has {model.cfg.n_layers} "
                         f"layers of {model.cfg.n_heads} heads (train ioi.CONFIG, or change ATTENTION_HINTS)")
    patterns: dict[int, Tensor] = {}

    def keep(pattern: Tensor, hook) -> None:
        patterns[int(hook.name.split(".")[1])] = pattern

    layers = sorted({layer for layer, *_ in ATTENTION_HINTS})
    loss = masked_loss(model, batch, fwd_hooks=[(f"blocks.{layer}.attn.hook_pattern", keep) for layer in layers])
    slots = training_slots(batch)
    if len(slots["row"]) == 0:
        return loss
    hint = torch.stack([
        -torch.log(patterns[layer][slots["row"], head, slots[query], slots[key]] + 1e-6).mean()
        for layer, head, query, key in ATTENTION_HINTS
    ]).mean()
    return loss + HINT_WEIGHT * hint


def answer_logits(model: HookedTransformer, prompts: IOIPrompts) -> tuple[Tensor, Tensor]:
    """Logits at each prompt's end position ``[batch d_vocab]`` and the IO-minus-S logit difference ``[batch]``."""
    logits = model(prompts.tokens)[torch.arange(len(prompts.tokens)), prompts.end_pos]
    rows = torch.arange(len(logits))
    return logits, logits[rows, prompts.io_ids] - logits[rows, prompts.s_ids]


SPLITS = {  # name: (names, templates)
    "heldout": (NAMES_HELDOUT, HELDOUT_TEMPLATES),
    "heldout_names_train_templates": (NAMES_HELDOUT, TRAIN_TEMPLATES),
    "train_names": (NAMES_IN_IOI, TRAIN_TEMPLATES),
}


def evaluate(model: HookedTransformer, generator: torch.Generator) -> dict[str, float]:
    metrics = {}
    for split, (names, templates) in SPLITS.items():
        prompts = ioi_prompts(300, names, generator, templates)
        logits, logit_diff = answer_logits(model, prompts)
        metrics[f"{split}_accuracy"] = (logits.argmax(-1) == prompts.io_ids).float().mean().item()
        metrics[f"{split}_logit_diff"] = logit_diff.mean().item()
    return metrics


# A frame outside every template, with the two names first (no word before them): a probe of how far
# the mechanism generalises beyond the held-out templates, reported on the card by order.
NAMES_FIRST_PROBE = ("{A} and {B} went to the {place} . {B} gave a {object} to",)


def names_first_probe(model: HookedTransformer, generator: torch.Generator) -> dict[str, float]:
    """IO top-1 accuracy in ABBA order (IO named first) and BABA order, and the mean logit diff, on 300 probe prompts."""
    prompts = ioi_prompts(300, NAMES_HELDOUT, generator, NAMES_FIRST_PROBE)
    logits, logit_diff = answer_logits(model, prompts)
    where = name_positions(prompts)
    right, abba = logits.argmax(-1) == prompts.io_ids, where["IO"] < where["S1"]
    return {"names_first_probe_accuracy_ABBA": right[abba].float().mean().item(),
            "names_first_probe_accuracy_BABA": right[~abba].float().mean().item(),
            "names_first_probe_logit_diff": logit_diff.mean().item()}


def name_positions(prompts: IOIPrompts) -> dict[str, Tensor]:
    """``[batch]`` positions of the IO name, the subject's first mention (S1), its second (S2) and the end."""
    io = (prompts.tokens == prompts.io_ids[:, None]).int().argmax(-1)
    s_mask = (prompts.tokens == prompts.s_ids[:, None]).int()
    s2 = (s_mask * (s_mask.cumsum(-1) == 2)).argmax(-1)
    return {"IO": io, "S1": s_mask.argmax(-1), "S2": s2, "END": prompts.end_pos}


def abc_prompts(prompts: IOIPrompts, names: Sequence[str], generator: torch.Generator) -> Tensor:
    """Wang et al.'s ABC corruption: the same sentences with IO, S1 and S2 replaced by three different random names."""
    ids = torch.tensor([_word_ids()[name] for name in names])
    where, tokens = name_positions(prompts), prompts.tokens.clone()
    for i in range(len(tokens)):
        picked = ids[torch.randperm(len(ids), generator=generator)[:3]]
        for slot, name in zip(("IO", "S1", "S2"), picked):
            tokens[i, where[slot][i]] = name
    return tokens



# Found on the shipped weights by analyses/ioi_circuit.py (path patching); the card measures their evidence.
HEAD_CLASSES: dict[str, list[tuple[int, int]]] = {
    "name_movers": [(2, 0), (2, 1), (2, 3)],  # L2H0 and L2H1 were hinted; L2H3 joined by itself
    "s_inhibition": [(1, 0), (1, 1)],
    "duplicate_token": [(0, 0)],
    "induction": [],  # none: a duplicate-token head alone marks S2 in this model
}
FIGURE_HOW = {  # figure-name fragment -> how it is measured; the first fragment found in a name wins
    "names_first_probe": f"IO top-1 accuracy by order (ABBA: IO named first), or logit diff; 300 prompts on held-out names "
                         f"in a frame outside every template, the names first: '{NAMES_FIRST_PROBE[0]}'",
    "accuracy": "IO is the top-1 prediction; 300 IOI prompts",
    "logit_diff": "logit(IO) - logit(S); 300 IOI prompts",
    "name movers' END": "name movers' mean attention, their queries path-patched (or not) with the S-inhibition heads' "
                        "ABC output; 100 held-out IOI prompts",
    "copying score in context": "share of 300 held-out IOI prompts whose IO is in the top 5 logits after the head's OV "
                                "circuit reads the residual stream at the IO position (ln1, W_V, W_O, ln_final, W_U)",
    "attention": "mean attention between the named slots; 300 held-out IOI prompts",
    "path": "relative change of the IO-S logit difference when the path is patched with ABC prompts (-1 = all of it); "
            "100 held-out IOI prompts",
}
SPLIT_HOW = {"heldout": "held-out names on held-out templates", "heldout_names_train_templates": "held-out names on training templates",
             "train_names": "training names on training templates"}


def _how(figure: str) -> str:
    for split, where in SPLIT_HOW.items():
        for metric in ("accuracy", "logit_diff"):
            if figure == f"{split}_{metric}":
                return f"{FIGURE_HOW[metric]}, {where}"
    for fragment, how in FIGURE_HOW.items():
        if fragment in figure:
            return how
    raise KeyError(f"no description for card figure {figure!r}")


def card_figures(model: HookedTransformer, seeds: Sequence[int]) -> list[Figure]:
    from interp_transformer.circuits import copying_scores
    from interp_transformer.toy.ioi_heads import class_evidence, name_copy_score

    def measure(generator: torch.Generator) -> dict[str, float]:
        metrics = {"training_data_loss": masked_loss(model, sample_batch(generator, 256)).item()} | evaluate(model, generator)
        return metrics | names_first_probe(model, generator) | class_evidence(model, HEAD_CLASSES, generator)

    runs = [measure(torch.Generator().manual_seed(seed)) for seed in seeds]
    how = {"training_data_loss": "weighted next-token loss on 256 fresh training sequences (without the attention hint)"}
    figures = [Figure(name, tuple(run[name] for run in runs), how.get(name) or _how(name)) for name in runs[0]]
    eigen = copying_scores(model)
    for head in HEAD_CLASSES["name_movers"]:
        figures.append(Figure(f"name mover {label(head)}: copying score (names)", (name_copy_score(model, head),),
                              f"share of the {len(ALL_NAMES)} names whose own logit is in the top 5 after the head's OV "
                              "circuit (Wang et al.); weights only", exact=True))
        figures.append(Figure(f"name mover {label(head)}: copying score (eigenvalues)", (eigen[head].item(),),
                              "Re(sum of eigenvalues) / sum of their absolute values, of W_E W_OV W_U over the whole vocabulary; "
                              "weights only", exact=True))
    return figures


def _hint_text() -> str:
    roles = {"S1": "S1", "S2": "S2", "END": "the end", "IO": "the IO"}
    return "; ".join(f"L{layer}H{head}: {roles[query]} -> {roles[key]}" for layer, head, query, key in ATTENTION_HINTS)


def card_notes(training: dict) -> str:
    history = {row["step"]: row for row in training["history"]}
    at_hint_end = history.get(HINT_STEPS)
    hint_end = (f" At step {HINT_STEPS}, when the hint stopped, held-out accuracy was {at_hint_end['heldout_accuracy']:.3f} "
                f"(one evaluation draw, seed {RECIPE.eval_seed}; full history in `training.json`)." if at_hint_end else "")
    return (
        f"**Attention hint.** For the first {HINT_STEPS} of the {training['steps']} steps the loss adds "
        f"{HINT_WEIGHT:g} x the mean of -log(attention) over five heads' target pairs on the batch's IOI rows, the pairs "
        f"where Wang et al.'s (2022) head classes attend ({_hint_text()}); from step {HINT_STEPS} on it is the weighted "
        f"next-token loss alone.{hint_end} Why a hint: in the screening runs recorded on issue 13 (stop 17), the same data "
        "without it (8,000 steps) reached held-out accuracy 0.937 with heads that attend to both name slots by position and "
        "a head at S2 that lowers S's logit: no name movers, so no S-inhibition heads steering them; variants with MLPs, "
        "distractor names or other auxiliary losses did the same or worse. The hint fixes where five heads look. What they "
        "write, how the S-inhibition heads steer the name movers (the path into their queries), which other heads join a "
        "class, and the accuracy on held-out names and templates are learned; those are what the results below measure.\n\n"
        "**Head classes** (found by `analyses/ioi_circuit.py` with path patching, as in Wang et al.):\n"
        f"- name movers {', '.join(label(h) for h in HEAD_CLASSES['name_movers'])}: attend from the end to the IO and copy it "
        "(direct path to the logits, END->IO attention, copying score). L2H3 was not hinted. L2H2 and L2H7 also attend "
        "to the IO and carry part of the answer directly (direct paths about -0.08, against L2H3's -0.11), but the "
        "analysis leaves them out on its in-context copying cutoff of 0.9: L2H2 scores about 0.7-0.8 there and L2H7 about "
        "0.4, against L2H3's 0.97. L2H2 is a borderline case (its weights-only score, 0.111, is slightly above L2H3's 0.105); call it "
        "a weaker name mover if you prefer;\n"
        f"- S-inhibition heads {', '.join(label(h) for h in HEAD_CLASSES['s_inhibition'])}: attend from the end to S2. Their "
        "ABC output patched into the name movers' queries only moves the name movers' attention from the IO (about 0.99) "
        "to about half IO, half S, and together removes most of the logit difference; each alone removes a sixth to a quarter "
        "of it, so the two act superadditively;\n"
        f"- duplicate-token head {', '.join(label(h) for h in HEAD_CLASSES['duplicate_token'])}: at S2 attends to S1; "
        "its output patched into the S-inhibition heads' values removes the logit difference. With the S-inhibition heads "
        "in layer 1, only layer-0 heads can feed their values, and a layer-0 head cannot be an induction head, so this "
        "model has no place for one.\n\n"
        "**Copying scores.** The weights-only score feeds a name's bare embedding through the head's OV circuit. In this "
        "attention-only model, layer 0 (L0H0 attends to the current token at a name said once) adds to what a later head "
        "reads at a name's position, as GPT-2's first MLP does; Wang et al. include that MLP. The in-context score "
        "feeds the residual stream the head reads at the IO; there the name movers copy (table).\n\n"
        "**Known gap.** The mechanism does not reach every frame. With the names first and no word before them "
        f"(`{NAMES_FIRST_PROBE[0]}`, a frame outside every template) the model answers right when S is named first "
        "(BABA) but mostly wrong when the IO is (ABBA): see the names_first_probe rows. There L0H0's attention from S2 to S1 "
        "drops to about 0.2-0.3 (0.9 on the templates), and the name movers fall back to the later of the two first names. Every IOI training template puts a word "
        "before the names.\n\n"
        "**Reproducibility.** Seeded data and initialisation, 1 thread, deterministic algorithms. A second run of "
        "`python -m interp_transformer.toy.train ioi-mini` on the same machine (x86_64, torch 2.13.0+cpu), with other jobs "
        "sharing its cores, gave bit-identical weights. Other CPUs were not tried: float reductions may round differently "
        "with other vector instructions, so exact bits may differ there. Held-out accuracy (0.99 against the 0.95 bar) and "
        "the S-inhibition and duplicate-token classes have wide margins; the name-mover set rests on the copying cutoff, "
        "which L2H2 and L2H3 sit on either side of. The tests check the claims within the stated spreads, not bit for bit."
    )


def label(head: tuple[int, int]) -> str:
    return f"L{head[0]}H{head[1]}"


RECIPE = Recipe(
    name="ioi-mini",
    config=CONFIG,
    settings=TrainSettings(steps=3000, batch_size=64, lr=2e-3, weight_decay=0.01, warmup_steps=100, eval_every=250, threads=1,
                           deterministic=True),
    build_tokenizer=tokenizer,
    sample_batch=sample_batch,
    evaluate=evaluate,
    card_figures=card_figures,
    card_notes=card_notes,
    loss_fn=hinted_loss,
    data_description=(
        f"{IOI_FRACTION:.0%} of each batch: indirect-object sentences from {len(TRAIN_TEMPLATES)} training templates "
        f"(each in ABBA and BABA order) over {len(NAMES_IN_IOI)} training names, {len(IOI_PLACES)} places and "
        f"{len(IOI_OBJECTS)} objects, with the answer appended. The rest, half and half: a sentence with one name that "
        f"is copied at its end ({len(SINGLE_NAME_TEMPLATES)} templates), or a sentence said twice "
        f"({len(REPEAT_TEMPLATES)} templates), over all {len(ALL_NAMES)} names. The {len(NAMES_HELDOUT)} held-out names "
        f"({', '.join(IOI_NAMES_HELDOUT)} and {len(NAMES_HELDOUT) - len(IOI_NAMES_HELDOUT)} more) and the {len(HELDOUT_TEMPLATES)} held-out "
        "templates never occur in an IOI training sentence. A random short prefix (none in 3 of 8) shifts positions. "
        "Loss on every next-token prediction, with weight "
        f"{1 + ANSWER_WEIGHT:g} on the ones the task scores (the IO, the copied name, the second copy from its second "
        "word) and 1 on the rest. Accuracy = the IO name is the top-1 prediction; logit diff = logit(IO) - logit(S)."
    ),
)
