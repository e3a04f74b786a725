"""Recipes for the shipped dictionaries: cache an embedded model's activations, train, write the folder and card.

    python -m interp_transformer.sae.embedded_recipes attn-only-2l-induction-resid-sae   # retrain and rewrite
    python -m interp_transformer.sae.embedded_recipes modadd-1l-mlp0-transcoder --card-only

Data are ``n_sequences`` rows from the embedded model's own training sampler (seed ``data_seed``), as
much of each as the model reads (``model_input``), cached with ``cache_dataset`` into a temporary
store; the SAE is trained by ``train_sae``, the transcoder by ``train_transcoder``. The folder gets
SAELens's files plus ``training.json`` (settings, logged metrics, time, and the sha256 of the model
weights it was trained on) and ``SAE_CARD.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from interp_transformer.model import HookedTransformer
from interp_transformer.sae.dictionary import SparseAutoencoder
from interp_transformer.sae.embedded import SAES_DIR
from interp_transformer.sae.embedded_card import (
    EVAL_SEQUENCES, FEATURE_LABELS, SAE_CARD_SEEDS, SEARCH_SEED, SEARCH_SEQUENCES, card_figures, evaluation_words, feature_rows,
    find_feature, sample_tokens,
)
from interp_transformer.store import cache_dataset
from interp_transformer.toy.evaluation import Figure, results_table


@dataclass(frozen=True)
class DictionaryRecipe:
    name: str
    model: str
    hook: str  # where it reads
    d_sae: int
    k: int
    steps: int
    description: str
    hook_out: str | None = None  # a transcoder writes here
    batch_size: int = 1024
    lr: float = 1e-3
    n_sequences: int = 2048
    data_seed: int = 0
    seed: int = 0
    feature_labels: tuple[str, ...] = ()  # keys of FEATURE_LABELS: the meanings a feature is searched for
    notes: str = ""  # printed under the card's results


RECIPES = {
    recipe.name: recipe
    for recipe in (
        DictionaryRecipe(
            name="attn-only-2l-induction-resid-sae", model="attn-only-2l-induction", hook="blocks.1.hook_resid_post",
            d_sae=512, k=16, steps=3000, feature_labels=("repeated_pair", "no_repeated_pair"),
            description="TopK SAE on the final residual stream (after both attention layers) of attn-only-2l-induction",
        ),
        DictionaryRecipe(
            name="modadd-1l-mlp0-transcoder", model="modadd-1l", hook="blocks.0.hook_resid_mid", hook_out="blocks.0.hook_mlp_out",
            d_sae=128, k=16, steps=6000, lr=3e-3, n_sequences=2048,
            description="TopK transcoder replacing modadd-1l's MLP: reads the MLP's input (the residual stream after attention; "
                        "the model has no LayerNorm), predicts the MLP's output",
            notes="modadd-1l's sampler draws from a fixed split of 3,830 training pairs, so each evaluation batch shares about "
                  "half its rows with the 2,048 the transcoder was trained on. `tests/sae/test_embedded_saes.py` also measures "
                  "the reconstruction and the answer's loss on pairs outside that split (held out from the model too).",
        ),
    )
}


def model_sha256(model_name: str) -> str:
    """The sha256 of the embedded model's weights, as its ``interp_transformer.json`` records it."""
    from interp_transformer.loading.embedded import embedded_models

    return json.loads((embedded_models()[model_name] / "interp_transformer.json").read_text())["sha256"]["model.safetensors"]


