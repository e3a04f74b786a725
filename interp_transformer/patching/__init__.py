"""Activation patching, path patching and attribution patching, with their metrics and tidy results.

Activation patching (``experiments``: TransformerLens's ``get_act_patch_*`` by name; ``sweep``: any
site at any granularity or any list of locations) packs many patch locations into one forward.
Path patching (``path``) follows Wang et al. (2022); attribution patching (``attribution``) Nanda
(2023). ``metrics`` has logit difference, answer log-probability and probability, loss and the
normalised metric; ``results.PatchingResult`` converts to a DataFrame or a heatmap in one call.
"""

from interp_transformer.patching.attribution import (
    AttributionPatching as AttributionPatching,
    attribution_patching as attribution_patching,
)
from interp_transformer.patching.budget import DEFAULT_MEMORY_BUDGET as DEFAULT_MEMORY_BUDGET
from interp_transformer.patching.experiments import (
    generic_activation_patch as generic_activation_patch,
    get_act_patch_attn_head_all_pos_every as get_act_patch_attn_head_all_pos_every,
    get_act_patch_attn_head_by_pos_every as get_act_patch_attn_head_by_pos_every,
    get_act_patch_attn_head_k_all_pos as get_act_patch_attn_head_k_all_pos,
    get_act_patch_attn_head_k_by_pos as get_act_patch_attn_head_k_by_pos,
    get_act_patch_attn_head_out_all_pos as get_act_patch_attn_head_out_all_pos,
    get_act_patch_attn_head_out_by_pos as get_act_patch_attn_head_out_by_pos,
    get_act_patch_attn_head_pattern_all_pos as get_act_patch_attn_head_pattern_all_pos,
    get_act_patch_attn_head_pattern_by_pos as get_act_patch_attn_head_pattern_by_pos,
    get_act_patch_attn_head_pattern_dest_src_pos as get_act_patch_attn_head_pattern_dest_src_pos,
    get_act_patch_attn_head_q_all_pos as get_act_patch_attn_head_q_all_pos,
    get_act_patch_attn_head_q_by_pos as get_act_patch_attn_head_q_by_pos,
    get_act_patch_attn_head_v_all_pos as get_act_patch_attn_head_v_all_pos,
    get_act_patch_attn_head_v_by_pos as get_act_patch_attn_head_v_by_pos,
    get_act_patch_attn_out as get_act_patch_attn_out,
    get_act_patch_block_every as get_act_patch_block_every,
    get_act_patch_mlp_out as get_act_patch_mlp_out,
    get_act_patch_resid_mid as get_act_patch_resid_mid,
    get_act_patch_resid_post as get_act_patch_resid_post,
    get_act_patch_resid_pre as get_act_patch_resid_pre,
    make_df_from_ranges as make_df_from_ranges,
)
from interp_transformer.patching.metrics import (
    AnswerLogProb as AnswerLogProb,
    AnswerMetric as AnswerMetric,
    AnswerProb as AnswerProb,
    LogitDiff as LogitDiff,
    NextTokenLoss as NextTokenLoss,
    NormalizedMetric as NormalizedMetric,
    normalized as normalized,
    normalized_between as normalized_between,
)
from interp_transformer.patching.path import (
    FINAL_RESIDUAL as FINAL_RESIDUAL,
    Receiver as Receiver,
    Sender as Sender,
    every_component as every_component,
    every_head as every_head,
    path_patch as path_patch,
    path_patch_heads as path_patch_heads,
)
from interp_transformer.patching.results import PatchingResult as PatchingResult
from interp_transformer.patching.sites import (
    Patch as Patch,
    PatchLocation as PatchLocation,
    available_sites as available_sites,
    site_grid as site_grid,
)
from interp_transformer.patching.sweep import patch_locations as patch_locations, patch_site as patch_site
