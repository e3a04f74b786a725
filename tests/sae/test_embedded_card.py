"""The shipped dictionaries' card machinery: what it reads, which positions it evaluates, which loss it reports.

Each check compares against a computation that does not go through ``embedded_card``: modadd-1l's own
training loss (``answer_loss``, its fast last-position forward), the model's plain mean next-token
loss, and the rows of modadd's training split.
"""

from __future__ import annotations

import pytest
import torch

from interp_transformer import HookedTransformer
from interp_transformer.sae import load_embedded
from interp_transformer.sae.embedded_card import evaluated_positions, model_input, sample_batch, sample_tokens, seed_figures
from interp_transformer.toy import modadd

INDUCTION, MODADD = "attn-only-2l-induction", "modadd-1l"


def test_modadd_full_batch_training_still_gets_the_whole_split_and_leaves_the_generator_alone():
    generator = torch.Generator().manual_seed(5)
    state = generator.get_state()
    batch = modadd.sample_batch(generator, 0)
    assert torch.equal(batch.tokens, modadd.split()[0]), "batch_size 0 must give the whole training split in order (retraining needs it)"
    assert torch.equal(generator.get_state(), state), "batch_size 0 must not draw from the generator"


def test_modadd_draws_distinct_seeded_training_rows_that_score_only_the_answer():
    train_rows = {tuple(row) for row in modadd.split()[0].tolist()}
    first = modadd.sample_batch(torch.Generator().manual_seed(7), 500)
    again = modadd.sample_batch(torch.Generator().manual_seed(7), 500)
    other = modadd.sample_batch(torch.Generator().manual_seed(8), 500)
    rows = [tuple(row) for row in first.tokens.tolist()]
    assert first.tokens.shape == (500, 4) and set(rows) <= train_rows and len(set(rows)) == 500, "rows must be distinct training rows"
    assert torch.equal(first.tokens, again.tokens) and not torch.equal(first.tokens, other.tokens), "the draw must follow the generator"
    assert torch.equal(first.loss_mask, torch.tensor([[0.0, 0.0, 1.0]]).expand(500, -1)), "only the answer (predicted at `=`) is scored"
    with pytest.raises(ValueError, match="3830"):
        modadd.sample_batch(torch.Generator(), len(train_rows) + 1)


def test_the_model_reads_each_row_up_to_its_context():
    rows = torch.arange(12).view(3, 4)
    assert torch.equal(model_input(rows, 4), rows) and torch.equal(model_input(rows, 3), rows[:, :3])
    with pytest.raises(ValueError, match="context of 2"):
        model_input(rows, 2)
    assert sample_tokens(MODADD, 8, 0).shape == (8, 3) and sample_tokens(INDUCTION, 8, 0).shape == (8, 64)


def test_bos_is_left_out_only_where_a_row_starts_with_it():
    modadd_model, induction_model = (HookedTransformer.from_pretrained(name) for name in (MODADD, INDUCTION))
    assert evaluated_positions(modadd_model, sample_tokens(MODADD, 64, 0)).all(), "modadd's position 0 is the token a, not <bos>"
    keep = evaluated_positions(induction_model, sample_tokens(INDUCTION, 64, 0))
    assert not keep[:, 0].any() and keep[:, 1:].all(), "the induction rows start with <bos>, which is not evaluated"


def test_the_cards_loss_is_the_loss_each_model_was_trained_on():
    model = HookedTransformer.from_pretrained(MODADD).eval()
    batch = sample_batch(MODADD, 256, 3)
    figures = seed_figures(model, load_embedded("modadd-1l-mlp0-transcoder"), batch)
    with torch.no_grad():
        answer = float(modadd.answer_loss(model, batch))
    assert figures["clean_loss"] == pytest.approx(answer, rel=1e-4, abs=1e-7), "modadd's card loss should be the answer's loss at `=`"

    model = HookedTransformer.from_pretrained(INDUCTION).eval()
    full = sample_batch(INDUCTION, 32, 3)
    figures = seed_figures(model, load_embedded("attn-only-2l-induction-resid-sae"), full)
    with torch.no_grad():
        every_next_token = float(model(full.tokens, return_type="loss"))
    assert figures["clean_loss"] == pytest.approx(every_next_token, rel=1e-5), "the induction card's loss is over every next token"
