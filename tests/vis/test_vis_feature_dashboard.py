"""Feature dashboards: hostile tokens shown literally (escaped exactly once), colours, histogram and logit table
from hand-worked data, bad input, and one real headless-Chromium render with no network and no script errors."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import pytest
import torch
from conftest import tiny_config
from headless_chromium import PageRecord, browser  # noqa: F401 (browser is a fixture)
from vis_html_parsing import parse_page

from interp_transformer import HookedTransformer, vis
from interp_transformer.sae import SAEConfig, SparseAutoencoder
from interp_transformer.sae.features import FeatureActivations, top_activating_contexts
from interp_transformer.sae.logit_effects import LogitEffects, logit_effects
from interp_transformer.store import cache_dataset
from interp_transformer.vis.labels import visible_label
from interp_transformer.vis.runtime import RUNTIME_JS

LONG_TOKEN = "ab" * 2499 + "Z!"  # 5,000 characters, no spaces: must wrap, not widen the page
VOCAB = [
    "<|endoftext|>", "</script><img src=x onerror=alert(1)>", "<!--<script>", "<s>", "&amp;", "😀", "\n", " ",
    "\t", " the", "a\r\nb", "<b>bold</b>", '" onmouseover="alert(2)', LONG_TOKEN,
]
NAN = math.nan


def hand_worked() -> tuple[FeatureActivations, LogitEffects]:
    """Feature 3: two contexts (window 2 before, 2 after), the second cut at its sequence's start."""
    found = FeatureActivations(
        hook_name="blocks.0.hook_resid_post",
        features=torch.tensor([3]),
        values=torch.tensor([[2.0, 1.0, NAN]]),
        sequences=torch.tensor([[0, 4, -1]]),
        positions=torch.tensor([[2, 0, -1]]),
        window_tokens=torch.tensor([[[1, 2, 3, 4, 5], [-1, -1, 13, 11, 12], [-1] * 5]]),
        window_activations=torch.tensor([[[0.0, 0.5, 2.0, NAN, 1.0], [NAN, NAN, 1.0, 0.0, 0.25], [NAN] * 5]]),
        before=2,
        n_tokens=100,
        n_firing=torch.tensor([7]),
        activation_sum=torch.tensor([7.5], dtype=torch.float64),
        histogram=torch.tensor([[3, 0, 2, 2]]),
        bin_width=torch.tensor([1.0], dtype=torch.float64),
        min_activation=0.0,
    )
    logits = LogitEffects(
        features=torch.tensor([3]),
        top_tokens=torch.tensor([[9, 1]]),
        top_values=torch.tensor([[1.5, 0.25]]),
        bottom_tokens=torch.tensor([[13, 6]]),
        bottom_values=torch.tensor([[-2.0, -0.5]]),
        through_final_norm=True,
    )
    return found, logits


class _Elements(HTMLParser):
    """Text, title and style of the elements of some classes, and every tag, as a browser's parser reads them."""

    def __init__(self, classes: tuple[str, ...]) -> None:
        super().__init__(convert_charrefs=True)
        self.found: dict[str, list[dict]] = {name: [] for name in classes}
        self.tags: list[str] = []
        self.rects: list[dict] = []
        self._open: list[dict | None] = []

    def handle_starttag(self, tag, attrs) -> None:
        attributes = dict(attrs)
        self.tags.append(tag)
        if tag == "rect":
            self.rects.append(attributes)
        element = None
        for name in self.found:
            if name in (attributes.get("class") or "").split():
                element = {"text": "", **attributes}
                self.found[name].append(element)
        self._open.append(element)

    def handle_endtag(self, tag) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data) -> None:
        for element in self._open:
            if element is not None:
                element["text"] += data


def elements(html: str, *classes: str) -> _Elements:
    parser = _Elements(classes)
    parser.feed(html)
    return parser


