"""Read a saved page back the way a browser's parser would, to check what it would execute and display."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class ParsedPage:
    tags: list[tuple[str, dict]] = field(default_factory=list)
    scripts: list[tuple[dict, str]] = field(default_factory=list)  # (attributes, raw text)
    token_strips: list[list[str]] = field(default_factory=list)  # text of each .itv-token, per strip
    token_strip_titles: list[list[str | None]] = field(default_factory=list)  # title (tooltip) of each .itv-token

    def executable_scripts(self) -> list[tuple[dict, str]]:
        return [(attrs, text) for attrs, text in self.scripts if attrs.get("type") != "application/json"]

    def data_blocks(self) -> dict[str, dict]:
        return {attrs["id"]: json.loads(text) for attrs, text in self.scripts if attrs.get("type") == "application/json"}


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = ParsedPage()
        self._script: tuple[dict, list[str]] | None = None
        self._token: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        self.page.tags.append((tag, attributes))
        classes = (attributes.get("class") or "").split()
        if tag == "script":
            self._script = (attributes, [])
        elif "itv-tokens" in classes:
            self.page.token_strips.append([])
            self.page.token_strip_titles.append([])
        elif "itv-token" in classes:
            self._token = []
            self.page.token_strip_titles[-1].append(attributes.get("title"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.page.scripts.append((self._script[0], "".join(self._script[1])))
            self._script = None
        elif tag == "span" and self._token is not None:
            self.page.token_strips[-1].append("".join(self._token))
            self._token = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script[1].append(data)
        elif self._token is not None:
            self._token.append(data)


def parse_page(html: str) -> ParsedPage:
    parser = _Parser()
    parser.feed(html)
    parser.close()
    return parser.page
