"""The small script and stylesheet every page carries once: they draw each view from its JSON data block.

Views never inline data into code: each writes ``<script type="application/json" id="ID-data">``
(escaped by ``escaping.script_json``) and a one-line call ``interpTransformerVis.render("ID")``.
"""

from __future__ import annotations

RUNTIME_JS = r"""
(function () {
  "use strict";
  if (window.interpTransformerVis) return;
  // Inverse of escaping.circuitsvis_token_html, for the hover tooltips where circuitsvis shows
  // the token as React text (so our HTML escaping would otherwise be visible there).
  var ENTITY = /&(amp|lt|gt|quot|#x27|#13|#x[0-9a-f]+);/g;
  var NAMED = {"amp": "&", "lt": "\x3C", "gt": "\x3E", "quot": "\"", "#x27": "'", "#13": "\r"};
  function decodeTokenHtml(text) {
    return text.replace(ENTITY, function (_, name) {
      return NAMED.hasOwnProperty(name) ? NAMED[name] : String.fromCodePoint(parseInt(name.slice(2), 16));
    });
  }
  function decodeTooltips(target) {
    var decoded = new WeakMap();  // text node -> the value we wrote, so we never decode twice
    function fix(root) {
      var strongs = root.nodeType === 1 ? root.querySelectorAll("strong") : [];
      Array.prototype.forEach.call(strongs, function (strong) {
        Array.prototype.forEach.call(strong.childNodes, function (node) {
          if (node.nodeType !== 3 || decoded.get(node) === node.nodeValue) return;
          var value = decodeTokenHtml(node.nodeValue);
          decoded.set(node, value);
          if (value !== node.nodeValue) node.nodeValue = value;
        });
      });
    }
    new MutationObserver(function (records) {
      records.forEach(function (record) {
        var node = record.target.nodeType === 3 ? record.target.parentNode : record.target;
        if (node) fix(node.parentNode || node);
      });
    }).observe(target, {childList: true, subtree: true, characterData: true});
  }
  // The exact tokens behind shortened labels, as tooltips; set through the DOM (no HTML parsing)
  // and again whenever the component re-renders its token elements.
  function applyTitles(target, titles) {
    function apply() {
      var elements = target.querySelectorAll(titles.selector);
      if (elements.length !== titles.texts.length) return;
      Array.prototype.forEach.call(elements, function (element, index) {
        if (element.getAttribute("title") !== titles.texts[index]) element.setAttribute("title", titles.texts[index]);
      });
    }
    new MutationObserver(apply).observe(target, {childList: true, subtree: true});
    apply();
  }
  function unscale(value, divisor) {
    return Array.isArray(value) ? value.map(function (v) { return unscale(v, divisor); }) : value / divisor;
  }
  function fail(root, error) {
    var message = document.createElement("p");
    message.className = "itv-error";
    message.textContent = "could not draw this view: " + error;
    root.appendChild(message);
    throw error;
  }
  function render(id) {
    var root = document.getElementById(id);
    try {
      var spec = JSON.parse(document.getElementById(id + "-data").textContent);
      var target = document.getElementById(id + "-target");
      if (spec.library === "circuitsvis") {
        if (spec.decodeTooltips) decodeTooltips(target);
        Object.keys(spec.scaled).forEach(function (key) { spec.props[key] = unscale(spec.props[key], spec.scaled[key]); });
        window.CircuitsVis.render(id + "-target", window.CircuitsVis[spec.component], spec.props);
        if (spec.tokenTitles) applyTitles(target, spec.tokenTitles);
        root.setAttribute("data-itv-rendered", "1");
      } else if (spec.library === "plotly") {
        window.Plotly.newPlot(target, spec.figure.data, spec.figure.layout, spec.config).then(function () {
          root.setAttribute("data-itv-rendered", "1");
        }, function (error) { fail(root, error); });
      } else {
        root.setAttribute("data-itv-rendered", "1");
      }
    } catch (error) {
      fail(root, error);
    }
  }
  window.interpTransformerVis = {render: render, decodeTokenHtml: decodeTokenHtml};
})();
"""

RUNTIME_CSS = """
.itv-view { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 16px 0; }
.itv-title { font-weight: 600; font-size: 15px; margin: 0 0 6px; }
.itv-note { color: #555; font-size: 12px; margin: 4px 0; }
.itv-error { color: #b00020; font-family: monospace; }
/* Token text is shown exactly: keep its spaces, tabs and newlines. */
.itv-target { white-space: pre-wrap; }
/* A very long token (no spaces) wraps instead of widening the page to tens of thousands of pixels. */
.itv-target .colored-tokens, .itv-target td > span { overflow-wrap: anywhere; }
/* circuitsvis draws text tokens as inline blocks; inline lets a newline token break the line like text. */
.itv-target .colored-tokens > span > span { display: inline !important; line-height: 1.6em !important; }
.itv-tokens { margin: 6px 0; line-height: 1.9em; overflow-wrap: anywhere; }
.itv-token { white-space: pre; font-family: ui-monospace, monospace; font-size: 12px; border: 1px solid #ccc;
  border-radius: 3px; padding: 1px 3px; margin: 0 2px 0 0; background: #f7f7f7; }
.itv-token-pos { color: #888; font-size: 10px; margin-right: 1px; vertical-align: super; }
.itv-table { border-collapse: collapse; font-size: 13px; }
.itv-table td, .itv-table th { border: 1px solid #ddd; padding: 2px 6px; white-space: pre; }
"""

# Only for saved pages: a notebook has its own page style.
PAGE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 16px 24px; color: #222; }
h1 { font-size: 22px; }
"""
