"""ActivationStore never returns wrong data: same-size corruption, swapped shards, inconsistent or damaged manifests."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch

from interp_transformer.store import ActivationStore, cache_dataset, verification

HOOKS = ["blocks.1.hook_resid_post"]


@pytest.fixture
def corpus(cfg) -> torch.Tensor:
    return torch.randint(0, cfg.d_vocab, (13, 6), generator=torch.Generator().manual_seed(4))


@pytest.fixture
def store_path(model, corpus, tmp_path) -> Path:
    # Shards of 4, 4, 4 and 1 sequences: shards 0..2 have the same size, so they can be swapped unnoticed by size.
    cache_dataset(model, corpus, HOOKS, tmp_path / "store", batch_size=2, sequences_per_shard=4, progress=False)
    return tmp_path / "store"


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _tensor_data_offset(path: Path) -> int:
    """Where a safetensors file's tensor bytes start: after the 8-byte header length and the JSON header."""
    (header_length,) = struct.unpack("<Q", path.read_bytes()[:8])
    return 8 + header_length


def _edit_manifest(store_path: Path, edit) -> Path:
    path = store_path / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    return path


def test_a_flipped_byte_in_tensor_data_is_caught_on_first_read_naming_the_file(model, corpus, store_path):
    shard = store_path / "shard-00001.safetensors"
    size = shard.stat().st_size
    _flip_byte(shard, _tensor_data_offset(shard) + 100)
    assert shard.stat().st_size == size, "the test must keep the size: a size check alone would catch a truncation"
    store = ActivationStore(store_path, model=model)
    _, expected = model.run_with_cache(corpus[:4], names_filter=HOOKS)
    torch.testing.assert_close(store.rows(0, 4)[HOOKS[0]], expected[HOOKS[0]], msg="an intact shard must still read")
    with pytest.raises(ValueError, match=r"shard-00001\.safetensors.*sha256"):
        store[5]
    with pytest.raises(ValueError, match=r"shard-00001\.safetensors.*sha256"):
        store.rows(2, 6)  # a read that spans into the damaged shard


def test_a_flipped_header_byte_is_reported_naming_the_file(store_path):
    shard = store_path / "shard-00002.safetensors"
    _flip_byte(shard, 10)  # inside the JSON header
    store = ActivationStore(store_path)
    with pytest.raises(ValueError, match=r"shard-00002\.safetensors.*(sha256|corrupted)"):
        store[9]


def test_swapped_shard_files_are_caught(store_path):
    first, second = store_path / "shard-00000.safetensors", store_path / "shard-00001.safetensors"
    a, b = first.read_bytes(), second.read_bytes()
    assert len(a) == len(b), "shards 0 and 1 should have the same size for this test to mean anything"
    first.write_bytes(b)
    second.write_bytes(a)
    with pytest.raises(ValueError, match=r"shard-00000\.safetensors"):
        ActivationStore(store_path)[0]


def test_swapped_shards_with_a_matching_manifest_are_caught_by_the_recorded_index(store_path):
    """Files and their hashes swapped together: only the index recorded inside each shard can tell."""
    first, second = store_path / "shard-00000.safetensors", store_path / "shard-00001.safetensors"
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)

    def swap_hashes(manifest):
        shards = manifest["shards"]
        shards[0]["sha256"], shards[1]["sha256"] = shards[1]["sha256"], shards[0]["sha256"]

    _edit_manifest(store_path, swap_hashes)
    store = ActivationStore(store_path)
    with pytest.raises(ValueError, match=r"shard-00000\.safetensors holds shard 1.*shard 0"):
        store[0]
    with pytest.raises(ValueError, match=r"shard-00001\.safetensors holds shard 0.*shard 1"):
        store[4]


