"""Top-activating contexts and histograms from one pass over a store, checked against a brute-force sort of every activation."""

from __future__ import annotations

import math

import pytest
import torch
from feature_fixtures import (
    D_SAE,
    N_SEQUENCES,
    SEQ_LEN,
    as_rows,
    brute_force_top,
    corpus_tokens,
    dense_feature_acts,
    quantized_model,
    quantized_sae,
    same_rows,
)

from interp_transformer.sae.features import top_activating_contexts, top_activating_contexts_in_corpus
from interp_transformer.store import ActivationStore, cache_dataset

HOOK = "hook_embed"  # depends on the token only: a repeated token repeats the activation exactly (ties)


@pytest.fixture(scope="module")
def model():
    return quantized_model()


@pytest.fixture(scope="module")
def tokens():
    return corpus_tokens()


@pytest.fixture(scope="module")
def store_path(model, tokens, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "acts"
    cache_dataset(model, tokens, [HOOK, "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"], out, progress=False, sequences_per_shard=4)
    return out


@pytest.fixture(scope="module")
def sae(model):
    return quantized_sae(model.cfg.d_model, HOOK)


@pytest.fixture(scope="module")
def dense(store_path, sae):
    store = ActivationStore(store_path)
    return dense_feature_acts(sae, store.rows(0, len(store))[HOOK])


@pytest.mark.parametrize("batch_size", [1, 4, N_SEQUENCES])
def test_top_contexts_equal_a_brute_force_sort_with_ties_earliest_first(store_path, sae, tokens, dense, batch_size) -> None:
    k, window = 7, (3, 2)
    found = top_activating_contexts(store_path, sae, k=k, window=window, batch_size=batch_size, progress=False)
    expected = brute_force_top(tokens, dense, torch.arange(SEQ_LEN), range(D_SAE), k, *window)
    n_ties = sum(len(rows) - len({v for v, *_ in rows}) for rows in expected.values())
    assert n_ties > 10, "the fixture should produce tied activations, or tie-breaking is not exercised"
    for feature in range(D_SAE):
        assert same_rows(as_rows(found, feature), expected[feature]), (
            f"feature {feature} (batch_size={batch_size}): top contexts differ from sorting every activation by "
            "(value desc, sequence, position); a merge or tie-break is wrong"
        )
    assert found.n_tokens == N_SEQUENCES * SEQ_LEN and found.hook_name == HOOK


def test_contexts_list_cuts_windows_at_the_sequence_ends(store_path, sae, tokens, dense) -> None:
    found = top_activating_contexts(store_path, sae, k=40, window=(4, 4), progress=False)
    feature = int(dense.gt(0).sum((0, 1)).argmax())
    contexts = found.contexts(feature)
    assert [c.activation for c in contexts] == sorted((c.activation for c in contexts), reverse=True)
    for context in contexts:
        start = max(0, context.position - 4)
        assert context.tokens == tokens[context.sequence, start : context.position + 5].tolist()
        assert context.tokens[context.center] == int(tokens[context.sequence, context.position])
        assert context.activations[context.center] == context.activation == float(dense[context.sequence, context.position, feature])
    assert any(c.position < 4 for c in contexts) and any(c.position > SEQ_LEN - 5 for c in contexts), "edges not exercised"


def test_histogram_counts_and_statistics_equal_direct_binning(store_path, sae, dense) -> None:
    bins = 16
    results = [top_activating_contexts(store_path, sae, bins=bins, batch_size=b, progress=False) for b in (1, 6)]
    assert all(torch.equal(results[0].histogram, r.histogram) and torch.equal(results[0].bin_width, r.bin_width) for r in results)
    found = results[0]
    for feature in range(D_SAE):
        values = dense[..., feature].flatten()
        firing = values[values > 0]
        assert int(found.n_firing[feature]) == firing.numel()
        assert float(found.activation_sum[feature]) == pytest.approx(float(firing.sum()), rel=1e-12)
        width = float(found.bin_width[feature])
        if firing.numel() == 0:
            assert width == 0 and int(found.histogram[feature].sum()) == 0
            continue
        top = float(firing.max())
        assert top < width * bins <= 2 * top, f"feature {feature}: width {width} is not the smallest power of two covering {top}"
        assert math.log2(width).is_integer()
        reference = torch.bincount(torch.floor(firing / width).long(), minlength=bins)
        assert found.histogram[feature].tolist() == reference.tolist(), f"feature {feature}: merged bins differ from binning at the final width"
        assert found.bin_edges(feature)[-1] == width * bins
    assert torch.allclose(found.firing_fraction, dense.gt(0).double().mean((0, 1)))


def test_one_pass_reads_each_sequence_once_in_bounded_batches(store_path, sae, monkeypatch) -> None:
    reads: list[tuple[int, int]] = []
    original = ActivationStore.rows

    def recording_rows(self, start, stop):
        reads.append((start, stop))
        return original(self, start, stop)

    monkeypatch.setattr(ActivationStore, "rows", recording_rows)
    found = top_activating_contexts(store_path, sae, k=3, batch_size=4, features=[1, 5], progress=False)
    assert reads == [(0, 4), (4, 8), (8, 12), (12, 15)], f"expected one pass in batches of 4, read {reads}"
    assert found.values.shape == (2, 3) and found.window_tokens.shape == (2, 3, 12), "state is k x feature x window"


def test_a_subset_of_features_gives_the_same_rows_as_all(store_path, sae) -> None:
    everything = top_activating_contexts(store_path, sae, k=5, progress=False)
    some = top_activating_contexts(store_path, sae, k=5, features=torch.tensor([9, 2]), progress=False)
    assert some.features.tolist() == [9, 2]
    for feature in (9, 2):
        assert same_rows(as_rows(some, feature), as_rows(everything, feature))
    with pytest.raises(KeyError, match="feature 3 was not analysed"):
        some.contexts(3)


def test_a_feature_firing_less_than_k_times_is_padded(store_path, sae, dense) -> None:
    counts = dense.gt(0.5).sum((0, 1))
    feature = int(counts.argmin())
    k = int(counts[feature]) + 3
    found = top_activating_contexts(store_path, sae, k=k, min_activation=0.5, features=[feature], progress=False)
    n = int(counts[feature])
    assert len(found.contexts(feature)) == n == int(found.n_firing[0])
    assert torch.isnan(found.values[0, n:]).all() and (found.sequences[0, n:] == -1).all() and (found.window_tokens[0, n:] == -1).all()
    assert (found.values[0, :n] > 0.5).all(), "min_activation is a strict threshold"


def test_a_position_sliced_store_maps_stored_positions_to_tokens(model, tokens, sae, tmp_path) -> None:
    kept = [1, 4, 5, 10]
    out = tmp_path / "sliced"
    cache_dataset(model, tokens, [HOOK], out, pos_slice=kept, progress=False, sequences_per_shard=5)
    dense = dense_feature_acts(sae, ActivationStore(out).rows(0, N_SEQUENCES)[HOOK])
    found = top_activating_contexts(out, sae, k=6, window=(2, 2), batch_size=3, progress=False)
    expected = brute_force_top(tokens, dense, torch.tensor(kept), range(D_SAE), 6, 2, 2)
    for feature in range(D_SAE):
        assert same_rows(as_rows(found, feature), expected[feature]), f"feature {feature}: stored positions {kept} mapped wrongly"
    assert set(found.positions[found.positions >= 0].tolist()) <= set(kept)


@pytest.mark.parametrize("hook", [HOOK, "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"])
def test_running_the_model_on_tokens_equals_reading_the_store(model, tokens, store_path, hook) -> None:
    sae = quantized_sae(model.cfg.d_model, hook, seed=8)
    from_store = top_activating_contexts(store_path, sae, k=4, batch_size=5, progress=False)
    from_model = top_activating_contexts_in_corpus(model, tokens, sae, k=4, batch_size=2, progress=False)
    assert torch.equal(from_store.sequences, from_model.sequences) and torch.equal(from_store.positions, from_model.positions)
    assert torch.allclose(from_store.values, from_model.values, equal_nan=True, atol=1e-6)
    assert torch.equal(from_store.window_tokens, from_model.window_tokens)


def test_head_axis_hooks_are_flattened_as_saelens_does_for_hook_z(model, tokens, tmp_path) -> None:
    hook = "blocks.0.attn.hook_z"
    out = tmp_path / "z"
    cache_dataset(model, tokens, [hook], out, progress=False)
    stored = ActivationStore(out).rows(0, N_SEQUENCES)[hook]  # [batch pos head_index d_head]
    sae = quantized_sae(model.cfg.n_heads * model.cfg.d_head, hook, seed=9)
    found = top_activating_contexts(out, sae, k=3, window=(1, 1), progress=False)
    dense = dense_feature_acts(sae, stored.flatten(-2))
    expected = brute_force_top(tokens, dense, torch.arange(SEQ_LEN), range(D_SAE), 3, 1, 1)
    for feature in range(D_SAE):
        got = as_rows(found, feature)
        assert [r[1:4] for r in got] == [r[1:4] for r in expected[feature]]
        assert [r[0] for r in got] == pytest.approx([r[0] for r in expected[feature]], rel=1e-5)


def test_a_bfloat16_store_gives_the_same_contexts(model, tokens, store_path, sae, tmp_path) -> None:
    # The quantized embeddings are exact in bfloat16, so the half-size store must rank identically.
    out = tmp_path / "bf16"
    cache_dataset(model, tokens, [HOOK], out, dtype="bfloat16", progress=False)
    assert ActivationStore(out)[0][HOOK].dtype == torch.bfloat16
    half = top_activating_contexts(out, sae, k=5, batch_size=4, progress=False)
    full = top_activating_contexts(store_path, sae, k=5, batch_size=4, progress=False)
    for name in ("values", "sequences", "positions", "window_tokens", "histogram", "bin_width"):
        assert torch.equal(getattr(half, name).nan_to_num(-7), getattr(full, name).nan_to_num(-7)), f"{name} differs for a bfloat16 store"
