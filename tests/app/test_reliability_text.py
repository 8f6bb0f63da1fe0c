"""Hostile or odd text through the window (issue 6, item 4).

- Model output full of HTML, scripts, stylesheets, file:/http: links and images, streamed
  through the real pipe in pieces cut anywhere (tests/app/scripted_engine.py): it renders
  as text or inert Markdown, no network request reaches a local server named in it, no
  resource is loaded, and nothing opens until a real mouse click plus a confirmation.
- Pasted input: emoji sequences, CJK, right-to-left text with bidi controls, combining
  marks and binary garbage go through the real engine (tiny models) and come back intact;
  the reply's text is exactly its tokens' bytes decoded in one go (streaming never split a
  character).  A 100k-character paste: tests/app/test_chat.py (clear error, app goes on).
- A conversation longer than the context is shortened with a visible notice, never a crash.
"""

from __future__ import annotations

import http.server
import json
import random
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QDesktopServices, QGuiApplication, QTextCursor

from app.settings_store import ModelChoice, SettingsStore
from app.store import ChatStore
from app.views.message_widget import MessageBrowser
from engine.llama.backend import LlamaModel
from tests.app.conftest import configure
from tests.app.helpers import TARGET
from tests.app.reliability_helpers import Recorder

pytestmark = pytest.mark.gui

SCRIPTED_ENGINE = Path(__file__).with_name("scripted_engine.py")


# ---------------------------------------------------------------- hostile output


