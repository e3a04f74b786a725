"""cache_dataset: contents against run_with_cache, corpora, bounded memory, crash safety, resume, settings checks, bad input."""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import pytest
import torch
from conftest import CORPUS

from interp_transformer import HookedTransformer
from interp_transformer.store import (
    ActivationStore,
    StoreWriteError,
    cache_dataset,
    layout,
    writer,
)

HOOKS = ["blocks.0.hook_resid_post", "blocks.1.attn.hook_pattern", "blocks.0.attn.hook_q"]


@pytest.fixture
def corpus(cfg) -> torch.Tensor:
    return torch.randint(0, cfg.d_vocab, (21, 10), generator=torch.Generator().manual_seed(3))


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_store_holds_what_run_with_cache_gives_for_each_sequence(model, corpus, tmp_path):
    manifest_path = cache_dataset(model, corpus, HOOKS, tmp_path / "out", batch_size=4, sequences_per_shard=8, progress=False)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["n_sequences"] == 21 and manifest["n_tokens"] == 210
    assert [s["n_sequences"] for s in manifest["shards"]] == [8, 8, 5]
    for shard in manifest["shards"]:
        data = (tmp_path / "out" / shard["file"]).read_bytes()
        assert shard["sha256"] == hashlib.sha256(data).hexdigest() and shard["bytes"] == len(data)
    store = ActivationStore(tmp_path / "out", model=model)
    assert len(store) == 21
    _, expected = model.run_with_cache(corpus, names_filter=HOOKS)
    for index in (0, 7, 8, 20, -1):
        item = store[index]
        assert torch.equal(item["tokens"], corpus[index])
        for name in HOOKS:
            torch.testing.assert_close(item[name], expected[name][index], rtol=1e-5, atol=1e-6, msg=f"sequence {index}, {name}")


def test_dtype_and_pos_slice_are_applied_before_storing(model, corpus, tmp_path):
    cache_dataset(model, corpus, HOOKS, tmp_path, batch_size=8, dtype="float16", pos_slice=-1, progress=False)
    store = ActivationStore(tmp_path)
    _, expected = model.run_with_cache(corpus[:3], names_filter=HOOKS, pos_slice=-1)
    rows = store.rows(0, 3)
    assert rows["blocks.0.attn.hook_q"].shape == (3, 4, 8) and rows["blocks.1.attn.hook_pattern"].shape == (3, 4, 10)
    for name in HOOKS:
        assert rows[name].dtype == torch.float16
        torch.testing.assert_close(rows[name].float(), expected[name], rtol=2e-3, atol=2e-3, msg=name)
    assert rows["tokens"].shape == (3, 10), "tokens are stored whole, whatever the position slice"


def test_text_corpus_is_tokenized_joined_with_eos_and_cut_with_bos(cfg, bpe_tokenizer, tmp_path):
    model = HookedTransformer(cfg, tokenizer=bpe_tokenizer).eval()
    cache_dataset(model, CORPUS, "hook_embed", tmp_path, seq_len=16, progress=False)
    store = ActivationStore(tmp_path)
    # Independent: tokenize each document, join with EOS, cut 15-token bodies, prepend BOS.
    stream = []
    for document in CORPUS:
        stream += bpe_tokenizer(document, add_special_tokens=False)["input_ids"] + [bpe_tokenizer.eos_token_id]
    bodies = [stream[i : i + 15] for i in range(0, len(stream) - 14, 15)]
    expected = torch.tensor([[bpe_tokenizer.bos_token_id] + body for body in bodies])
    assert torch.equal(store.rows(0, len(store))["tokens"], expected)
    torch.testing.assert_close(store[2]["hook_embed"], model.W_E[expected[2]])


