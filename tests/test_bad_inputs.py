"""A catalogue of bad inputs a researcher could plausibly give, each with the error it must raise.

Every entry must fail with a ValueError, KeyError or TypeError whose message names the problem
(the fragment below): never a silent answer, never a bare torch/Python error from deep inside
(IndexError, RuntimeError, OverflowError, AttributeError). Entries marked "was silent" returned
a wrong or meaningless answer before they were caught here; "was bare" leaked a torch error.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch

from conftest import build_bpe_tokenizer, tiny_config
from interp_transformer import HookedTransformer, TransformerConfig, get_act_name
from interp_transformer.patching.metrics import AnswerLogProb, AnswerProb, LogitDiff, NextTokenLoss


@pytest.fixture(scope="module")
def env() -> SimpleNamespace:
    model = HookedTransformer(tiny_config()).eval()  # d_vocab=300, n_ctx=48, 2 layers, d_model=32
    lm = HookedTransformer(tiny_config(), tokenizer=build_bpe_tokenizer()).eval()
    tokens = torch.randint(0, 300, (2, 10), generator=torch.Generator().manual_seed(0))
    logits = torch.randn(2, 10, 300, generator=torch.Generator().manual_seed(1))
    return SimpleNamespace(model=model, lm=lm, tokens=tokens, logits=logits, residual=torch.randn(2, 10, 32))


def _observe(activation, hook):
    return None


def _to_float64(activation, hook):
    return activation.double()


def _with_tokens(env, tokens_fn, **kwargs):
    return env.model(tokens_fn(env.tokens), **kwargs)


# (id, call, exception type, message fragment). Keep each call one line: the table is the documentation.
CATALOGUE = [
    # ------------------------------------------------------------ model(...): tokens
    ("float_tokens", lambda e: e.model(e.tokens.float()), TypeError, "tokens must be an integer tensor"),
    ("bool_tokens", lambda e: e.model(e.tokens.bool()), TypeError, "tokens must be an integer tensor"),
    ("1d_tokens", lambda e: e.model(e.tokens[0]), ValueError, "add a batch axis with tokens.unsqueeze(0)"),
    ("3d_tokens", lambda e: e.model(e.tokens[None]), ValueError, "tokens must have shape [batch pos], got (1, 2, 10)"),
    ("negative_token_id", lambda e: e.model(e.tokens - 1000), ValueError, "ids must be in [0, d_vocab=300)"),
    ("token_id_ge_d_vocab", lambda e: e.model(e.tokens + 300), ValueError, "ids must be in [0, d_vocab=300)"),
    ("longer_than_n_ctx", lambda e: e.model(torch.zeros(1, 49, dtype=torch.long)), ValueError, "longer than the model's context n_ctx=48"),
    ("zero_positions", lambda e: e.model(torch.zeros(2, 0, dtype=torch.long)), ValueError, "at least one prompt and one position"),  # was silent
    ("zero_prompts", lambda e: e.model(torch.zeros(0, 5, dtype=torch.long)), ValueError, "at least one prompt and one position"),  # was silent
    ("list_of_ints", lambda e: e.model(e.tokens.tolist()), TypeError, "input must be a string, a list of strings or a [batch pos] tensor"),
    ("numpy_tokens", lambda e: e.model(e.tokens.numpy()), TypeError, "got ndarray"),
    ("empty_list", lambda e: e.model([]), ValueError, "the input list is empty"),
    ("empty_list_with_tokenizer", lambda e: e.lm([]), ValueError, "the input list is empty"),
    ("empty_string_without_bos", lambda e: e.lm("", prepend_bos=False), ValueError, "produced no tokens"),
    ("string_without_tokenizer", lambda e: e.model("hello"), ValueError, "this model has no tokenizer"),
    ("prepend_bos_string", lambda e: e.lm("hello", prepend_bos="no"), TypeError, "prepend_bos must be True, False or None"),  # was silent
    ("return_type_typo", lambda e: e.model(e.tokens, return_type="logit"), ValueError, "return_type must be one of"),
    ("padding_side_typo", lambda e: e.lm(["a", "bb"], padding_side="lft"), ValueError, "padding_side must be one of ('left', 'right')"),
    ("loss_per_token_string", lambda e: e.model(e.tokens, return_type="loss", loss_per_token="yes"), TypeError, "loss_per_token must be True or False"),  # was silent
    ("loss_of_one_token", lambda e: e.model(e.tokens[:, :1], return_type="loss"), ValueError, "at least 2 positions"),  # was silent (nan)
    # ------------------------------------------------------------ model(...): attention_mask
    ("mask_wrong_shape", lambda e: e.model(e.tokens, attention_mask=torch.ones(2, 9, dtype=torch.long)), ValueError, "attention_mask must have the tokens' shape (2, 10)"),
    ("mask_1d", lambda e: e.model(e.tokens, attention_mask=torch.ones(10, dtype=torch.long)), ValueError, "attention_mask must have the tokens' shape"),
    ("mask_float", lambda e: e.model(e.tokens, attention_mask=torch.ones(2, 10)), ValueError, "attention_mask must hold integers 0"),
    ("mask_all_padding", lambda e: e.model(e.tokens, attention_mask=torch.zeros(2, 10, dtype=torch.long)), ValueError, "a row with no real tokens"),
    ("mask_with_strings", lambda e: e.lm("hi", attention_mask=torch.ones(1, 2, dtype=torch.long)), ValueError, "attention_mask is built from the strings"),
    # ------------------------------------------------------------ model(...): partial runs
    ("start_after_stop", lambda e: e.model(e.residual, start_at_layer=2, stop_at_layer=1), ValueError, "start_at_layer=2 comes after stop_at_layer=1"),  # was silent
    ("start_after_negative_stop", lambda e: e.model(e.residual, start_at_layer=1, stop_at_layer=-2), ValueError, "comes after stop_at_layer=-2"),  # was silent
    ("stop_at_layer_out_of_range", lambda e: e.model(e.tokens, stop_at_layer=3), ValueError, "stop_at_layer=3 is out of range for a model with 2 layers"),
    ("start_at_layer_out_of_range", lambda e: e.model(e.residual, start_at_layer=-3), ValueError, "start_at_layer=-3 is out of range"),
    ("stop_at_layer_bool", lambda e: e.model(e.tokens, stop_at_layer=True), TypeError, "stop_at_layer must be an int or None, got True"),  # was silent
    ("start_at_layer_float", lambda e: e.model(e.residual, start_at_layer=1.0), TypeError, "start_at_layer must be an int or None, got 1.0"),
    ("residual_wrong_d_model", lambda e: e.model(torch.randn(2, 10, 16), start_at_layer=1), ValueError, "residual stream [batch pos d_model=32], got (2, 10, 16)"),
    ("tokens_as_residual", lambda e: e.model(e.tokens, start_at_layer=1), ValueError, "input must be a residual stream"),
    ("residual_float64", lambda e: e.model(e.residual.double(), start_at_layer=0), TypeError, "dtype torch.float64, the model runs in torch.float32"),  # was bare
    ("residual_int", lambda e: e.model(e.residual.long(), start_at_layer=0), TypeError, "cast it with .to(torch.float32)"),  # was bare
    ("loss_from_residual_without_tokens", lambda e: e.model(e.residual, start_at_layer=1, return_type="loss"), ValueError, "pass tokens=..."),
    # ------------------------------------------------------------ hooks
    ("hook_not_callable", lambda e: e.model.run_with_hooks(e.tokens, fwd_hooks=[("hook_embed", 5)]), TypeError, "hook must be callable, got int"),
    ("hook_name_typo", lambda e: e.model.run_with_hooks(e.tokens, fwd_hooks=[("blocks.0.hook_resid_pree", _observe)]), KeyError, "closest valid names: ['blocks.0.hook_resid_pre'"),
    ("hook_name_shorthand", lambda e: e.model.run_with_hooks(e.tokens, fwd_hooks=[("resid_pre", _observe)]), KeyError, "closest valid names: ['blocks.0.hook_resid_pre', 'blocks.1.hook_resid_pre']"),
    ("hook_predicate_matches_nothing", lambda e: e.model.run_with_hooks(e.tokens, fwd_hooks=[(lambda n: n.endswith("patern"), _observe)]), ValueError, "matches none of the model's"),  # was silent
    ("hook_pair_not_in_a_list", lambda e: e.model.run_with_hooks(e.tokens, fwd_hooks=("hook_embed", _observe)), TypeError, "wrap the single pair in a list"),
    ("hook_list_of_functions", lambda e: e.model.run_with_hooks(e.tokens, fwd_hooks=[_observe]), TypeError, "must be a (name, hook) pair"),
    ("hook_returns_other_dtype", lambda e: e.model.run_with_hooks(e.tokens, fwd_hooks=[("blocks.0.hook_resid_pre", _to_float64)]), TypeError, "hook _to_float64 on blocks.0.hook_resid_pre returned dtype torch.float64, but the activation has dtype torch.float32"),  # was bare
    ("hook_returns_other_shape", lambda e: e.model.run_with_hooks(e.tokens, fwd_hooks=[("hook_embed", lambda a, hook: a[:, :1])]), ValueError, "returned shape (2, 1, 32)"),
    ("hook_returns_a_list", lambda e: e.model.run_with_hooks(e.tokens, fwd_hooks=[("hook_embed", lambda a, hook: a.tolist())]), TypeError, "returned list"),
    ("hook_returns_other_device", lambda e: e.model.run_with_hooks(e.tokens, fwd_hooks=[("hook_embed", lambda a, hook: a.to("meta"))]), ValueError, "returned a tensor on meta"),  # was bare
    ("hook_direction_typo", lambda e: e.model.add_hook("hook_embed", _observe, dir="forward"), ValueError, "hook direction must be one of ('fwd', 'bwd')"),
    # ------------------------------------------------------------ run_with_cache
    ("names_filter_int", lambda e: e.model.run_with_cache(e.tokens, names_filter=5), TypeError, "a hook name filter must be a name, a list of names or a predicate"),
    ("names_filter_unknown_string", lambda e: e.model.run_with_cache(e.tokens, names_filter="blocks.0.attn.hook_patern"), KeyError, "closest valid names"),
    ("names_filter_predicate_matches_nothing", lambda e: e.model.run_with_cache(e.tokens, names_filter=lambda n: False), ValueError, "matches none of the model's"),
    ("pos_slice_out_of_range", lambda e: e.model.run_with_cache(e.tokens, pos_slice=50), ValueError, "pos_slice=50 does not fit hook_embed, which has 10 positions"),  # was bare IndexError
    ("pos_slice_string", lambda e: e.model.run_with_cache(e.tokens, pos_slice="last"), TypeError, "a slice must be None, an int"),
    ("remove_batch_dim_on_a_batch", lambda e: e.model.run_with_cache(e.tokens, remove_batch_dim=True), ValueError, "needs a batch of one"),
    ("cache_device_typo", lambda e: e.model.run_with_cache(e.tokens, device="gpu"), ValueError, "device='gpu' is not a torch device"),  # was bare
    # ------------------------------------------------------------ names
    ("get_act_name_typo", lambda e: get_act_name("patern", 0), ValueError, "did you mean ['pattern'"),  # was silent
    ("get_act_name_layer_type_typo", lambda e: get_act_name("scale", 0, "ln3"), ValueError, "lives in layer_type 'ln1' or 'ln2'"),  # was silent
    ("get_act_name_block_kind_without_layer", lambda e: get_act_name("resid_pre"), ValueError, "give a layer"),  # was silent
    ("get_act_name_negative_layer", lambda e: get_act_name("resid_pre", -1), ValueError, "layer must be a non-negative int, got -1"),  # was silent
    # ------------------------------------------------------------ tokenization
    ("to_tokens_int", lambda e: e.lm.to_tokens(5), TypeError, "input must be a string or a list of strings, got int"),
    ("to_tokens_empty_list", lambda e: e.lm.to_tokens([]), ValueError, "the list of strings is empty"),
    ("to_tokens_mixed_list", lambda e: e.lm.to_tokens(["a", 1]), TypeError, "the list holds ['int']"),
    ("to_single_token_multi_token", lambda e: e.lm.to_single_token("hello world there"), ValueError, "is 10 tokens, not one"),
    ("to_single_token_int", lambda e: e.lm.to_single_token(5), TypeError, "to_single_token takes a string, got int"),
    ("get_token_position_absent", lambda e: e.lm.get_token_position(5, "hello"), ValueError, "token 5 does not occur in the input"),
    ("get_token_position_batch_of_strings", lambda e: e.lm.get_token_position(0, ["hello", "hi"]), TypeError, "looks in one prompt"),  # was bare
    ("get_token_position_mode_typo", lambda e: e.lm.get_token_position(0, "hello", mode="middle"), ValueError, "mode must be 'first' or 'last'"),
    ("to_str_tokens_out_of_vocab", lambda e: e.lm.to_str_tokens(torch.tensor([1000])), ValueError, "token id 1000 is not in the tokenizer's vocabulary [0, 300)"),  # was silent ("")
    ("to_str_tokens_negative", lambda e: e.lm.to_str_tokens(torch.tensor([-1])), ValueError, "token id -1 is not in the tokenizer's vocabulary"),  # was bare OverflowError
    ("to_string_out_of_vocab", lambda e: e.lm.to_string(torch.tensor([7, 1000])), ValueError, "token id 1000 is not in the tokenizer's vocabulary"),  # was silent
    ("to_str_tokens_3d", lambda e: e.lm.to_str_tokens(torch.zeros(1, 2, 3, dtype=torch.long)), ValueError, "tokens must be [pos] or [batch pos]"),
    # ------------------------------------------------------------ generate
    ("generate_negative_max_new_tokens", lambda e: e.model.generate(e.tokens, max_new_tokens=-1, stop_at_eos=False), ValueError, "max_new_tokens must be a non-negative int, got -1"),
    ("generate_bool_max_new_tokens", lambda e: e.model.generate(e.tokens, max_new_tokens=True, stop_at_eos=False), ValueError, "max_new_tokens must be a non-negative int, got True"),  # was silent
    ("generate_negative_temperature", lambda e: e.model.generate(e.tokens, temperature=-1.0, stop_at_eos=False), ValueError, "temperature must be a finite number >= 0"),
    ("generate_nan_temperature", lambda e: e.model.generate(e.tokens, temperature=float("nan"), stop_at_eos=False), ValueError, "temperature must be a finite number >= 0 (0 is greedy), got nan"),  # was bare
    ("generate_top_p_above_1", lambda e: e.model.generate(e.tokens, top_p=1.5, stop_at_eos=False), ValueError, "top_p must be in (0, 1] or None, got 1.5"),
    ("generate_top_k_zero", lambda e: e.model.generate(e.tokens, top_k=0, stop_at_eos=False), ValueError, "top_k must be a positive int or None, got 0"),
    ("generate_eos_outside_vocab", lambda e: e.model.generate(e.tokens, eos_token_id=999), ValueError, "eos_token_id must be a token id in [0, d_vocab=300), got 999"),  # was silent
    ("generate_past_n_ctx", lambda e: e.model.generate(e.tokens, max_new_tokens=40, stop_at_eos=False), ValueError, "exceeds the model's context n_ctx=48"),
    ("generate_empty_list", lambda e: e.lm.generate([], max_new_tokens=1), ValueError, "the list of strings is empty"),
    # ------------------------------------------------------------ metrics
    ("logit_diff_answer_ge_d_vocab", lambda e: LogitDiff(300, 1)(e.logits), ValueError, "answer_tokens holds token id 300, outside the vocabulary: ids must be in [0, d_vocab=300)"),  # was bare
    ("logit_diff_wrong_ge_d_vocab_known_vocab", lambda e: LogitDiff(1, 999, d_vocab=300), ValueError, "wrong_tokens holds token id 999"),
    ("logit_diff_negative_id", lambda e: LogitDiff(-1, 1), ValueError, "answer_tokens holds token id -1"),  # was silent (last token)
    ("logit_diff_float_ids", lambda e: LogitDiff(torch.tensor([1.0, 2.0]), 1), TypeError, "answer_tokens must be integer ids"),
    ("answer_log_prob_ge_d_vocab", lambda e: AnswerLogProb(999)(e.logits), ValueError, "answer_tokens holds token id 999"),  # was bare
    ("answer_prob_negative_id", lambda e: AnswerProb(-5), ValueError, "answer_tokens holds token id -5"),  # was silent
    ("metric_position_out_of_range", lambda e: LogitDiff(1, 2, positions=10)(e.logits), ValueError, "answer position 10 is out of range for logits with 10 positions"),  # was bare
    ("metric_negative_position_out_of_range", lambda e: AnswerLogProb(1, positions=torch.tensor([0, -11]))(e.logits), ValueError, "answer position -11 is out of range"),  # was bare
    ("next_token_loss_ge_d_vocab", lambda e: NextTokenLoss(torch.full((2, 10), 300))(e.logits), ValueError, "token id 300 is out of range; ids must be in [0, d_vocab=300)"),  # was bare
    ("next_token_loss_negative", lambda e: NextTokenLoss(torch.full((2, 10), -1)), ValueError, "tokens holds token id -1"),  # was bare
    ("next_token_loss_float", lambda e: NextTokenLoss(torch.zeros(2, 10)), TypeError, "tokens must be integer ids"),  # was bare
    # ------------------------------------------------------------ config
    ("config_d_model_not_n_heads_times_d_head", lambda e: TransformerConfig(d_model=30, n_heads=4, d_head=8), ValueError, "d_model (30) != n_heads * d_head (4 * 8 = 32)"),
    ("config_bool_n_layers", lambda e: TransformerConfig(n_layers=True), TypeError, "n_layers must be an int, got True (bool)"),  # was silent
    ("config_replace_bool_n_layers", lambda e: tiny_config().replace(n_layers=True), TypeError, "n_layers must be an int, got True (bool)"),  # was silent
    ("config_string_bool", lambda e: TransformerConfig(attn_only="no"), TypeError, "attn_only must be True or False"),  # was silent
    ("config_nan_eps", lambda e: TransformerConfig(layer_norm_eps=float("nan")), ValueError, "layer_norm_eps must be positive, got nan"),  # was silent
    ("config_zero_attn_scale", lambda e: TransformerConfig(attn_scale=0.0), ValueError, "attn_scale must be positive"),  # was silent
    ("config_replace_field_typo", lambda e: tiny_config().replace(n_layer=3), TypeError, "unknown TransformerConfig fields ['n_layer']"),
    ("config_act_fn_typo", lambda e: TransformerConfig(act_fn="gelu_neww"), ValueError, "act_fn 'gelu_neww' is not supported"),
]


@pytest.mark.parametrize("call, error, fragment", [entry[1:] for entry in CATALOGUE], ids=[entry[0] for entry in CATALOGUE])
def test_bad_input_raises_a_clear_error(env, call, error, fragment):
    with pytest.raises(error, match=re.escape(fragment)):
        call(env)


def test_catalogue_ids_are_unique_and_it_is_large():
    ids = [entry[0] for entry in CATALOGUE]
    assert len(ids) == len(set(ids)), "two catalogue entries share an id"
    assert len(ids) >= 67, "the acceptance check runs 67 bad inputs; keep at least as many here"
