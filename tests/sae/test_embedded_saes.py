"""The shipped dictionaries: they load, match the shipped models, and their cards' claims hold on fresh data.

Everything is recomputed here without the code under test: the TopK reconstruction from the raw
weights (dense math), the spliced loss with a plain ``run_with_hooks`` replacement instead of
``splice`` and a plain cross-entropy weighted by the sampler's ``loss_mask``, the repeated-pair
labels with a Python loop, and the feature search from scratch.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from interp_transformer import HookedTransformer
from interp_transformer.loading.embedded import embedded_models
from interp_transformer.sae import SparseAutoencoder, Transcoder, embedded_dictionaries, load_embedded
from interp_transformer.toy import modadd
from interp_transformer.toy.evaluation import parse_results_table
from interp_transformer.toy.recipes import all_recipes
from interp_transformer.toy.train import Batch

SAE_NAME = "attn-only-2l-induction-resid-sae"
TRANSCODER_NAME = "modadd-1l-mlp0-transcoder"
FRESH_SEEDS = (777, 778, 779)  # not the card's seeds (12345-12349), nor training's (0) or the search's (1)


def training_json(name: str) -> dict:
    return json.loads((embedded_dictionaries()[name] / "training.json").read_text())


def card(name: str) -> dict[str, tuple[float, float]]:
    return parse_results_table((embedded_dictionaries()[name] / "SAE_CARD.md").read_text())


def dense_topk(x: torch.Tensor, sae: SparseAutoencoder) -> tuple[torch.Tensor, torch.Tensor]:
    """(feature activations, reconstruction) from the raw weights: relu of the k largest pre-activations."""
    pre = x @ sae.W_enc + sae.b_enc
    top = pre.topk(sae.cfg.k, dim=-1)
    acts = torch.zeros_like(pre).scatter(-1, top.indices, top.values.clamp_min(0))
    return acts, acts @ sae.W_dec + sae.b_dec


def fresh_batch(model_name: str, seed: int, n: int = 256) -> Batch:
    return all_recipes()[model_name].sample_batch(torch.Generator().manual_seed(seed), n)


def fresh_tokens(model_name: str, seed: int, n: int = 256) -> torch.Tensor:
    return fresh_batch(model_name, seed, n).tokens


def real_positions(model: HookedTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """Every position but padding and a ``<bos>`` the row starts with (modadd's rows have none: ``a b =``)."""
    keep = tokens != model.tokenizer.pad_token_id
    keep[:, 0] &= tokens[:, 0] != model.tokenizer.bos_token_id
    return keep


def weighted_next_token_loss(logits: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> float:
    """Cross-entropy of each row's next tokens from the logits of the positions read, weighted."""
    predicted = logits[:, : rows.shape[1] - 1]
    per_token = F.cross_entropy(predicted.flatten(0, 1).double(), rows[:, 1:].flatten(), reduction="none").view(weights.shape)
    return float((per_token * weights).sum() / weights.sum())


def measure(name: str, seed: int) -> dict[str, float]:
    """Explained variance, L0 and the task loss clean / spliced on one fresh batch, all by hand."""
    sae = load_embedded(name)
    model = HookedTransformer.from_pretrained(sae.cfg.model_name).eval()
    batch = fresh_batch(sae.cfg.model_name, seed)
    tokens = batch.tokens[:, : model.cfg.n_ctx]  # modadd's rows `a b = answer` are one longer than its context
    keep = real_positions(model, tokens)
    weights = batch.loss_mask.double() * (batch.tokens[:, 1:] != model.tokenizer.pad_token_id)
    target_hook = sae.cfg.hook_name_out or sae.cfg.hook_name
    with torch.no_grad():
        clean, cache = model.run_with_cache(tokens)
        acts, y_hat = dense_topk(cache[sae.cfg.hook_name], sae)
        spliced = model.run_with_hooks(tokens, fwd_hooks=[(target_hook, lambda activation, hook: y_hat)])
    y = cache[target_hook][keep]
    return {
        "explained_variance": float(1 - (y - y_hat[keep]).pow(2).sum() / (y - y.mean(0)).pow(2).sum()),
        "l0": float((acts[keep] > 0).sum(-1).double().mean()),
        "clean_loss": weighted_next_token_loss(clean, batch.tokens, weights),
        "spliced_loss": weighted_next_token_loss(spliced, batch.tokens, weights),
    }


def test_the_shipped_dictionaries_load_by_name():
    assert set(embedded_dictionaries()) == {SAE_NAME, TRANSCODER_NAME}
    sae, transcoder = load_embedded(SAE_NAME), load_embedded(TRANSCODER_NAME)
    assert type(sae) is SparseAutoencoder and sae.cfg.hook_name == "blocks.1.hook_resid_post"
    assert sae.cfg.model_name == "attn-only-2l-induction" and sae.cfg.architecture == "topk" and sae.cfg.k <= 32
    assert isinstance(transcoder, Transcoder), "a folder with hook_name_out must load as a Transcoder"
    assert (transcoder.cfg.hook_name, transcoder.cfg.hook_name_out) == ("blocks.0.hook_resid_mid", "blocks.0.hook_mlp_out")
    assert transcoder.cfg.model_name == "modadd-1l" and transcoder.cfg.k <= 32
    with pytest.raises(KeyError, match=SAE_NAME):
        load_embedded("no-such-dictionary")


@pytest.mark.parametrize("name", [SAE_NAME, TRANSCODER_NAME])
def test_each_dictionary_was_trained_on_the_shipped_model_weights(name):
    model_name = training_json(name)["recipe"]["model"]
    shipped = json.loads((embedded_models()[model_name] / "interp_transformer.json").read_text())["sha256"]["model.safetensors"]
    assert training_json(name)["model_sha256"] == shipped, (
        f"{name} was trained on other {model_name} weights than the shipped ones: retrain it with "
        f"python -m interp_transformer.sae.embedded_recipes {name}"
    )


def test_shipped_weights_stay_small():
    files = [path for folder in list(embedded_models().values()) + list(embedded_dictionaries().values()) for path in folder.iterdir()]
    total = sum(path.stat().st_size for path in files if path.suffix == ".safetensors")
    assert total <= 10 * 2**20, f"shipped weights take {total / 2**20:.1f} MB, over the 10 MB budget"
    assert not [path for path in files if path.suffix in (".pt", ".pth", ".pkl", ".bin")], "no pickled files may be shipped"


@pytest.mark.slow
@pytest.mark.parametrize("name", [SAE_NAME, TRANSCODER_NAME])
def test_reconstruction_and_spliced_loss_hold_on_fresh_data(name):
    stated = card(name)
    per_seed = [measure(name, seed) for seed in FRESH_SEEDS]
    for figure in ("explained_variance", "l0", "clean_loss", "spliced_loss"):
        values = torch.tensor([seed[figure] for seed in per_seed])
        mean, std = stated[figure]
        assert abs(float(values.mean()) - mean) <= 4 * std + 0.02 * abs(mean) + 1e-6, (
            f"{name}: {figure} is {values.tolist()} on fresh seeds, the card states {mean} ± {std}; regenerate the card"
        )
    for seed in per_seed:
        assert seed["explained_variance"] >= 0.9 and seed["l0"] <= 32, f"{name} misses the bar (FVE >= 0.9 at L0 <= 32): {seed}"
        assert seed["spliced_loss"] - seed["clean_loss"] < 0.1, f"{name} spliced in costs more than 0.1 nats of loss: {seed}"


def test_the_transcoder_replaces_modadds_mlp_on_pairs_outside_its_training_split():
    """The card's batches share rows with the transcoder's training data; the model's held-out pairs share none."""
    transcoder = load_embedded(TRANSCODER_NAME)
    model = HookedTransformer.from_pretrained("modadd-1l").eval()
    _, held_out = modadd.split()
    tokens, answers = held_out[:, :3], held_out[:, 3]
    with torch.no_grad():
        clean, cache = model.run_with_cache(tokens)
        mlp_in, mlp_out = cache["blocks.0.hook_resid_mid"], cache["blocks.0.hook_mlp_out"]
        torch.testing.assert_close(model.blocks[0].mlp(mlp_in), mlp_out, atol=1e-4, rtol=1e-4,
                                   msg="blocks.0.hook_resid_mid is not what modadd-1l's MLP reads: the transcoder reads the wrong hook")
        acts, y_hat = dense_topk(mlp_in, transcoder)
        spliced = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_mlp_out", lambda activation, hook: y_hat)])
    assert int((acts > 0).sum(-1).max()) <= 32
    for where, position in (("every position", slice(None)), ("the `=` position", 2)):
        y, error = mlp_out[:, position].reshape(-1, mlp_out.shape[-1]), (mlp_out - y_hat)[:, position].reshape(-1, mlp_out.shape[-1])
        explained = float(1 - error.pow(2).sum() / (y - y.mean(0)).pow(2).sum())
        assert explained >= 0.95, f"on held-out pairs the transcoder explains {explained:.3f} of the MLP's output at {where}"
    clean_loss, spliced_loss = (float(F.cross_entropy(logits[:, -1].double(), answers)) for logits in (clean, spliced))
    accuracy = float((spliced[:, -1].argmax(-1) == answers).double().mean())
    assert spliced_loss - clean_loss < 0.05 and accuracy >= 0.99, (
        f"with the transcoder in place of the MLP the held-out answer loss is {spliced_loss:.4f} (clean {clean_loss:.4f}) "
        f"and the accuracy {accuracy:.4f}"
    )


def repeated_pair_labels(tokens: torch.Tensor) -> torch.Tensor:
    """True where (previous token, token) occurred as a pair earlier in the row: a plain loop."""
    labels = torch.zeros_like(tokens, dtype=torch.bool)
    for row, ids in enumerate(tokens.tolist()):
        seen = set()
        for position in range(1, len(ids)):
            pair = (ids[position - 1], ids[position])
            labels[row, position] = pair in seen
            seen.add(pair)
    return labels


def feature_scores(tokens: torch.Tensor, labels: torch.Tensor, sae: SparseAutoencoder, model: HookedTransformer) -> dict:
    """Per feature, by hand: firing precision, recall, Youden's J, and mean activation in and out of the labels."""
    keep = real_positions(model, tokens)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter="blocks.1.hook_resid_post")
        acts = dense_topk(cache["blocks.1.hook_resid_post"], sae)[0][keep]
    labels = labels[keep]
    fires = acts > 0
    recall = (fires & labels[:, None]).double().sum(0) / labels.sum()
    false_rate = (fires & ~labels[:, None]).double().sum(0) / (~labels).sum()
    precision = (fires & labels[:, None]).double().sum(0) / fires.double().sum(0).clamp_min(1)
    return {"precision": precision, "recall": recall, "j": recall - false_rate,
            "mean_in": acts[labels].double().mean(0), "mean_out": acts[~labels].double().mean(0)}


@pytest.mark.slow
def test_the_cards_features_separate_repeated_pairs_from_fresh_text():
    features = training_json(SAE_NAME)["features"]
    sae = load_embedded(SAE_NAME)
    model = HookedTransformer.from_pretrained("attn-only-2l-induction").eval()
    for seed in FRESH_SEEDS:
        tokens = fresh_tokens("attn-only-2l-induction", seed, n=512)
        repeated = repeated_pair_labels(tokens)
        fresh = feature_scores(tokens, ~repeated, sae, model)
        feature = features["no_repeated_pair"]
        assert int(fresh["j"].argmax()) == feature, f"on seed {seed} another feature marks fresh text best: {int(fresh['j'].argmax())}"
        assert fresh["precision"][feature] > 0.93 and fresh["recall"][feature] > 0.88, (
            f"feature {feature} should fire on fresh text and stay silent after a repeated token: "
            f"precision {fresh['precision'][feature]:.3f}, recall {fresh['recall'][feature]:.3f}"
        )
        assert fresh["mean_in"][feature] > 10 * fresh["mean_out"][feature]
        inside = feature_scores(tokens, repeated, sae, model)
        feature = features["repeated_pair"]
        assert feature in inside["j"].topk(3).indices.tolist(), f"on seed {seed} feature {feature} is not among the 3 best for repeated pairs"
        assert inside["j"][feature] > 0.15 and inside["mean_in"][feature] > 2.5 * inside["mean_out"][feature], (
            f"feature {feature} should fire more on the token after a repeated token: J {inside['j'][feature]:.3f}, "
            f"mean {inside['mean_in'][feature]:.3f} there vs {inside['mean_out'][feature]:.3f} elsewhere"
        )
