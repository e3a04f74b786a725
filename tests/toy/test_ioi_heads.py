"""The IOI head measurements used by analyses/ioi_circuit.py, checked against dense recomputations on the shipped ioi-mini."""

from __future__ import annotations

import pytest
import torch

from interp_transformer import HookedTransformer
from interp_transformer.toy import ioi, ioi_heads


@pytest.fixture(scope="module")
def model() -> HookedTransformer:
    return HookedTransformer.from_pretrained("ioi-mini").eval()


@pytest.fixture(scope="module")
def run(model):
    generator = torch.Generator().manual_seed(7)
    prompts = ioi.ioi_prompts(24, ioi.NAMES_IN_IOI, generator)
    return ioi_heads.ioi_run(model, prompts, ioi.NAMES_IN_IOI, generator)


def test_abc_prompts_replace_io_s1_and_s2_by_three_different_names(run):
    clean, corrupted = run.prompts.tokens, run.corrupted
    names = set(ioi.tokenizer().convert_tokens_to_ids(ioi.NAMES_IN_IOI))
    for row, new, io, s in zip(clean.tolist(), corrupted.tolist(), run.prompts.io_ids.tolist(), run.prompts.s_ids.tolist()):
        slots = [i for i, token in enumerate(row) if token in (io, s)]
        assert len(slots) == 3, f"an IOI prompt names IO once and S twice: {row}"
        assert len({new[i] for i in slots}) == 3 and all(new[i] in names for i in slots), "ABC needs three different names"
        assert [t for i, t in enumerate(row) if i not in slots] == [t for i, t in enumerate(new) if i not in slots], (
            "only the three name slots may change")


def test_attention_reads_the_pattern_at_the_named_slots(model, run):
    with torch.no_grad():
        _, cache = model.run_with_cache(run.prompts.tokens)
    for b in range(3):
        row = run.prompts.tokens[b].tolist()
        s1, s2 = (i for i, t in enumerate(row) if t == run.prompts.s_ids[b])
        end = int(run.prompts.end_pos[b])
        assert row[end + 1] == ioi.tokenizer().pad_token_id, "the end is the last real token"
    rows = torch.arange(len(run.prompts.tokens))
    s_positions = [[i for i, t in enumerate(r.tolist()) if t == s] for r, s in zip(run.prompts.tokens, run.prompts.s_ids)]
    s2 = torch.tensor([p[1] for p in s_positions])
    expected = cache["pattern", 1][rows, 0, run.prompts.end_pos, s2].mean()
    assert expected > 0.5, "L1H0 (an S-inhibition head) attends from the end to S2: a value far from 0 makes the check bite"
    assert ioi_heads.attention(run, "END", "S2")[1, 0] == pytest.approx(expected.item(), abs=1e-6)


def test_patched_queries_give_the_path_patching_metric(model, run):
    """Queries built by hand from the ABC senders' output reproduce path_patch's metric for the same senders and receivers."""
    senders = [(layer, head) for layer in (0, 1) for head in range(model.cfg.n_heads)]
    receivers = ioi.HEAD_CLASSES["name_movers"]
    by_hand = ioi_heads.name_mover_attention_with_patched_queries(model, run, senders, receivers)
    relative = ioi_heads.group_effect_through(model, run, senders, receivers, "q")
    assert by_hand["patched_logit_diff"] / run.clean_logit_diff - 1 == pytest.approx(relative, abs=1e-4), (
        "the hand-built queries differ from path patching's receiver inputs")
    assert abs(relative) > 0.1, "senders that change nothing make this comparison vacuous"


def test_name_copy_score_from_dense_weights(model):
    """Embedding -> ln1 (written out) -> W_V, W_O -> ln_final (written out) -> W_U: is each name in its own top 5?"""

    def layer_norm(x, w, b):
        x = x - x.mean(-1, keepdim=True)
        return x / (x.pow(2).mean(-1, keepdim=True) + model.cfg.layer_norm_eps).sqrt() * w + b

    ids = torch.tensor(ioi.tokenizer().convert_tokens_to_ids(ioi.ALL_NAMES))
    for layer, head in ((0, 2), (2, 3)):  # heads whose scores are neither 0 nor 1 on the shipped weights
        ln = model.blocks[layer].ln1
        with torch.no_grad():
            out = (layer_norm(model.W_E[ids], ln.w, ln.b) @ model.W_V[layer, head] + model.b_V[layer, head]) @ model.W_O[layer, head]
            logits = layer_norm(out, model.ln_final.w, model.ln_final.b) @ model.W_U + model.b_U
        dense = (logits.topk(5, dim=-1).indices == ids[:, None]).any(-1).float().mean().item()
        assert ioi_heads.name_copy_score(model, (layer, head)) == pytest.approx(dense, abs=1e-6)


@pytest.mark.parametrize("head,message", [((2, 8), "heads 0-7"), ((3, 0), "layers 0-2"), ("L2H0", "(layer, head_index)")])
def test_a_head_the_model_lacks_is_refused_by_name(model, run, head, message):
    for measure in (lambda: ioi_heads.name_copy_score(model, head), lambda: ioi_heads.in_context_copy_score(model, head, run.prompts)):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            measure()


def test_copy_scores_refuse_a_bad_top_and_prompts_without_their_io(model, run):
    for top in (0, model.cfg.d_vocab + 1):
        with pytest.raises(ValueError, match="top="):
            ioi_heads.name_copy_score(model, (2, 0), top=top)
        with pytest.raises(ValueError, match="top="):
            ioi_heads.in_context_copy_score(model, (2, 0), run.prompts, top=top)
    with pytest.raises(ValueError, match="\\(layer, head_index\\)"):
        ioi_heads.name_copy_score(model, (2.5, 0))
    no_io = run.prompts._replace(io_ids=torch.full_like(run.prompts.io_ids, ioi.tokenizer().pad_token_id + 1))
    with pytest.raises(ValueError, match="do not contain their IO"):
        ioi_heads.in_context_copy_score(model, (2, 0), no_io)
