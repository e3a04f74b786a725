"""The ``interp-transformer demo`` job: a one-page report on a model, written to ``DIR/index.html`` plus CSV tables.

Runs on the embedded induction model by default: attention patterns of every layer,
head-detector scores, a residual-stream patching sweep, composition scores between layers,
OV copying scores and a logit lens, each with a paragraph on what to look for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from tqdm import tqdm

from interp_transformer import vis
from interp_transformer.circuits import all_composition_scores, copying_scores, detect_heads, head_scores_frame
from interp_transformer.model import HookedTransformer
from interp_transformer.patching import LogitDiff, get_act_patch_resid_pre, normalized_between

DEFAULT_MODEL = "attn-only-2l-induction"
DEFAULT_PROMPT = "river castle garden morning silver horse bridge forest king music " * 2


def run_demo(model_name: str | None, prompt: str | None, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model = HookedTransformer.from_pretrained(model_name or DEFAULT_MODEL)
    model.eval()
    prompt = prompt or DEFAULT_PROMPT
    tokens = model.to_tokens(prompt)
    str_tokens = model.to_str_tokens(tokens[0])
    sections: list[Callable[[], list[vis.View]]] = [
        lambda: attention_section(model, tokens),
        lambda: detector_section(model, out),
        lambda: patching_section(model, tokens, str_tokens, out),
        lambda: composition_section(model, out),
        lambda: copying_section(model, out),
        lambda: logit_lens_section(model, tokens, str_tokens, out),
    ]
    views: list[vis.View] = []
    with torch.no_grad():
        for section in tqdm(sections, desc="demo report", unit="section"):
            views.extend(section())
    page = vis.combine(*views, title=f"interp_transformer report: {model.cfg.model_name}")
    path = page.save(out / "index.html")
    print(f"wrote {path} and {len(list(out.glob('*.csv')))} CSV tables in {out}")
    return path


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


def detector_section(model: HookedTransformer, out: Path) -> list[vis.View]:
    scores = detect_heads(model)
    head_scores_frame(scores).to_csv(out / "head_detector_scores.csv", index=False)
    views = []
    for kind in ("previous_token", "induction", "duplicate_token", "first_token"):
        view = vis.layer_head_heatmap(scores[kind], title=f"Head detector: {kind.replace('_', ' ')}", value_name="score")
        views.append(_explained(
            view,
            f"Mean attention each head pays to the position a {kind.replace('_', ' ')} head would attend to, on "
            "repeated random token sequences (1.0 = a perfect head). Heads near 1 are candidates for that role; "
            "in the induction model, a previous-token head in layer 0 and an induction head in layer 1 should stand out.",
        ))
    return views


def patching_section(model: HookedTransformer, tokens: torch.Tensor, str_tokens: list[str], out: Path) -> list[vis.View]:
    clean, corrupted, answer, wrong = induction_patching_pair(model, tokens)
    clean_logits, clean_cache = model.run_with_cache(clean)
    metric = normalized_between(LogitDiff(answer, wrong), clean_logits, model(corrupted))
    result = get_act_patch_resid_pre(model, corrupted, clean_cache, metric, progress=False)
    result.to_dataframe().to_csv(out / "patching_resid_pre.csv", index=False)
    view = vis.layer_pos_heatmap(result.values, model.to_str_tokens(clean[0]), title="Activation patching: resid_pre",
                                 value_name="normalised logit diff")
    return [_explained(
        view,
        "The last token's prediction on a corrupted prompt (the token after the first copy of the last token is "
        "replaced) is restored by patching in the clean residual stream at one layer and position at a time "
        "(1 = fully restored, 0 = no effect). What decides the answer lives where the value is high: at the "
        "replaced token's position before the induction layer, at the final position after it.",
    )]


def induction_patching_pair(model: HookedTransformer, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Clean prompt, a corrupted copy with one token of the first half changed, the clean answer and the corrupted one."""
    clean = tokens[:, :-1]
    pos = clean.shape[1] - 1
    period = (clean.shape[1] - 1) // 2
    source = pos - period  # the earlier copy of the last token
    corrupted = clean.clone()
    corrupted[0, source + 1] = (clean[0, source + 1] + 1 - 3) % (model.cfg.d_vocab - 3) + 3  # a different ordinary token
    return clean, corrupted, int(clean[0, source + 1]), int(corrupted[0, source + 1])


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
            f"How much each later head's {mode} input reads what each earlier head writes (Frobenius-norm ratio of "
            "Elhage et al. 2021; random matrices of these shapes score about 1/sqrt(d_model)). An induction circuit "
            "shows up as a high K-composition score from the previous-token head into the induction head.",
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
