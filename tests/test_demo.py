"""The main job: ``interp-transformer demo`` writes a self-contained report and its CSV tables, offline.

The report is run once per module; its figures are read back from the saved page and checked
against what they claim to show, computed here by hand with plain hooks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pandas as pd
import pytest
import torch

from interp_transformer import HookedTransformer
from interp_transformer.cli import main
from interp_transformer.demo import DEFAULT_MODEL, DEFAULT_PROMPT


@dataclass
class SavedView:
    kind: str
    notes: list[str] = field(default_factory=list)
    data: dict | None = None

    @property
    def figure_title(self) -> str:
        if not self.data or "figure" not in self.data:  # circuitsvis views carry their own data, not a plotly figure
            return ""
        return self.data["figure"]["layout"].get("title", {}).get("text", "")


class _ViewParser(HTMLParser):
    """Each ``.itv-view`` of a saved page: its kind, its notes (captions) and its JSON data block."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.views: list[SavedView] = []
        self._text: list[str] | None = None
        self._is_data = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "div" and "itv-view" in classes:
            self.views.append(SavedView(attributes.get("data-itv-kind", "")))
        elif tag == "div" and "itv-note" in classes or tag == "script" and attributes.get("type") == "application/json":
            self._text, self._is_data = [], tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if self._text is None or tag not in ("div", "script"):
            return
        text = "".join(self._text)
        if self._is_data:
            self.views[-1].data = json.loads(text)
        else:
            self.views[-1].notes.append(text)
        self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "report"
    assert main(["demo", "--out", str(out)]) == 0
    parser = _ViewParser()
    parser.feed((out / "index.html").read_text(encoding="utf-8"))
    return out, parser.views


def _view(views: list[SavedView], title: str) -> SavedView:
    matches = [view for view in views if view.figure_title == title]
    assert len(matches) == 1, f"expected one figure titled {title!r}, found {[v.figure_title for v in views]}"
    return matches[0]


@pytest.mark.slow
def test_demo_writes_report_and_tables(report):
    out, _ = report
    page = (out / "index.html").read_text(encoding="utf-8")
    for section in ("Attention patterns, layer 0", "Attention patterns, layer 1", "Head detector: induction",
                    "Activation patching: resid_pre", "K-composition scores", "OV copying scores", "Logit lens"):
        assert section in page, f"report lacks the section {section!r}"
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", page), "the report must inline everything it loads"
    assert "default-src 'none'" in page, "the report's Content-Security-Policy should forbid every fetch"
    tables = {path.name for path in out.glob("*.csv")}
    assert tables == {"head_detector_scores.csv", "patching_resid_pre.csv", "composition_scores.csv",
                      "ov_copying_scores.csv", "logit_lens.csv"}
    heads = pd.read_csv(out / "head_detector_scores.csv")
    assert len(heads) == 2 * 4, "one row per head of the 2-layer, 4-head model"


# The default prompt is BOS + ten words + the same ten words. The demo drops the last word, so the
# clean prompt ends on the second 'king' and an induction model predicts 'music', the word after the
# first 'king' (position 9). Corrupting that 'music' (position 10) is what breaks the induction answer.
CORRUPTED_POSITION, FIRST_KING, LAST_KING = 10, 9, 19


def _hand_patching_sweep(model: HookedTransformer, clean: torch.Tensor, corrupted: torch.Tensor, answer: int, wrong: int):
    """Logit diffs of the clean and corrupted runs, and the normalised [layer pos] resid_pre sweep, with plain hooks."""

    def logit_diff(logits: torch.Tensor) -> float:
        return float(logits[0, -1, answer] - logits[0, -1, wrong])

    clean_cache = {}

    def keep(value, hook):
        clean_cache[hook.name] = value.clone()

    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        clean_diff = logit_diff(model.run_with_hooks(clean, fwd_hooks=[(name, keep) for name in names]))
        corrupted_diff = logit_diff(model(corrupted))
        sweep = torch.zeros(model.cfg.n_layers, clean.shape[1])
        for layer, name in enumerate(names):
            for pos in range(clean.shape[1]):
                def patch(value, hook, pos=pos):
                    value[:, pos] = clean_cache[hook.name][:, pos]
                    return value

                patched = logit_diff(model.run_with_hooks(corrupted, fwd_hooks=[(name, patch)]))
                sweep[layer, pos] = (patched - corrupted_diff) / (clean_diff - corrupted_diff)
    return clean_diff, corrupted_diff, sweep


