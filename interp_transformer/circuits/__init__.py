"""Circuit analyses in the framework of Elhage et al. (2021): factored matrices, QK/OV and full circuits,
composition scores, copying scores, attention-score decomposition and head detectors.

Free functions of a model (and, for activation-based ones, tokens or a cache); the model knows
nothing about them. ``model.QK`` and ``model.OV`` (``FactoredMatrix [layer head_index d_model d_model]``)
are the stored weights; the functions here fold each LayerNorm in by default (``layer_norm_folding``).
"""

from interp_transformer.circuits.composition import (
    all_composition_scores as all_composition_scores,
    composition_score as composition_score,
    pairwise_composition_scores as pairwise_composition_scores,
    random_composition_baseline as random_composition_baseline,
)
from interp_transformer.circuits.copying import (
    copying_score_from_eigenvalues as copying_score_from_eigenvalues,
    copying_scores as copying_scores,
    ov_unembed_eigenvalues as ov_unembed_eigenvalues,
)
from interp_transformer.circuits.detection_targets import (
    duplicate_token_target as duplicate_token_target,
    first_token_target as first_token_target,
    induction_target as induction_target,
    previous_token_target as previous_token_target,
)
from interp_transformer.factored_matrix import FactoredMatrix as FactoredMatrix
from interp_transformer.circuits.full_circuits import (
    ov_unembed_circuit as ov_unembed_circuit,
    positional_qk_circuit as positional_qk_circuit,
    token_qk_circuit as token_qk_circuit,
)
from interp_transformer.circuits.head_circuits import ov_circuits as ov_circuits, qk_circuits as qk_circuits
from interp_transformer.circuits.head_detectors import (
    attention_patterns as attention_patterns,
    detect_heads as detect_heads,
    duplicate_token_scores as duplicate_token_scores,
    first_token_scores as first_token_scores,
    head_scores_frame as head_scores_frame,
    induction_scores as induction_scores,
    pattern_scores as pattern_scores,
    previous_token_scores as previous_token_scores,
    repeated_tokens_for as repeated_tokens_for,
)
from interp_transformer.circuits.head_scoring import score_heads as score_heads
from interp_transformer.circuits.heatmap import detector_heatmap as detector_heatmap
from interp_transformer.circuits.score_decomposition import (
    AttentionScoreDecomposition as AttentionScoreDecomposition,
    decompose_attention_scores as decompose_attention_scores,
)


def __getattr__(name: str):
    # HTMLFigure is vis.Page now; resolved on use so that importing circuits does not load vis (and plotly).
    if name == "HTMLFigure":
        from interp_transformer.circuits import heatmap

        return heatmap.HTMLFigure
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
