"""ioi-mini's training loss: the IOI slots it finds in a batch, and the attention hint it adds, recomputed by hand."""

from __future__ import annotations

import pytest
import torch

from interp_transformer import HookedTransformer
from interp_transformer.toy import ioi
from interp_transformer.toy.train import masked_loss


@pytest.fixture(scope="module")
def batch():
    return ioi.sample_batch(torch.Generator().manual_seed(3), 64)


def test_training_slots_are_the_ioi_rows_and_their_name_positions(batch):
    """Independent route: decode each row to words and find IO, S1, S2 and the end by string matching."""
    tok, names = ioi.tokenizer(), set(ioi.ALL_NAMES)
    slots = ioi.training_slots(batch)
    expected = {}
    for row, (ids, weights) in enumerate(zip(batch.tokens.tolist(), batch.loss_mask.tolist())):
        words = tok.convert_ids_to_tokens(ids)
        scored = [i for i, w in enumerate(weights) if w == 1 + ioi.ANSWER_WEIGHT]
        if len(scored) != 1:
            continue
        end = scored[0]
        said = [w for w in words[: end + 1] if w in names]  # the prompt, without the answer
        if sorted(said.count(w) for w in set(said)) == [1, 2] and said.count(words[end + 1]) == 1:  # IO once, S twice
            s = next(w for w in set(said) if said.count(w) == 2)
            s1, s2 = (i for i, w in enumerate(words[: end + 1]) if w == s)
            expected[row] = (words.index(words[end + 1]), s1, s2, end)
    assert len(expected) > 20, "about half of a batch are IOI sentences"
    found = {row: (io, s1, s2, end) for row, io, s1, s2, end in zip(*(slots[k].tolist() for k in ("row", "IO", "S1", "S2", "END")))}
    assert found == expected


def test_hinted_loss_adds_the_attention_hint_until_hint_steps(batch):
    torch.manual_seed(0)
    model = HookedTransformer(ioi.CONFIG)
    plain = masked_loss(model, batch)
    slots = ioi.training_slots(batch)
    _, cache = model.run_with_cache(batch.tokens)
    terms = [-torch.log(cache["pattern", layer][slots["row"], head, slots[query], slots[key]] + 1e-6).mean()
             for layer, head, query, key in ioi.ATTENTION_HINTS]
    expected = plain + ioi.HINT_WEIGHT * sum(terms) / len(terms)
    assert ioi.hinted_loss(model, batch, 0).item() == pytest.approx(expected.item(), rel=1e-5)
    assert ioi.hinted_loss(model, batch, ioi.HINT_STEPS - 1).item() == pytest.approx(expected.item(), rel=1e-5)
    assert ioi.hinted_loss(model, batch, ioi.HINT_STEPS).item() == pytest.approx(plain.item(), rel=1e-6), "no hint after HINT_STEPS"
    assert expected.item() > plain.item() + 0.5, "an untrained model's hint term is large: the comparison is not vacuous"


def test_bad_inputs_are_refused_by_name(batch):
    with pytest.raises(ValueError, match="should be \\[batch pos-1\\]"):
        ioi.training_slots(ioi.Batch(batch.tokens, batch.loss_mask[:, :5]))
    small = HookedTransformer(ioi.CONFIG.replace(n_heads=1, d_head=128))
    with pytest.raises(ValueError, match="needs layer 2 and head 1"):
        ioi.hinted_loss(small, batch, 0)
