"""Our own save format and from_pretrained's name resolution and error paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from interp_transformer import HookedTransformer
from interp_transformer.loading import available_models
from interp_transformer.loading.integrity import CorruptWeightsError
from interp_transformer.loading.native import CONFIG_FILE, WEIGHTS_FILE

PROMPT = "When Mary and John went to the store"


@pytest.fixture
def saved(bpe_tokenizer, tmp_path) -> tuple[HookedTransformer, Path]:
    model = HookedTransformer(tiny_config(init_range=0.3), tokenizer=bpe_tokenizer).eval()
    return model, model.save_pretrained(tmp_path / "saved")


def test_round_trip_keeps_logits_config_and_tokenizer(saved):
    model, directory = saved
    loaded = HookedTransformer.from_pretrained(directory).eval()
    assert loaded.cfg == model.cfg
    assert loaded.cfg.dtype == torch.float32
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), f"{name} changed on the way through disk"
    assert loaded.tokenizer is not None, "the tokenizer saved with the model was not loaded back"
    assert torch.equal(loaded.to_tokens(PROMPT), model.to_tokens(PROMPT))
    assert loaded.tokenizer.pad_token_id == model.tokenizer.pad_token_id
    with torch.no_grad():
        logits = model(PROMPT)
        assert logits.std() > 0.3, "logits are nearly constant; the comparison would be vacuous"
        assert torch.equal(loaded(PROMPT), logits)


def test_save_returns_the_directory_and_writes_checksummed_files(saved):
    _, directory = saved
    assert (directory / WEIGHTS_FILE).is_file() and (directory / CONFIG_FILE).is_file()
    manifest = json.loads((directory / CONFIG_FILE).read_text())
    assert set(manifest["sha256"]) == {WEIGHTS_FILE}
    assert not list(directory.glob("*.tmp")), "an atomic write left its temporary file behind"


def test_round_trip_without_tokenizer_and_in_bfloat16(tmp_path):
    model = HookedTransformer(tiny_config(dtype=torch.bfloat16, n_layers=1, model_name="bf16-toy")).eval()
    loaded = HookedTransformer.from_pretrained(model.save_pretrained(tmp_path / "bf16"))
    assert loaded.tokenizer is None
    assert loaded.cfg == model.cfg and loaded.cfg.model_name == "bf16-toy"
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    as_float = HookedTransformer.from_pretrained(tmp_path / "bf16", dtype=torch.float32)
    assert torch.equal(as_float.embed.W_E, model.embed.W_E.float())


def test_saving_again_overwrites(saved, tmp_path):
    model, directory = saved
    with torch.no_grad():
        model.embed.W_E.add_(1.0)
    model.save_pretrained(directory)
    assert torch.equal(HookedTransformer.from_pretrained(directory).embed.W_E, model.embed.W_E)


def test_round_trip_of_a_converted_hugging_face_model(make_hf_gpt2, tmp_path):
    _, hf_directory = make_hf_gpt2(with_tokenizer=True, initializer_range=0.3)
    converted = HookedTransformer.from_pretrained(hf_directory).eval()
    reloaded = HookedTransformer.from_pretrained(converted.save_pretrained(tmp_path / "native")).eval()
    assert reloaded.cfg == converted.cfg and reloaded.cfg.original_architecture == "GPT2LMHeadModel"
    with torch.no_grad():
        assert torch.equal(reloaded(PROMPT), converted(PROMPT))


# ------------------------------------------------------------- corruption
def test_truncated_weights_fail_with_the_hash_in_the_error(saved):
    _, directory = saved
    path = directory / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptWeightsError, match="sha256"):
        HookedTransformer.from_pretrained(directory)


def test_a_single_flipped_bit_fails_with_the_hash_in_the_error(saved):
    _, directory = saved
    path = directory / WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # inside the tensor data: safetensors alone would load this silently
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptWeightsError, match="sha256") as error:
        HookedTransformer.from_pretrained(directory)
    manifest = json.loads((directory / CONFIG_FILE).read_text())
    assert manifest["sha256"][WEIGHTS_FILE] in str(error.value), "the error should show the stored hash"


def test_corrupt_error_is_a_value_error():
    assert issubclass(CorruptWeightsError, ValueError)


def test_unknown_format_version_is_refused(saved):
    _, directory = saved
    manifest = json.loads((directory / CONFIG_FILE).read_text())
    manifest["format_version"] = 99
    (directory / CONFIG_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="format_version 99"):
        HookedTransformer.from_pretrained(directory)


def test_unknown_config_field_in_the_manifest_is_refused(saved):
    _, directory = saved
    manifest = json.loads((directory / CONFIG_FILE).read_text())
    manifest["config"]["alibi_bias_max"] = 8
    (directory / CONFIG_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="alibi_bias_max"):
        HookedTransformer.from_pretrained(directory)


def test_corrupt_hugging_face_safetensors_fails_without_a_stored_hash(make_hf_gpt2):
    _, directory = make_hf_gpt2()
    path = directory / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptWeightsError, match="truncated or corrupted"):
        HookedTransformer.from_pretrained(directory)


def test_corrupt_pytorch_bin_fails(make_hf_gpt2):
    hf_model, directory = make_hf_gpt2()
    (directory / "model.safetensors").unlink()
    path = directory / "pytorch_model.bin"
    torch.save(hf_model.state_dict(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptWeightsError, match="pytorch_model.bin"):
        HookedTransformer.from_pretrained(directory)


# ------------------------------------------------------- name resolution
def test_unknown_name_lists_what_is_available():
    with pytest.raises(ValueError, match="not-a-model") as error:
        HookedTransformer.from_pretrained("not-a-model")
    message = str(error.value)
    names = available_models()
    assert "embedded" in message and "hub" in message
    assert "gpt2" in names["hub"] and "distilgpt2" in names["hub"]
    for name in names["embedded"] + names["hub"]:
        assert repr(name) in message, f"the error should list {name!r}"


def test_directory_without_config_is_a_clear_error(tmp_path):
    directory = tmp_path / "empty"
    directory.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        HookedTransformer.from_pretrained(directory)


def test_invalid_config_json_is_a_clear_error(tmp_path):
    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        HookedTransformer.from_pretrained(directory)


def test_path_given_as_a_string_with_a_user_home(saved, monkeypatch):
    _, directory = saved
    monkeypatch.setenv("HOME", str(directory.parent))
    loaded = HookedTransformer.from_pretrained(f"~/{directory.name}")
    assert loaded.cfg.d_model == tiny_config().d_model
