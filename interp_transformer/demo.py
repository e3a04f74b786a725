"""The ``interp-transformer demo`` job: run a model on a prompt and write what it attends to and predicts.

A small first version of the report: per-head previous-token and induction scores on a
repeated prompt, and the model's top predictions at each position, as CSV files and one
self-contained HTML page.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import torch

from interp_transformer.model import HookedTransformer

DEFAULT_MODEL = "attn-only-2l-induction"
DEFAULT_PROMPT = "river castle garden morning silver horse bridge forest king music " * 2


def run_demo(model_name: str | None, prompt: str | None, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    print(f"loading {model_name or DEFAULT_MODEL} ...", flush=True)
    model = HookedTransformer.from_pretrained(model_name or DEFAULT_MODEL)
    prompt = prompt or DEFAULT_PROMPT
    tokens = model.to_tokens(prompt)
    patterns: dict[int, torch.Tensor] = {}

    def keep(pattern: torch.Tensor, hook) -> None:
        patterns[hook.layer()] = pattern[0]

    print(f"running on {tokens.shape[1]} tokens ...", flush=True)
    with torch.no_grad(), model.hooks(fwd_hooks=[(lambda name: name.endswith("hook_pattern"), keep)]):
        logits = model(tokens)[0]
    str_tokens = model.to_str_tokens(tokens[0])
    heads = head_table(patterns, tokens[0])
    predictions = prediction_table(model, logits, str_tokens)
    heads.to_csv(out / "head_scores.csv", index=False)
    predictions.to_csv(out / "predictions.csv", index=False)
    page = out / "index.html"
    page.write_text(render_page(prompt, heads, predictions), encoding="utf-8")
    print(f"wrote {page}, {out / 'head_scores.csv'} and {out / 'predictions.csv'}")
    return page


def head_table(patterns: dict[int, torch.Tensor], tokens: torch.Tensor) -> pd.DataFrame:
    """Per head: mean attention to the previous token, and to the token after an earlier copy of the current one."""
    rows = []
    query = torch.arange(1, len(tokens))
    earlier_copy = (tokens[None, :] == tokens[:, None]).tril(-1)  # [query key]: key holds the same token earlier
    induction_target = torch.zeros_like(earlier_copy)
    induction_target[:, 1:] = earlier_copy[:, :-1]  # the position right after that earlier copy
    has_target = induction_target.any(-1)
    for layer, pattern in sorted(patterns.items()):
        for head in range(pattern.shape[0]):
            prev = pattern[head, query, query - 1].mean().item()
            induction = (pattern[head] * induction_target).sum(-1)[has_target].mean().item() if has_target.any() else float("nan")
            rows.append({"layer": layer, "head": head, "prev_token_score": prev, "induction_score": induction})
    return pd.DataFrame(rows)


def prediction_table(model: HookedTransformer, logits: torch.Tensor, str_tokens: list[str], k: int = 3) -> pd.DataFrame:
    probs = logits.softmax(-1)
    top = probs.topk(k, dim=-1)
    rows = []
    for pos, token in enumerate(str_tokens):
        row = {"position": pos, "token": token}
        for rank in range(k):
            row[f"top{rank + 1}"] = model.to_string([int(top.indices[pos, rank])])
            row[f"p{rank + 1}"] = round(top.values[pos, rank].item(), 4)
        rows.append(row)
    return pd.DataFrame(rows)


def render_page(prompt: str, heads: pd.DataFrame, predictions: pd.DataFrame) -> str:
    # to_html escapes cell text by default; tokens come from a tokenizer and must never become markup.
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>interp_transformer demo</title></head>
<body>
<h1>interp_transformer demo</h1>
<p>Prompt: <code>{html.escape(prompt)}</code></p>
<h2>Head scores</h2>
<p>Previous-token heads attend from each token to the one before it; induction heads attend to the token
that followed an earlier copy of the current token. Both scores are mean attention weights (0 to 1).</p>
{heads.to_html(index=False, float_format=lambda v: f"{v:.3f}", escape=True)}
<h2>Top predictions</h2>
<p>In the repeated half of the prompt, a model with induction heads predicts the next token with high probability.</p>
{predictions.to_html(index=False, escape=True)}
</body></html>
"""
