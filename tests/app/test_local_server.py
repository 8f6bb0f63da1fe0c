"""The Settings switch "Local server": the window's own engine process answers the
OpenAI-compatible API (engine/api) with the window's settings, shows the address in
the status bar, and stops serving when the switch goes off."""

from __future__ import annotations

import socket

import httpx
import pytest
from openai import OpenAI

from tests.app.conftest import configure
from tests.app.helpers import send_and_wait

pytestmark = pytest.mark.gui


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def switch_server(window, on: bool, port: int | None = None) -> None:
    """Through the Settings dialog, as a user does."""
    dialog = window.open_settings()
    dialog.tabs.setCurrentIndex(dialog.tabs.count() - 1)
    assert dialog.tabs.tabText(dialog.tabs.currentIndex()) == "Local server"
    dialog.server_enabled.setChecked(on)
    if port is not None:
        dialog.server_port.setValue(port)
    dialog.accept()


def test_the_local_server_switch_serves_the_windows_engine(qtbot, tiny_env, open_window):
    configure(mode="off", max_tokens=10)
    window = open_window().window
    mine = send_and_wait(qtbot, window, "hello")
    assert not window.status.server.isVisible()

    port = free_port()
    switch_server(window, True, port)
    qtbot.waitUntil(window.status.server.isVisible, timeout=20000)
    base = f"http://127.0.0.1:{port}/v1"
    assert window.status.server.text() == f"API {base}"
    assert window.settings.server().enabled and window.settings.server().port == port  # saved

    client = OpenAI(base_url=base, api_key="none", max_retries=0, timeout=60)
    assert "tandem" in [m.id for m in client.models.list().data]
    # no max_tokens, no temperature: the window's settings (10 tokens, greedy, no speculation)
    reply = client.chat.completions.create(model="tandem", messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content == mine.text
    assert reply.model_extra["tandem"]["mode"] == "off" and reply.usage.completion_tokens <= 10

    # the API follows the window's settings as they change
    window.set_spec_mode("ngram")

    def mode_now() -> str:
        r = client.chat.completions.create(model="tandem", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        return r.model_extra["tandem"]["mode"]

    qtbot.waitUntil(lambda: mode_now() == "ngram", timeout=10000)
    # and the window still answers, from the same engine
    assert send_and_wait(qtbot, window, "hello again").text

    switch_server(window, False)
    qtbot.waitUntil(lambda: not window.status.server.isVisible(), timeout=20000)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/models", timeout=5)


def test_a_port_in_use_is_reported_in_the_window(qtbot, tiny_env, open_window):
    configure(mode="off", max_tokens=4)
    window = open_window().window
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        switch_server(window, True, taken.getsockname()[1])
        qtbot.waitUntil(lambda: "could not start" in window.banner.label.text(), timeout=20000)
    assert "cannot listen" in window.banner.label.text()
    assert not window.status.server.isVisible()
    assert send_and_wait(qtbot, window, "still fine").text is not None  # the engine is unharmed


def test_a_saved_switch_starts_the_server_with_the_app_and_warns_about_the_network(qtbot, tiny_env, open_window):
    from app.settings_store import ServerPrefs, SettingsStore

    configure(mode="off", max_tokens=4)
    port = free_port()
    store = SettingsStore()
    store.set_server(ServerPrefs(enabled=True, port=port, api_key="k", network=True))
    store.sync()
    window = open_window().window
    qtbot.waitUntil(window.status.server.isVisible, timeout=20000)
    assert window.status.server.text() == f"API http://0.0.0.0:{port}/v1"
    # warned when the server starts, and again once the loading banners are done
    qtbot.waitUntil(lambda: "other computers on the network can reach it" in window.banner.label.text(),
                    timeout=60000)
    r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
    assert r.status_code == 401  # the saved API key is required
    r = httpx.get(f"http://127.0.0.1:{port}/health", headers={"Authorization": "Bearer k"}, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"
