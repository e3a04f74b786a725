"""The ``interp-transformer demo`` job: a one-page report on a model, written to ``DIR/index.html`` plus CSV tables.

Runs on the embedded induction model by default: attention patterns of every layer,
head-detector scores, a residual-stream patching sweep, composition scores between layers,
OV copying scores and a logit lens, each with a paragraph on what to look for.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import pandas as pd
import torch
from tqdm import tqdm

from interp_transformer import vis
from interp_transformer.circuits import all_composition_scores, copying_scores, detect_heads, head_scores_frame
from interp_transformer.model import HookedTransformer
from interp_transformer.patching import LogitDiff, get_act_patch_resid_pre, normalized

DEFAULT_MODEL = "attn-only-2l-induction"
DEFAULT_WORDS = "river castle garden morning silver horse bridge forest king music".split()
DEFAULT_PROMPT = " ".join(DEFAULT_WORDS * 2) + " "


def run_demo(model_name: str | None, prompt: str | None, out: Path) -> Path:
    """Write the report for ``model_name`` on ``prompt`` to ``out``.

    Bad settings (an unknown model, a prompt with nothing to patch) fail before ``out`` is created;
    a failure while writing removes ``out`` again if this run created it.
    """
    _check_output_folder(out)
    model = HookedTransformer.from_pretrained(model_name or DEFAULT_MODEL)
    model.eval()
    tokens = prompt_tokens(model, prompt)
    str_tokens = model.to_str_tokens(tokens[0])
    pair = induction_patching_pair(model, tokens)
    sections: list[Callable[[], list[vis.View]]] = [
        lambda: attention_section(model, tokens),
        lambda: detector_section(model, out),
        lambda: patching_section(model, pair, out),
        lambda: composition_section(model, out),
        lambda: copying_section(model, out),
        lambda: logit_lens_section(model, tokens, str_tokens, out),
    ]
    views: list[vis.View] = []
    with _claimed_folder(out), torch.no_grad():
        for section in tqdm(sections, desc="demo report", unit="section"):
            views.extend(section())
        page = vis.combine(*views, title=f"interp_transformer report: {model.cfg.model_name}")
        path = page.save(out / "index.html")
    print(f"wrote {path} and {len(list(out.glob('*.csv')))} CSV tables in {out}")
    return path


def _check_output_folder(out: Path) -> None:
    """Refuse an ``out`` that could never become a folder, before the model is loaded."""
    blocking = next((path for path in [out, *out.parents] if path.exists() and not path.is_dir()), None)
    if blocking is not None:
        raise ValueError(f"--out {str(out)!r}: {str(blocking)!r} is a file, not a folder; pass a folder path (it is created if missing)")


@contextmanager
def _claimed_folder(out: Path) -> Iterator[None]:
    """Create ``out`` (and missing parents); if the body fails, remove what was created, never a folder that existed."""
    created = next((folder for folder in reversed([out, *out.parents]) if not folder.exists()), None)
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


def prompt_tokens(model: HookedTransformer, prompt: str | None) -> torch.Tensor:
    """The prompt's tokens, never cut to the context; the default repeat drops words until it fits ``n_ctx``."""
    if prompt is not None:
        tokens = model.to_tokens(prompt, truncate=False)
        if tokens.shape[1] > model.cfg.n_ctx:
            raise ValueError(
                f"--prompt is {tokens.shape[1]} tokens long, longer than the model's context n_ctx={model.cfg.n_ctx}; "
                "pass a shorter --prompt"
            )
        return tokens
    for n_words in range(len(DEFAULT_WORDS), 1, -1):
        tokens = model.to_tokens(" ".join(DEFAULT_WORDS[:n_words] * 2) + " ", truncate=False)
        if tokens.shape[1] <= model.cfg.n_ctx:
            return tokens
    raise ValueError(f"the model's context n_ctx={model.cfg.n_ctx} is too short for the default prompt; pass a short --prompt")


def _explained(view: vis.View, paragraph: str) -> vis.View:
    view.notes = (paragraph,)
    return view


def attention_section(model: HookedTransformer, tokens: torch.Tensor) -> list[vis.View]:
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    str_tokens = model.to_str_tokens(tokens[0])
    return [
        _explained(
            vis.attention_patterns(cache, str_tokens, layer=layer, title=f"Attention patterns, layer {layer}"),
            "Each small square is one head: row = the token attending (query), column = the token attended to (key). "
            "Hover a head to enlarge it. On a repeated prompt, look for a head whose bright cells sit just left of "
            "the diagonal (a previous-token head) and, in a later layer, a head whose bright stripe in the second "
            "copy is offset by the length of the repeat (an induction head).",
        )
        for layer in range(model.cfg.n_layers)
    ]