@pytest.mark.slow
def test_demo_patching_figure_shows_the_induction_answer_living_at_the_corrupted_token(report):
    out, views = report
    model = HookedTransformer.from_pretrained(DEFAULT_MODEL).eval()
    tokens = model.to_tokens(DEFAULT_PROMPT)
    words = model.to_str_tokens(tokens[0])
    assert words[FIRST_KING] == words[LAST_KING] == "king" and words[CORRUPTED_POSITION] == "music", words
    clean = tokens[:, : LAST_KING + 1]
    view = _view(views, "Activation patching: resid_pre")
    caption = " ".join(view.notes)
    stated = re.search(r"position (\d+) \('([^']*)'\) is replaced by '([^']*)'", caption)
    assert stated, f"the patching caption should say which token is replaced and by what: {caption!r}"
    assert int(stated[1]) == CORRUPTED_POSITION and stated[2] == "music", (
        f"the demo corrupts {stated[1]} ({stated[2]!r}); the induction answer 'music' sits at {CORRUPTED_POSITION} "
        "(off by one: was the period taken from the prompt without its last token?)"
    )
    replacement = model.to_single_token(stated[3])
    assert replacement != clean[0, CORRUPTED_POSITION]
    corrupted = clean.clone()
    corrupted[0, CORRUPTED_POSITION] = replacement
    answer = int(clean[0, CORRUPTED_POSITION])
    clean_diff, corrupted_diff, sweep = _hand_patching_sweep(model, clean, corrupted, answer, replacement)

    assert clean_diff - corrupted_diff > 2, (
        f"clean logit diff {clean_diff:.3f} vs corrupted {corrupted_diff:.3f}: the pair barely changes the answer, so a "
        "normalised figure would magnify noise"
    )
    for number in (clean_diff, corrupted_diff):
        assert f"{number:.2f}" in caption, f"the caption should report the logit diff {number:.2f}: {caption!r}"
    figure_values = torch.tensor(view.data["figure"]["data"][0]["z"], dtype=torch.float32)
    table = pd.read_csv(out / "patching_resid_pre.csv").pivot(index="layer", columns="pos", values="value")
    for name, values in (("figure", figure_values), ("patching_resid_pre.csv", torch.tensor(table.to_numpy(), dtype=torch.float32))):
        torch.testing.assert_close(values, sweep, atol=1e-3, rtol=0, msg=lambda m: f"the {name} differs from patching by hand: {m}")
    # What the figure means: both rows are resid_pre of layers up to the induction head (layer 1), so the
    # answer can only live at the corrupted token; the final position has not received it yet.
    assert (sweep[:, CORRUPTED_POSITION] - 1).abs().max() < 0.05, f"patching the corrupted token should restore ~1 in every layer: {sweep[:, CORRUPTED_POSITION]}"
    elsewhere = torch.cat([sweep[:, :CORRUPTED_POSITION], sweep[:, CORRUPTED_POSITION + 1:]], dim=1)
    assert elsewhere.abs().max() < 0.05, f"every other position should restore ~0, got up to {elsewhere.abs().max():.3f}"


@pytest.mark.slow
def test_demo_detector_heatmaps_share_one_colour_scale_from_0_to_1(report):
    _, views = report
    detectors = [view for view in views if view.figure_title.startswith("Head detector:")]
    assert len(detectors) == 4, [view.figure_title for view in views]
    for view in detectors:
        trace = view.data["figure"]["data"][0]
        assert (trace.get("zmin"), trace.get("zmax")) == (0, 1), (
            f"{view.figure_title}: colour range {trace.get('zmin')}..{trace.get('zmax')}; the caption says 1.0 = a perfect "
            "head, so every detector must use 0..1 (otherwise each heatmap stretches its own range)"
        )


@pytest.mark.slow
def test_demo_captions_say_what_each_figure_shows(report):
    _, views = report
    captions = [note for view in views for note in view.notes]
    bad_articles = [m.group(0) for caption in captions for m in re.finditer(r"\ba [aeio]\w+", caption)]
    assert not bad_articles, f"'a' before a vowel sound: {bad_articles}"
    composition = {mode: " ".join(_view(views, f"{mode}-composition scores").notes) for mode in "QKV"}
    assert len(set(composition.values())) == 3, "the Q-, K- and V-composition captions should each describe their own mode"
    for mode, word in (("Q", "quer"), ("K", "key"), ("V", "value")):
        assert word in composition[mode].lower(), f"the {mode}-composition caption should explain the {word}… side: {composition[mode]!r}"
    detectors = [" ".join(view.notes) for view in views if view.figure_title.startswith("Head detector:")]
    assert len(set(detectors)) == 4, "each head detector's caption should say what that detector looks for"


def test_models_command_lists_embedded_models(capsys):
    assert main(["models"]) == 0
    assert "attn-only-2l-induction" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_runs_on_a_gpt2_directory(tmp_path, make_hf_gpt2):
    _, directory = make_hf_gpt2(with_tokenizer=True, n_layer=3)
    out = tmp_path / "report"
    assert main(["demo", "--model", str(directory), "--out", str(out)]) == 0
    assert "Attention patterns, layer 2" in (out / "index.html").read_text(encoding="utf-8")
    assert len(pd.read_csv(out / "head_detector_scores.csv")) == 3 * 4