class _FakeDataset:
    """The part of a datasets.Dataset the store uses: column_names, len, iteration over row dicts."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows
        self.column_names = list(rows[0])

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)


class _EmptyDataset(_FakeDataset):
    def __len__(self) -> int:
        return 0

    def __iter__(self):
        return iter([])


def test_dataset_corpora(cfg, bpe_tokenizer, corpus, tmp_path):
    model = HookedTransformer(cfg, tokenizer=bpe_tokenizer).eval()
    cache_dataset(model, _FakeDataset([{"input_ids": row.tolist()} for row in corpus]), "hook_embed", tmp_path / "ids", progress=False)
    assert torch.equal(ActivationStore(tmp_path / "ids").rows(0, 21)["tokens"], corpus)
    cache_dataset(model, _FakeDataset([{"text": t} for t in CORPUS]), "hook_embed", tmp_path / "text", seq_len=16, progress=False)
    cache_dataset(model, CORPUS, "hook_embed", tmp_path / "list", seq_len=16, progress=False)
    assert torch.equal(ActivationStore(tmp_path / "text").rows(0, 5)["tokens"], ActivationStore(tmp_path / "list").rows(0, 5)["tokens"])
    with pytest.raises(ValueError, match="row 1 has \\(3,\\) tokens"):
        cache_dataset(model, _FakeDataset([{"input_ids": [1, 2, 3, 4]}, {"input_ids": [1, 2, 3]}]), "hook_embed", tmp_path / "bad", progress=False)
    with pytest.raises(ValueError, match="no complete sequence of seq_len=40"):
        cache_dataset(model, ["a short text"], "hook_embed", tmp_path / "short", seq_len=40, progress=False)
    assert not (tmp_path / "short").exists(), "a run that cached nothing should leave nothing behind, not even the folder it created"
    with pytest.raises(ValueError, match="the dataset is empty"):
        cache_dataset(model, _EmptyDataset([{"input_ids": [1]}]), "hook_embed", tmp_path / "empty", progress=False)
    with pytest.raises(ValueError, match="needs a 'text' column"):
        cache_dataset(model, _FakeDataset([{"label": 1}]), "hook_embed", tmp_path / "bad2", progress=False)


def test_shards_are_written_as_the_corpus_streams_in(model, tmp_path, monkeypatch):
    consumed = []

    def sequences():
        for i in range(40):
            consumed.append(i)
            yield {"input_ids": [i % 300] * 6}

    class Streaming(_FakeDataset):
        def __iter__(self):
            return sequences()

    seen_at_write = []
    real_write = layout.write_shard
    monkeypatch.setattr(layout, "write_shard", lambda *args, **kwargs: (seen_at_write.append(len(consumed)), real_write(*args, **kwargs))[1])
    cache_dataset(model, Streaming([{"input_ids": [0] * 6}]), HOOKS, tmp_path, batch_size=2, sequences_per_shard=4, progress=False)
    # Shard k is written once sequence 4k+3 is read (plus the one the dataset peeks at first), never after the whole corpus.
    assert seen_at_write[:3] == [4 + 1, 8 + 1, 12 + 1], f"sequences read when each shard was written: {seen_at_write}"


def test_progress_bar_counts_tokens(model, corpus, tmp_path, capsys):
    cache_dataset(model, corpus, "hook_embed", tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "210/210" in err and "tok/s" in err, f"progress output was {err!r}"


# ------------------------------------------------------------ crash and resume
class _Interrupted(Exception):
    pass


def test_resume_after_a_crash_is_byte_identical_to_an_uninterrupted_run(model, corpus, tmp_path, monkeypatch):
    settings = dict(batch_size=4, sequences_per_shard=4, progress=False)
    cache_dataset(model, corpus, HOOKS, tmp_path / "clean", **settings)

    real_save = layout.save_file
    calls = []

    def crash_on_third_shard(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 3:
            Path(filename).write_bytes(b"half a shard")  # the process dies mid-write
            raise _Interrupted()
        real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(layout, "save_file", crash_on_third_shard)
    with pytest.raises(_Interrupted):
        cache_dataset(model, corpus, HOOKS, tmp_path / "resumed", **settings)
    monkeypatch.setattr(layout, "save_file", real_save)
    written = sorted(p.name for p in (tmp_path / "resumed").iterdir())
    assert written == ["settings.json", "shard-00000.json", "shard-00000.safetensors", "shard-00001.json", "shard-00001.safetensors"], (
        f"after the crash the folder holds {written}: only complete shards may appear, and no manifest"
    )
    (tmp_path / "resumed" / ".shard-00002.safetensors.abc.tmp").write_bytes(b"left by a killed process")
    with pytest.raises(FileNotFoundError, match="has not finished.*resume"):
        ActivationStore(tmp_path / "resumed")
    with pytest.raises(FileExistsError, match="resume=True"):
        cache_dataset(model, corpus, HOOKS, tmp_path / "resumed", **settings)

    (tmp_path / "resumed" / "shard-00001.json").unlink()  # killed between a shard's rename and its record
    calls.clear()
    monkeypatch.setattr(layout, "save_file", lambda *a, **k: (calls.append(a[1]), real_save(*a, **k)))
    cache_dataset(model, corpus, HOOKS, tmp_path / "resumed", resume=True, **settings)
    assert len(calls) == 4, f"resuming should compute only shards 2..5, but wrote {len(calls)}"
    assert _files(tmp_path / "resumed") == _files(tmp_path / "clean"), "a resumed store must be byte-identical to an uninterrupted one"


def test_resume_refuses_different_settings_or_a_changed_corpus(model, corpus, tmp_path):
    cache_dataset(model, corpus, HOOKS, tmp_path, batch_size=4, progress=False)
    with pytest.raises(ValueError, match=r"different settings.*batch_size: stored 4, now 8"):
        cache_dataset(model, corpus, HOOKS, tmp_path, batch_size=8, resume=True, progress=False)
    with pytest.raises(ValueError, match=r"hooks"):
        cache_dataset(model, corpus, HOOKS[:1], tmp_path, batch_size=4, resume=True, progress=False)
    with pytest.raises(ValueError, match=r"dtype: stored 'float32', now 'float16'"):
        cache_dataset(model, corpus, HOOKS, tmp_path, batch_size=4, dtype=torch.float16, resume=True, progress=False)
    other = HookedTransformer(model.cfg.replace(seed=1))
    with pytest.raises(ValueError, match=r"model.*fingerprint"):
        cache_dataset(other, corpus, HOOKS, tmp_path, batch_size=4, resume=True, progress=False)
    with pytest.raises(ValueError, match="holds different tokens.*corpus changed"):
        cache_dataset(model, corpus.flip(0), HOOKS, tmp_path, batch_size=4, resume=True, progress=False)
    cache_dataset(model, corpus, HOOKS, tmp_path, batch_size=4, resume=True, progress=False)  # same settings: fine


def test_full_disk_fails_cleanly(model, corpus, tmp_path, monkeypatch):
    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(layout, "save_file", disk_full)
    with pytest.raises(StoreWriteError, match="the disk is full.*no partial file"):
        cache_dataset(model, corpus, HOOKS, tmp_path, progress=False)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [], f"no shard or temporary file may be left behind, nor a settings.json that would demand --resume: {left}"


def test_unusable_output_folder(model, corpus, tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        cache_dataset(model, corpus, HOOKS, tmp_path / "a_file", progress=False)
    with pytest.raises(StoreWriteError, match="cannot create the output folder"):
        cache_dataset(model, corpus, HOOKS, tmp_path / "a_file" / "below", progress=False)
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "shard-00000.safetensors").write_text("x")
    with pytest.raises(FileExistsError, match="no settings.json"):
        cache_dataset(model, corpus, HOOKS, tmp_path / "stray", progress=False)


def test_bad_input(model, corpus, tmp_path):
    with pytest.raises(KeyError, match="closest valid names"):
        cache_dataset(model, corpus, ["blocks.0.hook_resid_postt"], tmp_path, progress=False)
    with pytest.raises(ValueError, match="matches none"):
        cache_dataset(model, corpus, lambda name: False, tmp_path, progress=False)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        cache_dataset(model, corpus, HOOKS, tmp_path, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="dtype 'int8' is not supported"):
        cache_dataset(model, corpus, HOOKS, tmp_path, dtype="int8", progress=False)
    with pytest.raises(ValueError, match="length 10, but seq_len=5"):
        cache_dataset(model, corpus, HOOKS, tmp_path, seq_len=5, progress=False)
    with pytest.raises(ValueError, match="token ids must be in"):
        cache_dataset(model, corpus + 1000, HOOKS, tmp_path, progress=False)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        cache_dataset(model, ["some text"], HOOKS, tmp_path, progress=False)
    with pytest.raises(TypeError, match="single string"):
        cache_dataset(model, "some text", HOOKS, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"seq_len must be an int in \[1, n_ctx=48\]"):
        cache_dataset(model, ["x"], HOOKS, tmp_path, seq_len=100, progress=False)
    assert not list(tmp_path.iterdir()), "input errors must be caught before anything is written"


def test_stop_at_layer_is_used_when_later_blocks_are_not_needed(model):
    assert writer._last_block_needed(model, ["hook_embed"]) == 0
    assert writer._last_block_needed(model, ["blocks.0.hook_resid_post", "hook_pos_embed"]) == 1
    assert writer._last_block_needed(model, ["ln_final.hook_scale"]) is None


def test_pos_slice_cuts_the_position_axis_of_split_qkv_layer_norm_hooks(cfg, corpus, tmp_path):
    # With use_split_qkv_input, ln1 hooks are [batch pos head_index d_model]: the slice must cut pos, not head_index.
    model = HookedTransformer(cfg.replace(use_split_qkv_input=True))
    hook = "blocks.0.ln1.hook_normalized"
    cache_dataset(model, corpus, [hook], tmp_path, batch_size=8, pos_slice=(1, 3), progress=False)
    rows = ActivationStore(tmp_path).rows(0, 3)
    full = model.run_with_cache(corpus[:3], names_filter=[hook])[1][hook]  # [batch pos head_index d_model]
    assert rows[hook].shape == (3, 2, cfg.n_heads, cfg.d_model), f"sliced the wrong axis: {tuple(rows[hook].shape)}"
    torch.testing.assert_close(rows[hook], full[:, 1:3], msg="stored rows are not positions 1..2")