def test_tokens_are_escaped_exactly_once_and_shown_literally() -> None:
    found, logits = hand_worked()
    view = vis.feature_dashboard(found, 3, logits=logits, vocab=VOCAB, title="feature <3> & </script>")
    html = view.html()
    parsed = elements(html, "itv-fd-tok", "itv-fd-label", "itv-fd-value", "itv-title", "itv-note")
    tokens = [e["text"] for e in parsed.found["itv-fd-tok"]]
    assert tokens == [VOCAB[i] for i in (1, 2, 3, 4, 5, 13, 11, 12)], "context tokens must display exactly as given"
    assert [e["title"].split("\nactivation ")[0] for e in parsed.found["itv-fd-tok"]] == tokens, "tooltips hold the exact token"
    assert "&amp;amp;" in html and "&amp;amp;amp;" not in html, "the '&amp;' token must be escaped once, not zero or two times"
    assert not {"img", "s", "b", "iframe", "object", "embed"} & set(parsed.tags), "a token became markup"
    scripts = parse_page(html).executable_scripts()
    assert [text for _, text in scripts] == [RUNTIME_JS], "the page may run the shared runtime and nothing else"
    labels = parsed.found["itv-fd-label"]
    assert [e["text"] for e in labels] == [visible_label(VOCAB[i]) for i in (9, 13, 1, 6)], "logit table rows: promoted, suppressed"
    assert [e["title"] for e in labels] == [VOCAB[i] for i in (9, 13, 1, 6)]
    assert parsed.found["itv-title"][0]["text"] == "feature <3> & </script>"


def test_colours_histogram_and_statistics_follow_the_data() -> None:
    found, logits = hand_worked()
    html = vis.feature_dashboard(found, 3, logits=logits, vocab=VOCAB).html()
    parsed = elements(html, "itv-fd-tok", "itv-fd-value", "itv-fd-num", "itv-note", "itv-fd-context")
    toks = parsed.found["itv-fd-tok"]
    # Opacity is activation / the feature's largest activation (2.0); nan (not stored) gets no colour.
    alphas = [e.get("style", "").rsplit(", ", 1)[-1].rstrip(")") if "style" in e else None for e in toks]
    assert alphas == ["0.000", "0.250", "1.000", None, "0.500", "0.500", "0.000", "0.125"]
    assert ["itv-fd-unknown" in e["class"] for e in toks] == [False, False, False, True, False, False, False, False]
    assert [("itv-fd-center" in e["class"]) for e in toks] == [False, False, True, False, False, True, False, False]
    assert [e["text"] for e in parsed.found["itv-fd-value"]] == ["2", "1"]
    assert [(e["data-sequence"], e["data-position"]) for e in parsed.found["itv-fd-context"]] == [("0", "2"), ("4", "0")]
    assert [e["text"] for e in parsed.found["itv-fd-num"]] == ["+1.5", "-2", "+0.25", "-0.5"]
    assert [r["data-count"] for r in parsed.rects] == ["3", "0", "2", "2"]
    assert [float(r["height"]) for r in parsed.rects] == [120.0, 0.0, 80.0, 80.0], "bar heights relative to the tallest"
    note = parsed.found["itv-note"][0]["text"]
    assert note == "blocks.0.hook_resid_post: fires (activation > 0) on 7 of 100 tokens (7.000%); max 2, mean when firing 1.071"


def test_a_feature_that_never_fired_says_so() -> None:
    found, _ = hand_worked()
    silent = FeatureActivations(**{**found.__dict__, "features": torch.tensor([8]), "values": torch.full((1, 3), NAN),
                                   "sequences": torch.full((1, 3), -1), "n_firing": torch.tensor([0]),
                                   "bin_width": torch.tensor([0.0], dtype=torch.float64), "histogram": torch.zeros(1, 4, dtype=torch.long)})
    html = vis.feature_dashboard(silent, 8).html()
    parsed = elements(html, "itv-fd-tok", "itv-note")
    assert parsed.found["itv-fd-tok"] == [] and parsed.rects == []
    assert [e["text"] for e in parsed.found["itv-note"]][1:] == ["this feature never fired"] * 2


def test_ids_without_a_vocabulary_and_with_a_models_tokenizer(bpe_tokenizer) -> None:
    found, logits = hand_worked()
    html = vis.feature_dashboard(found, 3, logits=logits, n_contexts=1).html()
    assert [e["text"] for e in elements(html, "itv-fd-tok").found["itv-fd-tok"]] == ["[1]", "[2]", "[3]", "[4]", "[5]"]
    model = HookedTransformer(tiny_config(), tokenizer=bpe_tokenizer)
    html = vis.feature_dashboard(found, 3, vocab=model).html()
    shown = [e["text"] for e in elements(html, "itv-fd-tok").found["itv-fd-tok"]]
    assert shown == [bpe_tokenizer.decode([i]) for i in (1, 2, 3, 4, 5, 13, 11, 12)]