def test_each_shard_is_hashed_once_per_process_and_only_when_read(store_path, monkeypatch):
    hashed = []
    real = verification.sha256_of
    monkeypatch.setattr(verification, "sha256_of", lambda path: (hashed.append(Path(path).name), real(path))[1])
    store = ActivationStore(store_path)
    assert hashed == [], "opening a store must not hash anything (that would read the whole store)"
    store[0]
    assert hashed == ["shard-00000.safetensors"], f"reading sequence 0 should hash shard 0 only, hashed {hashed}"
    for _ in range(2):
        list(store.iter_batches(3))
    assert sorted(hashed) == [f"shard-0000{k}.safetensors" for k in range(4)], f"each shard should be hashed exactly once: {hashed}"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(n_sequences=m["n_sequences"] + 3), r"n_sequences 16.*shards hold 13"),
        (lambda m: m.update(n_sequences=m["n_sequences"] - 3), r"n_sequences 10.*shards hold 13"),
        (lambda m: m["shards"][2].update(first_sequence=9), r"shard-00002.*first_sequence 9.*8"),
        (lambda m: m["shards"][1].update(n_sequences=0), r"shard-00001.*n_sequences 0"),
        (lambda m: m["shards"][3].update(file="shard-00000.safetensors"), r"shard 3.*shard-00000\.safetensors.*shard-00003\.safetensors"),
        (lambda m: m.update(n_sequences="13"), r"n_sequences"),
        (lambda m: m["shards"][0].pop("sha256"), r"sha256"),
    ],
)
def test_an_inconsistent_manifest_is_refused_on_open(store_path, edit, message):
    # Before this check, reading past the real data with a too-large n_sequences looped forever, growing memory.
    manifest_path = _edit_manifest(store_path, edit)
    with pytest.raises(ValueError, match=message) as error:
        ActivationStore(store_path)
    assert str(manifest_path) in str(error.value), f"the error should name the manifest file: {error.value}"


def test_a_shard_whose_length_disagrees_with_a_self_consistent_manifest_is_caught(store_path):
    def claim_five_in_shard_0(manifest):
        manifest["shards"][0].update(n_sequences=5, n_tokens=30)
        for shard in manifest["shards"][1:]:
            shard["first_sequence"] += 1
        manifest["n_sequences"] += 1
        manifest["n_tokens"] += 6

    _edit_manifest(store_path, claim_five_in_shard_0)
    store = ActivationStore(store_path)
    with pytest.raises(ValueError, match=r"shard-00000\.safetensors holds 4 sequences.*manifest.*5"):
        store[0]


def test_a_truncated_manifest_names_the_file(store_path):
    path = store_path / "manifest.json"
    path.write_text(path.read_text()[:200])
    with pytest.raises(ValueError, match=r"manifest\.json is not valid JSON.*truncated") as error:
        ActivationStore(store_path)
    assert str(path) in str(error.value)


def test_resume_refuses_a_finished_shard_that_was_corrupted(model, corpus, store_path):
    shard = store_path / "shard-00001.safetensors"
    _flip_byte(shard, _tensor_data_offset(shard) + 40)
    with pytest.raises(ValueError, match=r"shard-00001\.safetensors.*sha256.*delete it"):
        cache_dataset(model, corpus, HOOKS, store_path, batch_size=2, sequences_per_shard=4, resume=True, progress=False)


def test_a_shard_from_another_store_is_caught_even_with_its_hash_copied(model, corpus, store_path, tmp_path):
    other_model = type(model)(model.cfg.replace(seed=1)).eval()
    cache_dataset(other_model, corpus, HOOKS, tmp_path / "other", batch_size=2, sequences_per_shard=4, progress=False)
    foreign = (tmp_path / "other" / "shard-00001.safetensors").read_bytes()
    (store_path / "shard-00001.safetensors").write_bytes(foreign)
    other_record = json.loads((tmp_path / "other" / "manifest.json").read_text())["shards"][1]
    _edit_manifest(store_path, lambda m: m["shards"][1].update(sha256=other_record["sha256"], bytes=other_record["bytes"]))
    with pytest.raises(ValueError, match=r"shard-00001\.safetensors was written with settings .* another store"):
        ActivationStore(store_path)[4]
