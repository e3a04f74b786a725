"""Pictures of attention and activations for notebooks and self-contained HTML files, offline and injection-safe.

Views (each displays in Jupyter and has ``.save("file.html")``)::

    from interp_transformer import vis
    vis.attention_patterns(cache, tokens, layer=1)        # all heads of a layer as a grid
    vis.attention_heads(model, prompt="...", layer=1)     # head thumbnails + zoomed head
    vis.attention_pattern(cache, tokens, layer=1, head=4) # one head, labelled axes
    vis.colored_tokens(tokens, values)                    # any per-token scalar on the text
    vis.text_neuron_activations(tokens, acts)             # acts [pos layer neuron]
    vis.topk_tokens(token_lists, acts_list, k=10)         # acts [layer pos neuron] per text
    vis.layer_pos_heatmap(results, tokens)                # [layer pos]
    vis.layer_head_heatmap(scores)                        # [layer head_index]; zmin=0, zmax=1 fixes the scale
    vis.pos_pos_heatmap(pattern[0, 3], tokens)            # [query_pos key_pos]
    vis.feature_dashboard(found, feature, logits=effects, vocab=model)  # one SAE feature: contexts, logits, histogram
    vis.combine(view_a, view_b, title="Layer 1").save("report.html")

Unlike calling circuitsvis directly: nothing touches the network (the circuitsvis and plotly
bundles are read from the installed packages and inlined once per page; saved pages carry a
Content-Security-Policy that forbids any fetch); token text is escaped for each place it lands,
so ``</script>`` or ``<s>`` tokens display as written; position labels (attention axes and token
buttons, heatmap ticks) are cut to 24 characters with ``…`` and show whitespace-only tokens as
``␣`` / ``\\n`` / ``\\t``, with the exact token in the tooltip or hover; values are rounded (attention to
thousandths, activations to 4 significant digits); a ``ViewSizeWarning`` fires past
``max_bytes`` of data (5 MB by default) and says how to shrink the view.

File sizes: a saved page carries the bundles its views need, once: circuitsvis 1.30 MB,
plotly 4.82 MB, the runtime 4 KB; a page with one attention view is ~1.3 MB plus its data, one
with a heatmap ~4.8 MB plus its data. The data per view (``view.data_bytes``; measured and kept
true by ``tests/vis/test_vis_sizes.py``):

=====================================================  =========================================
view                                                   data
=====================================================  =========================================
attention_patterns / attention_heads, 12 heads x 64    120 KB (about 2.2 bytes per value)
same, 12 heads x 128 positions                         440 KB (``downsample=2``: 125 KB)
same, 12 heads x 256 / 512 positions                   1.7 MB / 6.4 MB (over the limit: warns)
attention_pattern, one head x 128 positions            38 KB
colored_tokens, 100 tokens                             2.7 KB
text_neuron_activations, 100 tokens x 2 x 64 neurons   94 KB (about 7 bytes per value)
topk_tokens, 2 layers x 100 tokens x 64 neurons, k=10  26 KB
layer_head_heatmap 12 x 12                             10 KB
layer_pos_heatmap 12 x 100 (token labels)              36 KB
pos_pos_heatmap 100 x 100 (token labels in hover)      280 KB; past 20,000 cells hover shows positions only
feature_dashboard, 10 contexts x 12 tokens, 10 logits  17 KB (static HTML and SVG, no bundle)
=====================================================  =========================================

A notebook output holds its own copy of the bundles (a cell cannot rely on an earlier cell's
script having run), so prefer ``combine`` for many views in one cell.
"""

from interp_transformer.vis.attention import (
    attention_heads as attention_heads,
)
from interp_transformer.vis.attention import (
    attention_pattern as attention_pattern,
)
from interp_transformer.vis.attention import (
    attention_patterns as attention_patterns,
)
from interp_transformer.vis.attention_data import (
    AttentionData as AttentionData,
)
from interp_transformer.vis.attention_data import (
    PatternWarning as PatternWarning,
)
from interp_transformer.vis.attention_data import (
    downsample_pattern as downsample_pattern,
)
from interp_transformer.vis.attention_data import (
    resolve_attention as resolve_attention,
)
from interp_transformer.vis.circuitsvis_view import CircuitsVisView as CircuitsVisView
from interp_transformer.vis.feature_dashboard import FeatureDashboardView as FeatureDashboardView
from interp_transformer.vis.feature_dashboard import feature_dashboard as feature_dashboard
from interp_transformer.vis.heatmap import (
    HeatmapView as HeatmapView,
)
from interp_transformer.vis.heatmap import (
    heatmap as heatmap,
)
from interp_transformer.vis.heatmap import (
    layer_head_heatmap as layer_head_heatmap,
)
from interp_transformer.vis.heatmap import (
    layer_pos_heatmap as layer_pos_heatmap,
)
from interp_transformer.vis.heatmap import (
    pos_pos_heatmap as pos_pos_heatmap,
)
from interp_transformer.vis.page import Page as Page
from interp_transformer.vis.page import combine as combine
from interp_transformer.vis.text import (
    colored_tokens as colored_tokens,
)
from interp_transformer.vis.text import (
    text_neuron_activations as text_neuron_activations,
)
from interp_transformer.vis.text import (
    topk_tokens as topk_tokens,
)
from interp_transformer.vis.view import DEFAULT_MAX_BYTES as DEFAULT_MAX_BYTES
from interp_transformer.vis.view import View as View
from interp_transformer.vis.view import ViewSizeWarning as ViewSizeWarning