def train_dictionary(recipe: DictionaryRecipe, progress: bool = True) -> tuple[SparseAutoencoder, dict]:
    """Cache the model's activations on fresh sampler data and train the dictionary; returns it and ``training.json``."""
    from interp_transformer.sae.training import train_sae
    from interp_transformer.sae.transcoder_training import train_transcoder

    model = HookedTransformer.from_pretrained(recipe.model).eval()
    tokens = sample_tokens(recipe.model, recipe.n_sequences, recipe.data_seed)
    hooks = [recipe.hook] + ([recipe.hook_out] if recipe.hook_out else [])
    history: list[dict] = []
    settings = dict(steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr, seed=recipe.seed, buffer_size=2**16,
                    log_every=max(1, recipe.steps // 20), dead_after_tokens=100_000)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "store"
        cache_dataset(model, tokens, hooks, store, batch_size=64, progress=progress)
        if recipe.hook_out is None:
            sae = train_sae(store, recipe.hook, d_sae=recipe.d_sae, architecture="topk", k=recipe.k, progress=progress, log=history.append, **settings)
        else:
            sae = train_transcoder(store, recipe.hook, recipe.hook_out, d_sae=recipe.d_sae, k=recipe.k, progress=progress, log=history.append, **settings)
    seconds = time.perf_counter() - start
    training = {
        "recipe": asdict(recipe), "settings": settings, "model_sha256": model_sha256(recipe.model),
        "train_seconds": round(seconds, 1), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.machine(), "history": history,
    }
    search = sample_tokens(recipe.model, SEARCH_SEQUENCES, SEARCH_SEED)
    training["features"] = {label: find_feature(*feature_rows(model, sae, search, label)) for label in recipe.feature_labels}
    return sae, training


def write_dictionary(recipe: DictionaryRecipe, sae: SparseAutoencoder, training: dict, folder: Path | None = None) -> Path:
    folder = SAES_DIR / recipe.name if folder is None else Path(folder)
    sae.save(folder)
    (folder / "training.json").write_text(json.dumps(training, indent=2) + "\n")
    return folder


def figures_for(name: str, seeds=SAE_CARD_SEEDS, folder: Path | None = None) -> list[Figure]:
    """Every figure of the shipped dictionary ``name``'s card (or the one in ``folder``), measured now."""
    folder = SAES_DIR / name if folder is None else Path(folder)
    training = json.loads((folder / "training.json").read_text())
    recipe = DictionaryRecipe(**{**training["recipe"], "feature_labels": tuple(training["recipe"]["feature_labels"])})
    sae = SparseAutoencoder.load(folder)  # a Transcoder when the folder holds one
    model = HookedTransformer.from_pretrained(recipe.model).eval()
    with torch.no_grad():
        return card_figures(model, sae, seeds, training["features"])


def sae_card(recipe: DictionaryRecipe, training: dict, figures: list[Figure], words: dict[str, str]) -> str:
    """The card's text; ``words`` (``evaluation_words``) say what the model reads and what is evaluated and scored."""
    last = training["history"][-1]
    settings = training["settings"]
    kind = "transcoder" if recipe.hook_out else "SAE"
    where = f"reads `{recipe.hook}`, writes `{recipe.hook_out}`" if recipe.hook_out else f"reads and reconstructs `{recipe.hook}`"
    text = [
        f"# {recipe.name}", "", f"{recipe.description}. Shipped with interp_transformer in SAELens's format "
        f"(`cfg.json` + `sae_weights.safetensors`); load it with `interp_transformer.sae.load_embedded({recipe.name!r})`.", "",
        "## Dictionary", f"TopK {kind}, k={recipe.k}, d_sae={recipe.d_sae}; {where}. Model: `{recipe.model}` "
        f"(weights sha256 `{training['model_sha256'][:16]}...`).", "",
        "## Training",
        f"{recipe.n_sequences} sequences from {recipe.model}'s own training sampler (seed {recipe.data_seed}), every position "
        f"the model reads cached with `cache_dataset` ({words['reads']}); {settings['steps']} Adam steps of "
        f"{settings['batch_size']} rows at lr={settings['lr']}, AuxK loss for dead features, seed {recipe.seed}. Took "
        f"{training['train_seconds']} s on {training['threads']} CPU thread(s) (torch {training['torch']}). Last logged: explained variance {last['explained_variance']:.3f}, L0 {last['l0']:.1f} "
        f"(training rows, {words['bos']}).", "",
        "## Results",
        f"A value `mean ± std` is over {len(figures[0].values)} evaluation seeds ({SAE_CARD_SEEDS[0]}-{SAE_CARD_SEEDS[-1]}), "
        f"each a fresh batch of {EVAL_SEQUENCES} sequences from {recipe.model}'s training sampler "
        f"({words['reads']}). Explained variance, L0 and the mean for the ablation are over {words['positions']}; the losses are "
        f"{words['loss']}. Print them with `python analyses/sae_features.py`; regenerate this card with "
        f"`python -m interp_transformer.sae.embedded_recipes {recipe.name} --card-only`.", "",
        results_table(figures), "",
    ]
    if recipe.notes:
        text += [recipe.notes, ""]
    if recipe.feature_labels:
        by_figure = {figure.name: figure for figure in figures}
        j = {label: by_figure[f"{label}_feature_youden_j"].mean for label in recipe.feature_labels}
        best = max(j, key=j.get)
        text += [
            "## Features with a demonstrated meaning",
            f"The features were found, not picked: on {SEARCH_SEQUENCES} fresh sequences (seed {SEARCH_SEED}) every feature "
            "was scored by Youden's J (its firing rate on the labelled positions minus its firing rate elsewhere) for each "
            "labelling below, and the best kept. The `<label>_feature_*` rows above measure it on the evaluation seeds; "
            "`found_again` is the fraction of them on which the same search picks it again.", "",
        ]
        for label in sorted(recipe.feature_labels, key=j.get, reverse=True):
            def value(stat: str) -> str:
                return by_figure[f"{label}_feature_{stat}"].formatted()
            text.append(
                f"- `{label}` ({FEATURE_LABELS[label][1]}): feature {training['features'][label]}, precision {value('precision')}, "
                f"recall {value('recall')}, J {value('youden_j')}; mean activation {value('mean_in')} there vs {value('mean_out')} "
                f"elsewhere; correlation with the last layer's attention to `<bos>` {value('bos_attention_corr')}."
            )
        off_label = by_figure[f"{best}_feature_recall"].mean - by_figure[f"{best}_feature_youden_j"].mean
        text += ["", f"The clearest is `{best}`. {_reading(best, off_label)}", ""]
    text += ["## Retrain", f"    python -m interp_transformer.sae.embedded_recipes {recipe.name}", ""]
    return "\n".join(text)


def _reading(label: str, off_label: float) -> str:
    """What the clearest feature tells about the model (the mechanism the labels probe)."""
    if label == "no_repeated_pair":
        return ("This feature fires where induction has nothing to copy: its activation tracks the layer-1 heads' attention "
                "to `<bos>`, where an induction head rests when the current token has no earlier match (correlation above), "
                f"and it fires on only {off_label:.0%} of the tokens after a repeated token (recall - J). The best feature "
                "firing inside repeats separates them much less well (its J above).")
    return "This feature fires on the token after a repeated token: where an induction head has found an earlier match to copy from."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train (or re-measure) a shipped dictionary and write its folder and card.")
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--card-only", action="store_true", help="keep the weights; re-measure and rewrite SAE_CARD.md")
    parser.add_argument("--out", type=Path, default=None, help="write here instead of the package's toy/saes/<name>")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's steps (for a quick trial)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the shipped runs used 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = RECIPES[args.name] if args.steps is None else replace(RECIPES[args.name], steps=args.steps)
    folder = SAES_DIR / recipe.name if args.out is None else args.out
    if not args.card_only:
        sae, training = train_dictionary(recipe)
        write_dictionary(recipe, sae, training, folder)
    training = json.loads((folder / "training.json").read_text())
    figures = figures_for(recipe.name, folder=folder)
    print(results_table(figures))
    words = evaluation_words(HookedTransformer.from_pretrained(recipe.model).eval())
    (folder / "SAE_CARD.md").write_text(sae_card(recipe, training, figures, words))
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
