"""Message rendering: Markdown with HTML disabled, highlighted code with copy anchors,
inert links and images, and the provenance overlay's alignment to the raw text."""

from __future__ import annotations

import re

import pytest

from app.render import CHROME_START, overlay, render_markdown, render_plain
from app.store import char_sources
from app.theme import DARK, LIGHT

pytestmark = pytest.mark.gui

HOSTILE = (
    "<script>alert('x')</script> <b>bold?</b> <img src=http://evil.example/a.png>\n\n"
    "[click](javascript:alert(1)) [web](https://example.org/page) [local](file:///etc/passwd)\n\n"
    "![pic](https://tracker.example/pixel.gif) <http://auto.example/link>\n"
)


def test_html_in_model_output_is_text() -> None:
    r = render_markdown(HOSTILE, LIGHT)
    assert "<script" not in r.html and "&lt;script&gt;" in r.html
    assert "<b>" not in r.html and "&lt;b&gt;bold?&lt;/b&gt;" in r.html
    assert "<img" not in r.html.lower()


def test_links_and_images_become_numbered_anchors() -> None:
    r = render_markdown(HOSTILE, LIGHT)
    hrefs = re.findall(r'href="([^"]+)"', r.html)
    # only our own schemes reach the widget: link:N (asks before opening), never a real URL
    assert hrefs and all(h.startswith(("link:", "copy:")) for h in hrefs)
    assert "https://example.org/page" in r.links
    assert "https://tracker.example/pixel.gif" in r.links  # the image is a link, never loaded
    assert "[image: " in r.html
    assert "http://auto.example/link" in r.links
    # markdown-it refuses javascript: and file: targets: they stay plain text
    assert not any(link.startswith(("javascript:", "file:")) for link in r.links)


def test_code_block_highlighted_with_copy_anchor() -> None:
    text = "Here:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\nand `inline`."
    r = render_markdown(text, LIGHT)
    assert r.code_blocks == ["def add(a, b):\n    return a + b\n"]
    assert 'href="copy:0"' in r.html
    assert "python" in r.html  # language label
    assert re.search(r'<span style="color: #[0-9A-Fa-f]+; font-weight: bold">def</span>', r.html)
    assert "inline</code>" in r.html
    dark = render_markdown(text, DARK)
    assert dark.html != r.html  # the dark theme has its own code colours


def test_unclosed_fence_while_streaming_still_renders_as_code() -> None:
    r = render_markdown("```js\nconst x = 1;\nconst y", LIGHT)
    assert r.code_blocks == ["const x = 1;\nconst y"]


def test_plain_user_text_is_escaped_and_keeps_lines() -> None:
    r = render_plain("a < b\n<i>no</i>\n\u05e9\u05dc\u05d5\u05dd 😀 日本", LIGHT)
    assert "&lt;i&gt;" in r.html and "<br>" in r.html and "😀" in r.html and "日本" in r.html


def _visible(html: str) -> list[tuple[str, str | None]]:
    """(character, background) for the visible text of overlay output."""
    out = []
    colour = None
    for part in re.split(r"(<[^>]*>)", html):
        m = re.match(r'<span style="background-color:([^;]+);">', part)
        if m:
            colour = m.group(1)
        elif part == "</span>":
            colour = None
        elif not part.startswith("<"):
            out.extend((ch, colour) for ch in part)
    return out


def test_overlay_colours_each_character_by_its_source() -> None:
    raw = "Use **sorted** on `xs` now"
    runs = [[4, "target"], [2, "ngram"], [6, "draft"], [2, "ngram"], [12, "target"]]
    sources = char_sources(runs, len(raw))
    html = render_markdown(raw, LIGHT, sources).html
    shown = _visible(html)
    text = "".join(ch for ch, _ in shown).strip()
    assert text == "Use sorted on xs now"  # Markdown syntax gone, words intact

    def colours(word: str) -> set[str | None]:
        start = text.index(word)
        return {colour for _, colour in shown[start:start + len(word)]}

    assert colours("Use") == {None}  # the target's own tokens: no background
    assert colours("sorted") == {LIGHT.prov_draft_bg}  # accepted from the draft model
    assert colours("on xs now") == {None}
    # "**" around sorted came from the n-gram stage but is not shown; nothing else is blue
    assert LIGHT.prov_ngram_bg not in {colour for _, colour in shown}


def test_overlay_inside_code_and_chrome_untouched() -> None:
    raw = "```python\nprint(1)\n```\n"
    sources = ["target"] * 10 + ["draft"] * 8 + ["target"] * 5
    html = render_markdown(raw, LIGHT, sources).html
    drafted = "".join(ch for ch, colour in _visible(html) if colour == LIGHT.prov_draft_bg)
    assert drafted == "print(1)"
    assert CHROME_START not in html
    # the renderer's own label and copy link never get a provenance colour
    assert "Copy</a>" in html and ">python</span>" in html


def test_overlay_never_wraps_whitespace_between_blocks() -> None:
    html = overlay("<p>a</p>\n<p>b</p>", "a\n\nb", ["draft"] * 4, lambda s: "#0f0" if s == "draft" else None)
    assert "</p>\n<p>" in html  # a span here would become an empty paragraph


def test_sentinel_characters_in_model_output_are_neutralised() -> None:
    r = render_markdown(f"evil {CHROME_START}text", LIGHT, ["target"] * 10)
    assert CHROME_START not in r.html and "evil" in r.html
