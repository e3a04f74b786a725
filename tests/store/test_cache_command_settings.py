"""`interp-transformer cache` with bad settings fails before it claims --out, naming the flag, so the corrected command just works."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import CORPUS, build_bpe_tokenizer, tiny_config

from interp_transformer import HookedTransformer
from interp_transformer.cli import main
from interp_transformer.store import ActivationStore, cache_dataset, writer


@pytest.fixture(scope="module")
def model_64(tmp_path_factory) -> Path:
    """A saved model with a 64-token context: shorter than the old fixed default --seq-len of 128."""
    directory = tmp_path_factory.mktemp("model64")
    HookedTransformer(tiny_config(n_ctx=64), tokenizer=build_bpe_tokenizer()).save_pretrained(directory)
    return directory


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "data.txt"
    path.write_text("\n".join(CORPUS * 3) + "\n")
    return path


def _cache(model: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["cache", "--model", str(model), "--data", str(data), "--hooks", "hook_embed", "--out", str(out), "--no-progress", *extra])


def test_default_seq_len_fits_a_64_token_model(model_64, text_file, tmp_path):
    assert _cache(model_64, text_file, tmp_path / "out") == 0, "the default --seq-len must fit the model's context"
    tokens = ActivationStore(tmp_path / "out").rows(0, 1)["tokens"]
    assert tokens.shape == (1, 64), f"the default --seq-len should be min(128, n_ctx) = 64, stored sequences are {tuple(tokens.shape)}"


def test_too_long_seq_len_fails_before_creating_out_and_the_corrected_command_works(model_64, text_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert _cache(model_64, text_file, out, "--seq-len", "100") == 1
    err = capsys.readouterr().err
    assert "--seq-len 100" in err and "64" in err, f"the error should name the flag and the model's context: {err}"
    assert "seq_len=" not in err and "resume=True" not in err, f"CLI errors give CLI advice, not library advice: {err}"
    assert not out.exists(), "a run refused for its settings must not create (or claim) --out"
    assert _cache(model_64, text_file, out, "--seq-len", "64") == 0, "the corrected command should just work, without --resume"
    assert ActivationStore(out).rows(0, 1)["tokens"].shape == (1, 64)


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--seq-len", "0"], "--seq-len 0"),
        (["--batch-size", "0"], "--batch-size 0"),
        (["--shard-mb", "0"], "--shard-mb 0"),
        (["--shard-mb", "nan"], "--shard-mb nan"),
        (["--dtype", "int8"], "--dtype 'int8'"),
    ],
)
def test_each_bad_setting_names_its_flag_and_leaves_no_folder(model_64, text_file, tmp_path, capsys, flags, named):
    out = tmp_path / "out"
    assert _cache(model_64, text_file, out, *flags) == 1
    err = capsys.readouterr().err
    assert named in err, f"the error should name {named!r}: {err}"
    assert not out.exists(), f"{flags} was refused, yet --out was created"


def test_seq_len_that_disagrees_with_a_token_file_names_the_flag(model_64, tmp_path, capsys):
    torch.save(torch.randint(0, 300, (4, 10)), tmp_path / "tokens.pt")
    assert _cache(model_64, tmp_path / "tokens.pt", tmp_path / "out", "--seq-len", "16") == 1
    err = capsys.readouterr().err
    assert "--seq-len 16" in err and "length 10" in err, f"the error should say to drop --seq-len for a token file: {err}"
    assert not (tmp_path / "out").exists()
    assert _cache(model_64, tmp_path / "tokens.pt", tmp_path / "out") == 0


def test_a_run_that_fails_before_its_first_shard_leaves_the_folder_unclaimed(model, tmp_path, monkeypatch):
    """Any failure before a shard is written (e.g. out of memory for --batch-size) must not demand --resume next time."""
    corpus = torch.randint(0, model.cfg.d_vocab, (6, 8), generator=torch.Generator().manual_seed(0))

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(writer, "_activations", out_of_memory)
    with pytest.raises(RuntimeError, match="simulated"):
        cache_dataset(model, corpus, "hook_embed", tmp_path / "new", progress=False)
    assert not (tmp_path / "new").exists(), "a folder this run created and wrote nothing into should be removed"
    (tmp_path / "existing").mkdir()
    with pytest.raises(RuntimeError, match="simulated"):
        cache_dataset(model, corpus, "hook_embed", tmp_path / "existing", progress=False)
    assert list((tmp_path / "existing").iterdir()) == [], "the run's settings.json should be removed from a folder it did not create"
    monkeypatch.undo()
    cache_dataset(model, corpus, "hook_embed", tmp_path / "existing", progress=False)  # no resume needed
    assert len(ActivationStore(tmp_path / "existing")) == 6


def test_a_refused_run_leaves_another_runs_files_alone(model, tmp_path):
    corpus = torch.randint(0, model.cfg.d_vocab, (6, 8), generator=torch.Generator().manual_seed(0))
    cache_dataset(model, corpus, "hook_embed", tmp_path, sequences_per_shard=2, progress=False)
    in_progress = tmp_path / ".shard-00009.safetensors.abc.tmp"  # as if another run were writing right now
    in_progress.write_bytes(b"partial")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(FileExistsError, match="already holds an activation store"):
        cache_dataset(model, corpus, "hook_embed", tmp_path, sequences_per_shard=2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "a run refused the folder must not delete or add anything in it"