DETECTOR_TARGETS = {
    "previous_token": "the token just before the query (a previous-token head)",
    "induction": "the token after the earlier copy of the query's token (an induction head)",
    "duplicate_token": "the earlier copy of the query's own token (a duplicate-token head)",
    "first_token": "the first position (a head that parks its attention there when nothing else fits)",
}


def detector_section(model: HookedTransformer, out: Path) -> list[vis.View]:
    scores = detect_heads(model)
    head_scores_frame(scores).to_csv(out / "head_detector_scores.csv", index=False)
    views = []
    for kind, target in DETECTOR_TARGETS.items():
        # One fixed 0..1 scale for all four, so the colours compare across detectors and 1.0 looks like 1.0.
        view = vis.layer_head_heatmap(scores[kind], title=f"Head detector: {kind.replace('_', ' ')}", value_name="score",
                                      zmin=0.0, zmax=1.0)
        views.append(_explained(
            view,
            f"Mean attention each head pays to {target}, on repeated random token sequences; the colour scale runs "
            "from 0 to 1 in every detector (1.0 = a perfect head). Heads near 1 are candidates for that role; in the "
            "induction model, a previous-token head in layer 0 and an induction head in layer 1 should stand out.",
        ))
    return views


class InductionPair(NamedTuple):
    """A clean prompt, a copy with one token replaced, and the two answers their logit difference compares."""

    clean: torch.Tensor  # [1 pos]
    corrupted: torch.Tensor  # [1 pos]
    answer: int  # what an induction model predicts after the clean prompt
    wrong: int  # the token that replaced the answer's earlier copy

    @property
    def position(self) -> int:
        """The position whose token was replaced."""
        return int((self.clean[0] != self.corrupted[0]).nonzero()[0, 0])


def induction_patching_pair(model: HookedTransformer, tokens: torch.Tensor) -> InductionPair:
    """The prompt without its last token (clean) and a copy with the answer's earlier copy replaced (corrupted).

    The clean prompt ends on a token seen before; an induction model predicts the token that followed its
    latest earlier occurrence. Replacing that token, at its own position, makes the replacement the induction answer.
    """
    clean = tokens[:, :-1]
    last = clean.shape[1] - 1
    earlier = [pos for pos in range(last - 1) if clean[0, pos] == clean[0, last]]
    if not earlier:
        shown = model.to_str_tokens(tokens[0])
        raise ValueError(
            f"the patching section needs a prompt whose next-to-last token appeared earlier in it (an induction pair); "
            f"the tokens {shown[-40:]} have none: pass a --prompt that repeats a sequence (e.g. a sentence written twice), "
            "or leave --prompt out for the default"
        )
    position = earlier[-1] + 1
    answer = int(clean[0, position])
    corrupted = clean.clone()
    corrupted[0, position] = _replacement_token(model, clean, answer)
    return InductionPair(clean, corrupted, answer, int(corrupted[0, position]))


def _replacement_token(model: HookedTransformer, clean: torch.Tensor, answer: int) -> int:
    """The next ordinary token id after ``answer`` that the prompt does not contain (so it adds no second match)."""
    tokenizer = model.tokenizer
    n_ids = min(model.cfg.d_vocab, len(tokenizer)) if tokenizer is not None else model.cfg.d_vocab
    excluded = set(clean[0].tolist()) | set(tokenizer.all_special_ids if tokenizer is not None else ())
    for offset in range(1, n_ids):
        candidate = (answer + offset) % n_ids
        if candidate not in excluded:
            return candidate
    raise ValueError(f"the prompt uses every one of the model's {n_ids} token ids; pass a shorter --prompt")


def patching_section(model: HookedTransformer, pair: InductionPair, out: Path) -> list[vis.View]:
    clean_logits, clean_cache = model.run_with_cache(pair.clean)
    logit_diff = LogitDiff(pair.answer, pair.wrong)
    clean_diff, corrupted_diff = float(logit_diff(clean_logits)), float(logit_diff(model(pair.corrupted)))
    metric = normalized(logit_diff, clean_diff, corrupted_diff)
    result = get_act_patch_resid_pre(model, pair.corrupted, clean_cache, metric, progress=False)
    result.to_dataframe().to_csv(out / "patching_resid_pre.csv", index=False)
    str_tokens = model.to_str_tokens(pair.clean[0])
    view = vis.layer_pos_heatmap(result.values, str_tokens, title="Activation patching: resid_pre",
                                 value_name="normalised logit diff")
    position, last = pair.position, len(str_tokens) - 1
    answer, wrong = str_tokens[position], model.to_str_tokens([pair.wrong])[0]
    caption = (
        f"The clean prompt (the prompt without its last token) ends on '{str_tokens[last]}', seen before at position "
        f"{position - 1}, so an induction model predicts '{answer}', the token that followed it. In the corrupted prompt "
        f"position {position} ('{answer}') is replaced by '{wrong}'. Logit diff '{answer}' minus '{wrong}' at the last "
        f"position: clean {clean_diff:.2f}, corrupted {corrupted_diff:.2f}. Each cell patches the clean residual stream "
        "entering one layer (resid_pre) at one position into the corrupted run (1 = the clean logit diff is restored, "
        "0 = no effect). A resid_pre row lies before that layer's heads, so the answer shows up at the final position "
        "only in rows after the induction head's layer; when the induction head is in the last layer, as in the "
        "2-layer induction model, there are none: expect about 1 at the replaced position in every row and about 0 "
        "everywhere else."
    )
    if abs(clean_diff - corrupted_diff) < 1:
        caption += (" The two logit diffs are less than 1 apart, so this model barely uses the earlier copy here and the "
                    "normalised values mostly magnify noise.")
    return [_explained(view, caption)]


