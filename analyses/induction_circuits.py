"""QK/OV circuit analysis of the embedded model's induction circuit, from the weights alone.

- OV: does the induction head copy? Its full OV circuit ``W_E W_V W_O W_U`` should map each
  token to itself: the copying score (eigenvalues) and how often a token's own logit is the
  top one in its row.
  Every layer-1 head's copying score is printed too: the embedded model has four induction heads.
- QK: does the previous-token head attend one position back? Its positional QK circuit
  ``W_pos W_Q W_K^T W_pos^T`` should peak just below the diagonal (checked over the first
  --positions positions). This is the positional part alone, without LayerNorm or the token part
  of the query and key, so it is a rougher picture than the head's measured attention.
Writes CSV tables to --out and prints the headline numbers.

    python analyses/induction_circuits.py --out out/induction_circuits
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from interp_transformer import HookedTransformer
from interp_transformer.circuits import copying_scores, detect_heads, ov_unembed_circuit, positional_qk_circuit


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="attn-only-2l-induction")
    parser.add_argument("--out", type=Path, default=Path("out/induction_circuits"))
    parser.add_argument("--positions", type=int, default=41, help="query positions to check in the positional QK circuit")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    model = HookedTransformer.from_pretrained(args.model)
    last = model.cfg.n_layers - 1
    scores = detect_heads(model)
    prev_head = int(scores["previous_token"][0].argmax())
    ind_head = int(scores["induction"][last].argmax())

    copying = copying_scores(model)
    pd.DataFrame(copying.numpy(), columns=[f"head {h}" for h in range(model.cfg.n_heads)]).rename_axis("layer").to_csv(
        args.out / "copying_scores.csv"
    )
    with torch.no_grad():
        ov = ov_unembed_circuit(model, last, ind_head).AB  # [d_vocab d_vocab]: source token -> output logits
        ordinary = torch.arange(3, model.cfg.d_vocab)  # skip <bos> <pad> <unk>
        top_is_self = (ov[ordinary][:, ordinary].argmax(-1) == torch.arange(len(ordinary))).float().mean().item()
        qk = positional_qk_circuit(model, 0, prev_head).AB  # [query_pos key_pos]
        queries = torch.arange(1, min(args.positions, model.cfg.n_ctx))
        causal = torch.ones(model.cfg.n_ctx, model.cfg.n_ctx, dtype=torch.bool).tril()
        best_key = qk.masked_fill(~causal, float("-inf"))[queries].argmax(-1)
        looks_one_back = (best_key == queries - 1).float().mean().item()
    pd.DataFrame({"query_pos": queries.numpy(), "argmax_key_pos": best_key.numpy()}).to_csv(
        args.out / "prev_token_positional_qk.csv", index=False
    )
    headline = {
        "induction_head": f"L{last}H{ind_head}",
        "induction_head_copying_score": copying[last, ind_head].item(),
        "induction_head_ov_top1_is_same_token": top_is_self,
        f"copying_score_every_layer_{last}_head": ", ".join(
            f"L{last}H{h} {v:.2f}" for h, v in enumerate(copying[last].tolist())),
        "previous_token_head": f"L0H{prev_head}",
        f"previous_token_head_qk_argmax_is_previous_position_first_{len(queries) + 1}": looks_one_back,
        "mean_copying_score_all_heads": copying.mean().item(),
    }
    for key, value in headline.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    return headline


if __name__ == "__main__":
    main()