def test_bad_input() -> None:
    found, logits = hand_worked()
    with pytest.raises(KeyError, match=r"feature 4 was not analysed; this result holds \[3\]"):
        vis.feature_dashboard(found, 4)
    with pytest.raises(TypeError, match="activations must be what top_activating_contexts returns, got dict"):
        vis.feature_dashboard({}, 3)
    with pytest.raises(TypeError, match="logits must be what logit_effects returns"):
        vis.feature_dashboard(found, 3, logits=torch.zeros(3))
    with pytest.raises(ValueError, match="vocab has 5 token strings but the dashboard shows token ids up to 13"):
        vis.feature_dashboard(found, 3, vocab=VOCAB[:5])
    with pytest.raises(TypeError, match="vocab gave int 7 for token id 1"):
        vis.feature_dashboard(found, 3, vocab=lambda i: 7)
    with pytest.raises(ValueError, match="the model has no tokenizer"):
        vis.feature_dashboard(found, 3, vocab=HookedTransformer(tiny_config()))
    with pytest.raises(ValueError, match="n_contexts must be a positive int or None, got 0"):
        vis.feature_dashboard(found, 3, n_contexts=0)


def test_a_large_dashboard_warns_with_how_to_shrink_it() -> None:
    found, _ = hand_worked()
    with pytest.warns(vis.ViewSizeWarning, match="show fewer contexts"):
        view = vis.feature_dashboard(found, 3, vocab=VOCAB, max_bytes=1000)
    assert view.data_bytes > 5000, "the long token alone is 5,000 bytes of markup"


# ------------------------------------------------------------------ real browser


def assert_quiet(record: PageRecord) -> None:
    assert record.network_requests() == [], f"the page tried to reach the network: {record.network_requests()}"
    assert record.exceptions == [], f"script errors: {record.exceptions}"
    assert record.console_errors == [], f"console errors: {record.console_errors}"
    assert record.dialogs == [], f"a token's markup ran as script: {record.dialogs}"


def test_dashboards_from_a_real_store_render_offline_with_tokens_literal(browser, tmp_path) -> None:
    model = HookedTransformer(tiny_config(d_vocab=len(VOCAB), n_ctx=16)).eval()
    tokens = torch.randint(0, len(VOCAB), (6, 10), generator=torch.Generator().manual_seed(0))
    cache_dataset(model, tokens, ["blocks.1.hook_resid_post"], tmp_path / "store", progress=False)
    sae = SparseAutoencoder(SAEConfig(d_in=model.cfg.d_model, d_sae=6, hook_name="blocks.1.hook_resid_post"), seed=1)
    found = top_activating_contexts(tmp_path / "store", sae, k=4, window=(4, 2), progress=False)
    effects = logit_effects(model, sae, k=5)
    shown = [f for f in range(6) if found.contexts(f)][:2]
    views = [vis.feature_dashboard(found, f, logits=effects, vocab=VOCAB) for f in shown]
    path = vis.combine(*views, title="features <script>").save(tmp_path / "features.html")
    n_contexts = sum(len(found.contexts(f)) for f in shown)
    record = browser.open(path, f"document.querySelectorAll('.itv-fd-context').length === {n_contexts}")
    browser.screenshot(tmp_path / "features.png")
    assert_quiet(record)
    for view, feature in zip(views, shown):
        texts = browser.evaluate(
            f"Array.from(document.getElementById({view.element_id!r}).querySelectorAll('.itv-fd-tok')).map(e => e.textContent)"
        )
        expected = [VOCAB[t] for context in found.contexts(feature) for t in context.tokens]
        assert texts == expected, f"feature {feature}: the browser shows other text than the tokens"
        labels = browser.evaluate(
            f"Array.from(document.getElementById({view.element_id!r}).querySelectorAll('.itv-fd-label'))"
            ".map(e => [e.textContent, e.getAttribute('title')])"
        )
        row = effects.row(feature)
        ids = [t for pair in zip(effects.top_tokens[row].tolist(), effects.bottom_tokens[row].tolist()) for t in pair]
        assert labels == [[visible_label(VOCAB[t]), VOCAB[t]] for t in ids]
        bars = browser.evaluate(f"document.getElementById({view.element_id!r}).querySelectorAll('svg rect').length")
        assert bars == found.histogram.shape[1]
    assert browser.evaluate("document.querySelectorAll('img, s, b, iframe, object, embed').length") == 0, "a token became markup"
    width = browser.evaluate("document.documentElement.scrollWidth")
    assert width <= browser.width, f"the page is {width} px wide in a {browser.width} px window: a long token widened it"
