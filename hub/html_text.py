"""The plain-text part of a letter, written from its HTML when the template has none of its own.

Mail clients that show only text, screen readers and spam filters all read
the text part; a letter whose text is empty, or is the HTML with its tags
left in, reads as broken or as spam. So the HTML is turned into what a
person would type: headings and paragraphs as lines with blank lines
between, list items as "- " (numbered in an ordered list), a link as
"text (url)", a table row by row with its cells on one line, images as their
alt text; scripts, styles, the head and anything hidden with display:none
(a letter's preheader) are dropped, and entities are decoded.

The standard library's HTMLParser is enough for this: it never fails on
broken markup, and a letter's HTML is a small, known set of tags. (html2text,
the usual choice, is GPL.)
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIP = {"script", "style", "head", "title", "template", "noscript", "svg", "object", "iframe"}
_BLOCKS = {"p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "blockquote",
           "address", "figure", "figcaption", "center", "form", "fieldset", "dl", "dt", "dd", "table", "hr",
           "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "pre"}
_VOID = {"br", "img", "hr", "meta", "link", "input", "col", "area", "base", "wbr", "source", "track", "embed"}
_HIDDEN = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\n\r\f\v\u00a0]+")
_LINK_SCHEMES = ("http://", "https://", "mailto:", "tel:")


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.line = ""
        self.blank = False  # a blank line is due before the next text
        self.prefix = ""  # what the next line starts with (a list item's "- ")
        self.skipping: list[str] = []  # the open element whose content is dropped, repeated per nesting
        self.lists: list[list[int]] = []  # [ordered, counter] for each open list
        self.links: list[tuple[str, list[str]]] = []  # the href and the text of each open link
        self.cell = 0  # cells seen in the current table row
        self.pre = 0

    # structure

    def _flush(self) -> None:
        text = self.line.rstrip()
        if text.strip():
            if self.blank and self.lines:
                self.lines.append("")
            self.lines.append(text)
            self.blank = False
        self.line = ""

    def _break(self, blank: bool = False) -> None:
        self._flush()
        self.blank = self.blank or blank

    def _write(self, text: str) -> None:
        if not text:
            return
        if not self.line:
            if not self.pre:
                text = text.lstrip(" ")
                if not text:
                    return
            self.line = self.prefix
            self.prefix = ""
        elif not self.pre and self.line.endswith(" ") and text.startswith(" "):
            text = text[1:]
        self.line += text
        for _, words in self.links:
            words.append(text)

    # the parser's callbacks

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if self.skipping:
            if tag == self.skipping[-1] and tag not in _VOID:
                self.skipping.append(tag)
            return
        if tag in _SKIP or (_HIDDEN.search(values.get("style", "")) and tag not in _VOID) \
                or "hidden" in values:
            if tag not in _VOID:
                self.skipping.append(tag)
            return
        if tag == "br":
            self._flush()
        elif tag == "img":
            alt = " ".join(values.get("alt", "").split())
            if alt:
                self._write(alt)
        elif tag == "li":
            self._break()
            depth = max(len(self.lists) - 1, 0)
            if self.lists and self.lists[-1][0]:
                self.lists[-1][1] += 1
                self.prefix = "  " * depth + f"{self.lists[-1][1]}. "
            else:
                self.prefix = "  " * depth + "- "
        elif tag in ("ul", "ol"):
            self._break(blank=not self.lists)
            self.lists.append([tag == "ol", 0])
        elif tag == "tr":
            self._break()
            self.cell = 0
        elif tag in ("td", "th"):
            if self.cell and self.line.strip():
                self._write(" | ")
            self.cell += 1
        elif tag == "a":
            self.links.append((values.get("href", "").strip(), []))
        elif tag in _BLOCKS:
            self._break(blank=tag not in ("div", "dd", "dt", "center", "table"))
            if tag == "pre":
                self.pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping[-1]:
                self.skipping.pop()
            return
        if tag == "a" and self.links:
            href, words = self.links.pop()
            text = " ".join("".join(words).split())
            if href.lower().startswith(_LINK_SCHEMES):
                shown = href[7:] if href.lower().startswith("mailto:") else href
                if not text:
                    self._write(shown)
                elif shown not in text:
                    self._write(f" ({shown})")
        elif tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self._break(blank=not self.lists)
        elif tag == "li":
            self._break()
        elif tag == "tr":
            self._break()
        elif tag in _BLOCKS:
            self._break(blank=tag not in ("div", "dd", "dt", "center", "table"))
            if tag == "pre" and self.pre:
                self.pre -= 1

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.pre:
            first, *rest = data.split("\n")
            self._write(first)
            for piece in rest:
                self._flush()
                self._write(piece or " ")
            return
        self._write(_SPACES.sub(" ", data))

    def text(self) -> str:
        self.close()
        self._flush()
        return "\n".join(self.lines)


def to_text(html: str) -> str:
    """Readable plain text for a letter's HTML (see the module's docstring for what becomes what)."""
    converter = _Converter()
    converter.feed(html)
    return converter.text()
