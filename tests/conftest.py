"""Shared fixtures: tiny configs and models, a real byte-level BPE tokenizer, and random HF GPT-2 checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import hf_checkpoints
import pytest
import torch

from interp_transformer import HookedTransformer, TransformerConfig

CORPUS = [
    "When Mary and John went to the store, John gave a drink to Mary.",
    "The quick brown fox jumps over the lazy dog. The dog sleeps.",
    "Attention heads copy tokens; induction heads complete repeated patterns.",
    "Hello world! Hello there, general Kenobi. 12345 67890 <s> &amp; </script>",
] * 5


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models run ~10x faster on one thread: two threads of OpenMP spin-waiting cost more than they share."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_config(**overrides) -> TransformerConfig:
    values = dict(d_model=32, n_layers=2, n_heads=4, d_head=8, d_mlp=64, d_vocab=300, n_ctx=48, seed=0)
    values.update(overrides)
    return TransformerConfig(**values)


@pytest.fixture
def cfg() -> TransformerConfig:
    return tiny_config()


@pytest.fixture
def model(cfg: TransformerConfig) -> HookedTransformer:
    return HookedTransformer(cfg).eval()


@pytest.fixture(scope="session")
def shared_tiny_model() -> HookedTransformer:
    """``tiny_config()``'s random model built once per session, for tests that only read it.

    Tests that change weights, dtype or device, or leave hooks on, take the function-scoped ``model``.
    Teardown checks that nobody did: a shared model that changed would make later tests depend on order.
    """
    shared = HookedTransformer(tiny_config()).eval()
    before = {name: tensor.clone() for name, tensor in shared.state_dict().items()}
    yield shared
    changed = [name for name, tensor in shared.state_dict().items() if not torch.equal(tensor, before[name])]
    assert not changed, f"a test changed the session-wide shared_tiny_model ({changed[:3]}); use the `model` fixture"
    assert not any(point.has_hooks() for point in shared.hook_dict.values()), "a test left hooks on shared_tiny_model"


@pytest.fixture(scope="session")
def embedded_model() -> Callable[[str], HookedTransformer]:
    """Factory: ``embedded_model("ioi-mini")`` loads each embedded model once per session (read it, do not change it)."""
    loaded: dict[str, HookedTransformer] = {}

    def load(name: str) -> HookedTransformer:
        if name not in loaded:
            loaded[name] = HookedTransformer.from_pretrained(name).eval()
        return loaded[name]

    return load


@pytest.fixture
def tokens(cfg: TransformerConfig) -> torch.Tensor:
    return torch.randint(0, cfg.d_vocab, (3, 12), generator=torch.Generator().manual_seed(1))


def build_bpe_tokenizer(vocab_size: int = 300):
    """A GPT-2-like tokenizer (byte-level BPE, BOS = EOS = PAD = <|endoftext|>) trained on CORPUS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


@pytest.fixture(scope="session")
def bpe_tokenizer():
    return build_bpe_tokenizer()


@pytest.fixture
def make_hf_gpt2(tmp_path: Path) -> Callable[..., tuple]:
    """Factory: a random-init GPT2LMHeadModel saved to a temp dir -> (hf_model, directory).

    ``jitter`` > 0 perturbs every parameter (see tests/hf_checkpoints.py); by default the init is kept."""

    def make(seed: int = 0, with_tokenizer: bool = False, jitter: float = 0.0, **config) -> tuple:
        config_cls, model_cls = hf_checkpoints.hf_classes("gpt2")
        values = dict(n_layer=2, n_embd=32, n_head=4, vocab_size=300, n_positions=48, bos_token_id=0, eos_token_id=0)
        values.update(config)
        directory = tmp_path / f"gpt2-{seed}-{abs(hash(tuple(sorted(values.items()))))}"
        hf_model = hf_checkpoints.save_hf_model(model_cls, config_cls(**values), directory, seed, jitter)
        if with_tokenizer:
            build_bpe_tokenizer(values["vocab_size"]).save_pretrained(directory)
        return hf_model, directory

    return make


def save_random_hf_model(model_cls, config, directory: Path, seed: int = 0, jitter: float = 0.1):
    """A Hugging Face model from ``config`` with every parameter perturbed (so LayerNorm weights and
    biases are not their trivial init and parity tests cannot pass vacuously), saved to ``directory``.
    (The one factory is tests/hf_checkpoints.py; this name is kept for the per-architecture tests.)"""
    return hf_checkpoints.save_hf_model(model_cls, config, directory, seed, jitter)


def sample_tokens(batch: int = 2, pos: int = 20, seed: int = 2, d_vocab: int = 300) -> torch.Tensor:
    return torch.randint(0, d_vocab, (batch, pos), generator=torch.Generator().manual_seed(seed))


def edit_config(directory: Path, **changes) -> None:
    """Change fields of a saved Hugging Face ``config.json`` in place (to test what converters refuse)."""
    path = directory / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))
