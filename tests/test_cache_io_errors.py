"""ActivationCache.load on damaged or foreign files: every error names the file and says what is wrong; pickles are never loaded."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
import torch

from interp_transformer import ActivationCache


@pytest.fixture
def saved(model, tokens, tmp_path) -> Path:
    _, cache = model.run_with_cache(tokens, names_filter=["hook_embed", "blocks.0.hook_resid_post"])
    cache.save(tmp_path / "run")
    return tmp_path / "run"


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


class _Marker:
    """Unpickling this sets a flag: proof that a file was (wrongly) unpickled."""

    unpickled = False

    def __reduce__(self):
        return (_set_marker, ())


def _set_marker():
    _Marker.unpickled = True
    return {}


@pytest.mark.parametrize("name", ["acts.pt", "acts.safetensors", "acts"])
def test_a_torch_pickle_is_refused_by_name_and_never_unpickled(model, tokens, tmp_path, name):
    _, cache = model.run_with_cache(tokens, names_filter=["hook_embed"])
    path = tmp_path / name
    torch.save({"hook_embed": cache["hook_embed"], "marker": _Marker()}, path)
    _Marker.unpickled = False
    with pytest.raises(ValueError, match="not a safetensors file") as error:
        ActivationCache.load(path)
    message = str(error.value)
    assert str(path) in message, f"the error should name the file: {message}"
    assert "never" in message and "pickle" in message, f"the error should say pickles are never loaded: {message}"
    assert not _Marker.unpickled, "ActivationCache.load unpickled the file: a pickle can run arbitrary code"


def test_a_plain_pickle_is_refused_too(tmp_path):
    path = tmp_path / "acts.pkl"
    path.write_bytes(pickle.dumps({"hook_embed": [1, 2, 3]}))
    with pytest.raises(ValueError, match=r"acts\.pkl is a Python pickle.*not a safetensors file"):
        ActivationCache.load(path)


def test_a_truncated_sidecar_names_the_file(saved):
    sidecar = saved.with_suffix(".json")
    sidecar.write_text(sidecar.read_text()[:50])
    with pytest.raises(ValueError, match=r"run\.json is not valid JSON.*truncated") as error:
        ActivationCache.load(saved)
    assert str(sidecar) in str(error.value)


def test_a_sidecar_missing_a_field_names_the_file_and_the_field(saved):
    sidecar = saved.with_suffix(".json")
    content = json.loads(sidecar.read_text())
    del content["names"]
    sidecar.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"run\.json.*'names'"):
        ActivationCache.load(saved)


def test_a_flipped_header_byte_names_the_file(saved):
    tensors = saved.with_suffix(".safetensors")
    _flip_byte(tensors, 12)  # inside the JSON header
    with pytest.raises(ValueError, match=r"run\.safetensors.*sha256.*corrupted"):
        ActivationCache.load(saved)


def test_a_damaged_header_with_a_matching_hash_still_names_the_file(saved):
    """If the sidecar's hash is rewritten to match, the safetensors reader's own error must still name the file."""
    from interp_transformer.loading.integrity import sha256_of

    tensors, sidecar = saved.with_suffix(".safetensors"), saved.with_suffix(".json")
    (header_length,) = struct.unpack("<Q", tensors.read_bytes()[:8])
    data = bytearray(tensors.read_bytes())
    data[8] = ord("[")  # the header is no longer a JSON object
    tensors.write_bytes(bytes(data))
    content = json.loads(sidecar.read_text())
    content["sha256"] = sha256_of(tensors)
    sidecar.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"cannot read .*run\.safetensors.*not a valid safetensors file"):
        ActivationCache.load(saved)
    assert header_length > 0


def test_a_tensor_file_that_lacks_a_listed_name_names_both_files(saved, model, tokens):
    from interp_transformer.loading.integrity import sha256_of

    tensors, sidecar = saved.with_suffix(".safetensors"), saved.with_suffix(".json")
    content = json.loads(sidecar.read_text())
    content["names"].append("blocks.1.hook_resid_post")
    sidecar.write_text(json.dumps(content))
    assert content["sha256"] == sha256_of(tensors)
    with pytest.raises(ValueError, match=r"run\.json lists .*blocks\.1\.hook_resid_post.*run\.safetensors"):
        ActivationCache.load(saved)