class CountingServer:
    """A local HTTP server that records every request: none may ever arrive."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[CountingServer]:
    s = CountingServer()
    yield s
    s.close()


def hostile_text(url: str, canary: Path) -> str:
    return (
        f"<script>fetch('{url}/script')</script> <b>not bold</b>\n"
        f"<img src=\"{url}/img.png\"> <img src='file://{canary}'> <video src={url}/v.mp4></video>\n"
        f"<link rel=stylesheet href={url}/style.css><style>@import url({url}/import.css); "
        f"p {{ background: url({url}/bg.png) }}</style>\n"
        f"<iframe src={url}/frame></iframe><object data={url}/obj></object>\n"
        f"<a href=\"{url}/a\">html link</a> <a href='file:///etc/passwd'>file link</a>\n\n"
        f"![md image]({url}/md.png) ![local](file://{canary}) [md link]({url}/link) <{url}/auto>\n"
        "[js](javascript:alert(1)) [f](file:///etc/passwd) [data](data:text/html,<script>alert(1)</script>)\n\n"
        f"<table background={url}/tbl.png><tr><td>cell</td></tr></table> &lt;escaped&gt; &amp;\n\n"
        f"```html\n<img src=\"{url}/in-code.png\">\n```\n\n"
        "日本語 😀👍🏽👩‍👩‍👧‍👦 עברית مرحبا e\u0301\n"
    )


def anchor_point(browser: MessageBrowser, href: str) -> QPoint:
    """Where on screen (viewport coordinates) the anchor `href` is drawn."""
    doc = browser.document()
    block = doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            if fragment.charFormat().anchorHref() == href:
                cursor = QTextCursor(doc)
                cursor.setPosition(fragment.position() + max(fragment.length() // 2, 1) - 1)
                return browser.cursorRect(cursor).center() + QPoint(2, 0)
            it += 1
        block = block.next()
    raise AssertionError(f"no anchor {href} in the message")


def test_hostile_streamed_output_is_inert(qtbot, tiny_env, open_window, server, tmp_path, monkeypatch) -> None:
    canary = tmp_path / "canary.png"
    canary.write_bytes(b"\x89PNG not really")
    text = hostile_text(server.url, canary)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"text": text, "seed": 3}), encoding="utf-8")
    monkeypatch.setenv("SCRIPTED_ENGINE_TEXT", str(script))
    monkeypatch.setattr("app.engine_client.server_command", lambda: [__import__("sys").executable,
                                                                      str(SCRIPTED_ENGINE)])
    loaded: list[str] = []
    opened: list[str] = []
    asked: list[str] = []
    monkeypatch.setattr(MessageBrowser, "loadResource", lambda self, kind, url: loaded.append(url.toString()))
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(lambda url: opened.append(url.toString()) or True))
    configure(mode="off", max_tokens=100)

    window = open_window().window
    window.resize(1300, 900)
    monkeypatch.setattr(window, "confirm_link", lambda url: asked.append(url) or False)
    window.composer.edit.setPlainText(f"<img src='{server.url}/from-user.png'> <script>alert(1)</script>")
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    reply_id = window.chat.active.msg_id
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=30000)
    qtbot.wait(300)  # time for anything asynchronous (a network reply, a resource load) to happen

    reply = window.store.message(reply_id)
    assert reply.text == text  # every piece arrived whole, in order, no character split or lost
    widget = window.chat_view.message_widget(reply_id)
    widget.flush_render()
    assert widget.text == text
    shown = widget.browser.toPlainText()
    assert "<script>fetch(" in shown and "<b>not bold</b>" in shown and "<iframe src=" in shown  # as text
    assert "日本語 😀👍🏽👩‍👩‍👧‍👦 עברית مرحبا e\u0301" in shown
    html = widget.browser.toHtml().lower()
    for tag in ("<img", "<script", "<iframe", "<object", "<video", "<link"):
        assert tag not in html, tag  # (as text they are "&lt;img", ...)
    # the tags the renderer really emitted (escaped text has no "<"): none loads anything
    tags = re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)([^>]*)>", widget.rendered.html)
    assert not {name.lower() for name, _ in tags} & {"img", "script", "style", "iframe", "object", "video", "link"}
    assert not [attrs for _, attrs in tags if re.search(r"\b(src|background)\s*=|url\(", attrs)]
    hrefs = [href for href in widget.rendered.html.split('href="')[1:]]
    assert all(h.startswith(("link:", "copy:")) for h in hrefs)  # no real URL reaches Qt
    assert not any(link.startswith(("javascript:", "file:", "data:")) for link in widget.rendered.links)
    assert server.requests == [] and loaded == [] and opened == []
    user_widget = window.chat_view.message_widget(reply.parent_id)
    assert "<img src=" in user_widget.browser.toPlainText()

    # a real click on the Markdown link asks first; declined, nothing opens
    target = f"{server.url}/link"
    href = f"link:{widget.rendered.links.index(target)}"
    window.chat_view.scroll.ensureWidgetVisible(widget)
    qtbot.wait(50)
    point = anchor_point(widget.browser, href)
    qtbot.mouseMove(widget.browser.viewport(), point)  # hovering opens nothing
    assert asked == [] and opened == []
    qtbot.mouseClick(widget.browser.viewport(), Qt.MouseButton.LeftButton, pos=point)
    assert asked == [target] and opened == []
    monkeypatch.setattr(window, "confirm_link", lambda url: asked.append(url) or True)
    qtbot.mouseClick(widget.browser.viewport(), Qt.MouseButton.LeftButton, pos=point)
    assert opened == [target]  # only now, after a click and a yes
    assert server.requests == [] and loaded == []  # (the browser is the system's job, not ours)


# ---------------------------------------------------------------- odd input, real engine


def garbage(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(n)).decode("utf-8", errors="replace")


ODD_INPUTS = {
    "emoji": "👩‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 tone, 🇯🇵 flag, 𝕄𝕒𝕥𝕙 and a lone \u200d joiner",
    "cjk": "日本語のテキスト、中文字符和한국어 텍스트を混ぜる。全角ＡＢＣ",
    "rtl": "שלום עולם — مرحبا بالعالم \u202eevil.exe\u202c \u200fRLM\u200f and \u200eLRM\u200e",
    "combining": "Z\u0334\u0321\u0322a\u0338\u0322l\u0336g\u0335o\u0337 e\u0301 a\u030a \u0e01\u0e34\u0e4a",
    "garbage": garbage(600, 1),  # NUL, control characters and U+FFFD included
}


@pytest.fixture(scope="module")
def vocab(tiny_world: tuple[Path, Path]) -> Iterator[LlamaModel]:
    model = LlamaModel(str(tiny_world[0] / f"{TARGET}.gguf"), vocab_only=True)
    yield model
    model.close()


def test_odd_pasted_text_goes_through_the_real_engine_intact(qtbot, tiny_env, open_window, vocab, data_dir) -> None:
    # sampling at a high temperature: the tiny model then emits arbitrary byte tokens,
    # including the halves of multi-byte characters
    configure(mode="chain", max_tokens=48, temperature=1.5, top_k=0, top_p=1.0, seed=5)
    window = open_window().window
    recorder = Recorder(window)
    clipboard = QGuiApplication.clipboard()
    for name, text in ODD_INPUTS.items():
        window.new_chat()
        clipboard.setText(text)
        window.composer.edit.clear()
        window.composer.edit.paste()
        pasted = window.composer.text()
        assert pasted.replace("\n", "") == text.replace("\r", "").replace("\n", ""), name  # Qt: \r -> \n
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
        assert window.chat.busy, name
        reply_id = window.chat.active.msg_id
        qtbot.waitUntil(lambda: not window.chat.busy, timeout=60000)
        reply = window.store.message(reply_id)
        assert reply.finish in ("stop", "length") and not reply.error, (name, reply.error)
        question = window.store.message(reply.parent_id)
        assert question.text == pasted.strip("\n"), name  # stored exactly as pasted
        assert recorder.requests[recorder.last()][0][-1]["content"] == question.text  # sent exactly
        assert window.chat_view.message_widget(question.id).text == question.text
        assert window.store.conversation(window.chat.conv_id).title.strip()
        # what streamed, joined, is the reply's bytes decoded in one go: no character was split
        tokens = recorder.done[recorder.last()]["tokens"]
        raw = b"".join(vocab.token_bytes(t) for t in tokens if not vocab.eog_mask[t])
        assert reply.text == raw.decode("utf-8", errors="replace"), name
        assert window.chat_view.message_widget(reply_id).text == reply.text
    db = sqlite3.connect(data_dir / "chats.sqlite3")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    window.close()
    # ...and all of it reads back the same from the database
    store = ChatStore(data_dir / "chats.sqlite3")
    texts = {m.text for c in store.conversations() for m in store.branch(c.id) if m.role == "user"}
    store.close()
    assert {t.replace("\r", "\n").strip("\n") for t in ODD_INPUTS.values()} == texts


# ---------------------------------------------------------------- longer than the context


def test_a_conversation_longer_than_the_context_is_shortened_with_a_notice(qtbot, tiny_env, open_window,
                                                                           data_dir) -> None:
    prefs = SettingsStore()
    prefs.set_model_choice(ModelChoice(threads=1, n_ctx=512))
    prefs.sync()
    configure(mode="chain", max_tokens=24)
    store = ChatStore(data_dir / "chats.sqlite3")
    conv = store.create_conversation("a long one")
    parent = None
    for i in range(12):  # ~2,400 tokens of history for a 512-token context
        parent = store.add_message(conv.id, "user", f"Question {i}: " + "tell me more about this. " * 4, parent).id
        parent = store.add_message(conv.id, "assistant", f"Answer {i}: " + "here is more about it. " * 4, parent).id
    store.mark_opened(conv.id)
    store.close()

    window = open_window().window
    assert window.engine.info["n_ctx"] == 512
    before = len(window.chat.branch())
    window.composer.edit.setPlainText("And the last question?")
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    reply_id = window.chat.active.msg_id
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=60000)
    reply = window.store.message(reply_id)
    assert reply.finish in ("stop", "length") and not reply.interrupted and reply.text
    notice = window.banner.label.text()
    assert window.banner.isVisibleTo(window) and window.banner.kind == "warn", notice
    assert "longer than the context (512 tokens)" in notice and "were left out" in notice
    assert any("longer than the context" in n for n in reply.stats["notices"])  # kept with the reply
    assert len(window.chat.branch()) == before + 2  # the history itself is untouched
    # and it goes on: the next turn is shortened the same way
    window.composer.edit.setPlainText("One more?")
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=60000)
    assert window.chat.branch()[-1].finish in ("stop", "length")
