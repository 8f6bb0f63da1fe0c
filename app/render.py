"""Message text → HTML for Qt's rich-text widgets.  Qt-free (unit-testable).

Model output is untrusted: markdown-it runs with HTML disabled, so tags in the text
are shown as text; links become `link:N` anchors the window asks about before opening
anything; images are never loaded (rendered as a labelled link instead).  Code blocks
are highlighted with pygments (inline styles: QTextDocument has no class CSS) and get a
`copy:N` anchor.

Provenance overlay: after rendering, each visible character is matched back to its
position in the raw text (rendered text is, in order, a subsequence of the source:
Markdown only removes syntax), and runs are wrapped in background-coloured spans.
Spans are closed before and reopened after every tag, so they never break nesting.
Text the renderer adds itself (language labels, "Copy") is fenced with private-use
sentinels so the matcher skips it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name, guess_lexer
from pygments.util import ClassNotFound

from app.theme import Colors

CHROME_START = "\ue000"
CHROME_END = "\ue001"
_SENTINELS = re.compile("[\ue000\ue001]")
_TAG_OR_TEXT = re.compile(r"(<[^>]*>)")
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")
MATCH_WINDOW = 48  # how far ahead in the source a rendered character is looked for first
LONG_WINDOW = 4096
MONO = "'DejaVu Sans Mono', 'Menlo', 'Consolas', monospace"
COPIED = "Copied ✓"


@dataclass
class Rendered:
    html: str
    code_blocks: list[str] = field(default_factory=list)  # raw code, for copy:N
    links: list[str] = field(default_factory=list)  # real targets, for link:N


def _chrome(text: str) -> str:
    return f"{CHROME_START}{text}{CHROME_END}"


class _Renderer:
    """One markdown-it instance per theme (rules close over its colours)."""

    def __init__(self, colors: Colors) -> None:
        self.colors = colors
        self.formatter = HtmlFormatter(noclasses=True, nowrap=True, style=colors.pygments_style)
        md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
        md.enable(["table", "strikethrough"])
        # markdown-it binds each rule to its renderer (first argument); ours close over self
        for name, rule in (
            ("fence", self._fence),
            ("code_block", self._fence),
            ("code_inline", self._code_inline),
            ("link_open", self._link_open),
            ("image", self._image),
            ("table_open", self._table_open),
        ):
            md.add_render_rule(
                name, lambda _renderer, tokens, idx, options, env, rule=rule: rule(tokens, idx, options, env)
            )
        self.md = md

    # render rules: rule(tokens, idx, options, env) -> html
    def _fence(self, tokens: list, idx: int, _o: Any, env: dict) -> str:
        token = tokens[idx]
        code = token.content
        lang = (token.info or "").strip().split(" ")[0] if token.type == "fence" else ""
        env["code_blocks"].append(code)
        n = len(env["code_blocks"]) - 1
        c = self.colors
        body = highlight(code, _lexer(lang, code), self.formatter).rstrip("\n")
        # the language label is the model's own text (the fence's info string), so the
        # overlay may colour it; only text we invent is fenced off as chrome
        label = html.escape(lang) if lang else _chrome("code")
        return (
            # no table border: Qt would draw it between the header's two cells as well;
            # the two background colours frame the block instead
            f'<table width="100%" cellspacing="0" cellpadding="0" border="0" bgcolor="{c.code_bg}" '
            'style="margin-top:6px; margin-bottom:8px; border-style: none;">'
            f'<tr><td bgcolor="{c.code_head}" style="padding: 3px 8px; border-style: none;">'
            f'<span style="color:{c.muted}; font-size: small;">{label}</span></td>'
            f'<td bgcolor="{c.code_head}" align="right" style="padding: 3px 8px; border-style: none;">'
            f'<a href="copy:{n}" style="color:{c.accent}; text-decoration:none; font-size: small;">'
            f"{_chrome(COPIED if env.get('copied') == n else 'Copy')}</a></td></tr>"
            f'<tr><td colspan="2" style="padding: 8px; border-style: none;">'
            # pre-wrap: a line longer than the block wraps inside it instead of running past
            # the message's edge, where nothing could scroll to it (Copy takes the raw code)
            f'<pre style="margin:0; font-family:{MONO}; white-space: pre-wrap;">{body}</pre>'
            "</td></tr></table>\n"
        )

    def _code_inline(self, tokens: list, idx: int, _o: Any, _env: dict) -> str:
        c = self.colors
        return (
            f'<code style="font-family:{MONO}; background-color:{c.code_bg};">'
            f"{html.escape(tokens[idx].content, quote=False)}</code>"
        )

    def _link_open(self, tokens: list, idx: int, options: Any, env: dict) -> str:
        token = tokens[idx]
        env["links"].append(token.attrGet("href") or "")
        token.attrs = {"href": f"link:{len(env['links']) - 1}"}
        return self.md.renderer.renderToken(tokens, idx, options, env)

    def _image(self, tokens: list, idx: int, _o: Any, env: dict) -> str:
        # never <img>: QTextDocument would load it (file: or anything a handler serves)
        token = tokens[idx]
        env["links"].append(token.attrGet("src") or "")
        alt = html.escape(token.content or "image", quote=False)
        return (
            f'<a href="link:{len(env["links"]) - 1}">{_chrome("[image: ")}{alt}{_chrome("]")}</a>'
        )

    def _table_open(self, _tokens: list, _idx: int, _o: Any, _env: dict) -> str:
        return f'<table border="1" cellspacing="0" cellpadding="4" style="border-color:{self.colors.border};">\n'

    def render(self, text: str, copied: int | None = None) -> Rendered:
        env: dict[str, Any] = {"code_blocks": [], "links": [], "copied": copied}
        out = self.md.render(text, env)
        return Rendered(out, env["code_blocks"], env["links"])


def _lexer(lang: str, code: str) -> Any:
    if lang:
        try:
            return get_lexer_by_name(lang, stripnl=False)
        except ClassNotFound:
            pass
    if len(code) > 20:
        try:
            lexer = guess_lexer(code)
            # guess_lexer is weak on short snippets; only trust a confident guess
            if lexer.analyse_text(code) >= 0.3:
                return lexer
        except ClassNotFound:
            pass
    return TextLexer(stripnl=False)


_renderers: dict[str, _Renderer] = {}


def _renderer(colors: Colors) -> _Renderer:
    if colors.name not in _renderers:
        _renderers[colors.name] = _Renderer(colors)
    return _renderers[colors.name]


def clean(text: str) -> str:
    """Drop the sentinel characters (hostile text could contain them)."""
    return _SENTINELS.sub("\ufffd", text)


def render_markdown(text: str, colors: Colors, sources: list[str] | None = None,
                    copied: int | None = None) -> Rendered:
    """Markdown → HTML; with `sources` (one per character of `text`), the overlay;
    `copied`: the code block whose Copy link says it was just copied."""
    text = clean(text)
    rendered = _renderer(colors).render(text, copied)
    body = rendered.html
    if sources is not None:
        body = overlay(body, text, sources, colors.prov_bg)
    rendered.html = _SENTINELS.sub("", body)
    return rendered


def render_plain(text: str, colors: Colors) -> Rendered:
    """User messages: shown exactly as typed (no Markdown), line breaks kept."""
    escaped = html.escape(clean(text), quote=False).replace("\n", "<br>")
    return Rendered(f'<p style="white-space: pre-wrap;">{escaped}</p>')


def overlay(body: str, raw: str, sources: list[str], bg: Callable[[str], str | None]) -> str:
    """Wrap the visible text of `body` in spans coloured by where each character of
    `raw` came from.  Tags pass through untouched."""
    out: list[str] = []
    pos = 0  # next unmatched character of raw
    in_chrome = False

    def match(char: str) -> str | None:
        nonlocal pos
        found = raw.find(char, pos, pos + MATCH_WINDOW)
        if found < 0 and not char.isspace():
            found = raw.find(char, pos, pos + LONG_WINDOW)  # resynchronise after a long gap
        if found < 0:
            return None
        pos = found + len(char)
        return sources[found] if found < len(sources) else None

    for part in _TAG_OR_TEXT.split(body):
        if not part:
            continue
        if part.startswith("<"):
            out.append(part)
            continue
        if part.isspace():
            # whitespace between tags: keep the place in the source, but never wrap it in
            # a span (a span between blocks would become an empty paragraph)
            for _unit, char in _units(part):
                match(char)
            out.append(part)
            continue
        current: str | None = None
        run: list[str] = []
        for unit, char in _units(part):
            source = None
            if char == CHROME_START:
                in_chrome = True
            elif char == CHROME_END:
                in_chrome = False
            elif not in_chrome:
                source = match(char)
            if source != current:
                _flush(out, run, bg(current) if current else None)
                current = source
            run.append(unit)
        _flush(out, run, bg(current) if current else None)
    return "".join(out)


def _flush(out: list[str], run: list[str], colour: str | None) -> None:
    if run:
        text = "".join(run)
        out.append(f'<span style="background-color:{colour};">{text}</span>' if colour else text)
        run.clear()


def _units(text: str) -> list[tuple[str, str]]:
    """(html unit, character it shows): entities are one unit."""
    units: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        if text[i] == "&":
            m = _ENTITY.match(text, i)
            if m:
                units.append((m.group(0), html.unescape(m.group(0))))
                i = m.end()
                continue
        units.append((text[i], text[i]))
        i += 1
    return units
