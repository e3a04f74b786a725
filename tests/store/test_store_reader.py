"""ActivationStore: lazy reads across shards, Dataset/DataLoader use, integrity checks, config checks."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from conftest import tiny_config
from torch.utils.data import DataLoader

from interp_transformer import HookedTransformer
from interp_transformer.store import ActivationStore, cache_dataset

HOOKS = ["blocks.1.hook_resid_post", "blocks.0.mlp.hook_post"]


@pytest.fixture
def corpus(cfg) -> torch.Tensor:
    return torch.randint(0, cfg.d_vocab, (13, 6), generator=torch.Generator().manual_seed(4))


@pytest.fixture
def store_path(model, corpus, tmp_path):
    cache_dataset(model, corpus, HOOKS, tmp_path / "store", batch_size=2, sequences_per_shard=4, progress=False)
    return tmp_path / "store"


def test_rows_and_batches_span_shards(model, corpus, store_path):
    store = ActivationStore(store_path, model=model)
    _, expected = model.run_with_cache(corpus, names_filter=HOOKS)
    rows = store.rows(3, 10)  # shards 0, 1 and 2
    assert torch.equal(rows["tokens"], corpus[3:10])
    torch.testing.assert_close(rows["blocks.1.hook_resid_post"], expected["blocks.1.hook_resid_post"][3:10], rtol=1e-5, atol=1e-6)
    batches = list(store.iter_batches(5))
    assert [b["tokens"].shape[0] for b in batches] == [5, 5, 3]
    assert torch.equal(torch.cat([b["tokens"] for b in batches]), corpus)
    assert [b["tokens"].shape[0] for b in store.iter_batches(5, drop_last=True)] == [5, 5]


def test_works_as_a_torch_dataset_including_worker_pickling(store_path, corpus):
    store = ActivationStore(store_path, hooks=["blocks.0.mlp.hook_post"])
    store[0]  # opens a memory map
    clone = pickle.loads(pickle.dumps(store))
    assert clone._handles == {} and torch.equal(clone[12]["tokens"], corpus[12])
    batch = next(iter(DataLoader(store, batch_size=4)))
    assert set(batch) == {"blocks.0.mlp.hook_post", "tokens"}
    assert batch["blocks.0.mlp.hook_post"].shape == (4, 6, 64) and torch.equal(batch["tokens"], corpus[:4])


def test_index_errors(store_path):
    store = ActivationStore(store_path)
    with pytest.raises(IndexError, match="out of range for a store of 13"):
        store[13]
    with pytest.raises(IndexError, match=r"rows\(5, 20\)"):
        store.rows(5, 20)
    with pytest.raises(TypeError, match="use rows"):
        store[1:3]
    with pytest.raises(KeyError, match="not in the store"):
        ActivationStore(store_path, hooks=["blocks.0.attn.hook_z"])


def test_refuses_a_different_model_config(store_path):
    with pytest.raises(ValueError, match="different config.*n_layers: saved 2, model 3"):
        ActivationStore(store_path, model=HookedTransformer(tiny_config(n_layers=3)))


def test_detects_missing_truncated_and_corrupted_shards(store_path):
    shard = store_path / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    store = ActivationStore(store_path)  # same size: only a hash notices
    with pytest.raises(ValueError, match="shard-00001.safetensors does not match the sha256"):
        store.verify()
    shard.write_bytes(bytes(data[:-8]))
    with pytest.raises(ValueError, match="truncated"):
        ActivationStore(store_path)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match="missing shard-00001.safetensors"):
        ActivationStore(store_path)


def test_not_a_store(tmp_path, store_path):
    with pytest.raises(FileNotFoundError, match="no activation store"):
        ActivationStore(tmp_path / "nothing")
    manifest = json.loads((store_path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (store_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="not an activation store this version reads"):
        ActivationStore(store_path)