COMPOSITION_MEANING = {
    "Q": "Q-composition: how much each later head's queries (W_Q) read what each earlier head writes, i.e. the "
         "earlier head changes what the later head looks for.",
    "K": "K-composition: how much each later head's keys (W_K) read what each earlier head writes, i.e. the earlier "
         "head changes which positions the later head finds. The induction circuit is K-composition: the "
         "previous-token head writes 'my previous token was X' into each position's key, and the induction head's "
         "query looks for it.",
    "V": "V-composition: how much each later head's values (W_V) read what each earlier head writes, i.e. the later "
         "head moves on what the earlier head moved, the two OV circuits chaining into a 'virtual head'.",
}


def composition_section(model: HookedTransformer, out: Path) -> list[vis.View]:
    views, rows = [], []
    for mode in ("Q", "K", "V"):
        scores = all_composition_scores(model, mode)  # [layer head_index layer head_index]
        n_layers, n_heads = scores.shape[:2]
        for l1 in range(n_layers):
            for h1 in range(n_heads):
                for l2 in range(l1 + 1, n_layers):
                    for h2 in range(n_heads):
                        rows.append({"mode": mode, "writer": f"L{l1}H{h1}", "reader": f"L{l2}H{h2}", "score": scores[l1, h1, l2, h2].item()})
        flat = scores.flatten(0, 1).flatten(1, 2)  # [(layer head) (layer head)]
        labels = [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]
        view = vis.heatmap(flat, x_labels=labels, y_labels=labels, x_title="reading head", y_title="writing head",
                           title=f"{mode}-composition scores", value_name="score")
        views.append(_explained(
            view,
            f"{COMPOSITION_MEANING[mode]} Score: the Frobenius-norm ratio of Elhage et al. 2021; random matrices of "
            "these shapes score about 1/sqrt(d_model), so only scores well above that suggest composition.",
        ))
    pd.DataFrame(rows).to_csv(out / "composition_scores.csv", index=False)
    return views


def copying_section(model: HookedTransformer, out: Path) -> list[vis.View]:
    scores = copying_scores(model)
    pd.DataFrame(scores.numpy(), columns=[f"head {h}" for h in range(model.cfg.n_heads)]).rename_axis("layer").to_csv(out / "ov_copying_scores.csv")
    view = vis.layer_head_heatmap(scores, title="OV copying scores", value_name="copying score")
    return [_explained(
        view,
        "For each head, the real part of the eigenvalues of its full OV circuit W_E W_V W_O W_U relative to their "
        "size (1 = the head writes the logit of the very token it attends to). Induction heads copy, so they "
        "should score near 1.",
    )]


def logit_lens_section(model: HookedTransformer, tokens: torch.Tensor, str_tokens: list[str], out: Path) -> list[vis.View]:
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: "resid" in name or "ln_final" in name)
    lens = cache.logit_lens()
    probs = lens.logits[:, 0].float().softmax(-1)  # [stream pos d_vocab]
    next_tokens = tokens[0, 1:]
    correct = probs[:, :-1].gather(-1, next_tokens[None, :, None].expand(probs.shape[0], -1, 1))[..., 0]
    frame = pd.DataFrame(correct.numpy(), index=lens.labels, columns=[f"{i}:{t}" for i, t in enumerate(str_tokens[:-1])])
    frame.to_csv(out / "logit_lens.csv")
    view = vis.heatmap(correct, x_labels=str_tokens[:-1], y_labels=lens.labels, x_title="pos", y_title="residual stream",
                       title="Logit lens: probability of the true next token", value_name="probability", zmin=0.0, zmax=1.0)
    return [_explained(
        view,
        "Each row unembeds the residual stream after a layer (with the final LayerNorm applied) and shows the "
        "probability it gives the token that actually comes next. In the repeated half, the probability should "
        "jump only after the layer that holds the induction head.",
    )]
