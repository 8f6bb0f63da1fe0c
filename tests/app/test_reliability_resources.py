"""Resources through the window (issue 6, item 7): a pair that does not fit in memory, or
more GPU layers than exist, gives a clear message and a usable app, never a crash or a
frozen window.  TANDEM_MEMORY_LIMIT makes engine/models/resources.py believe memory is small
(the engine process reads it when it starts)."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QTimer

from app.settings_store import ModelChoice, SettingsStore
from app.views.settings_dialog import ID_ROLE
from tests.app.conftest import configure
from tests.app.helpers import send_and_wait
from tests.app.reliability_helpers import EARLIER, seed_conversation

pytestmark = pytest.mark.gui

# each tiny model needs ~0.3 GB by the estimate (file + KV cache + 300 MB of compute
# buffers): the pair does not fit in 450 MB, the target alone does
LIMIT = 450 * 2**20


class Heartbeat:
    """Ticks of the GUI thread's event loop: the longest gap shows a frozen window."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.longest = 0.0
        self.timer = QTimer()
        self.timer.timeout.connect(self._tick)
        self.timer.start(20)

    def _tick(self) -> None:
        now = time.monotonic()
        self.longest = max(self.longest, now - self.last)
        self.last = now


def test_a_pair_too_big_for_memory_is_explained_and_a_smaller_choice_loads(
        qtbot, tiny_env, open_window, data_dir, monkeypatch) -> None:
    configure(mode="off", max_tokens=6)
    seed_conversation(data_dir)
    monkeypatch.setenv("TANDEM_MEMORY_LIMIT", str(LIMIT))
    parts = open_window(wait_ready=False)
    window = parts.window
    # from the moment the window exists: building it is the GUI thread's own work, what
    # must never freeze it is the engine loading (or refusing) in the background
    heartbeat = Heartbeat()
    qtbot.waitUntil(lambda: window.engine.state in ("load_failed", "crashed", "ready"), timeout=60000)
    assert window.engine.state == "load_failed"
    text = window.banner.label.text()
    assert window.banner.kind == "error" and text.startswith("Could not load the models: "), text
    assert "tiny-target.gguf and tiny-draft.gguf" in text
    assert "GB of memory but only 0.4 GB is free" in text and "smaller models or a smaller context" in text
    assert "Settings…" in window.banner.buttons and "Model manager…" in window.banner.buttons
    assert window.client.running  # refused before loading: the engine process is fine
    assert not window.composer.button.isEnabled() and "could not be loaded" in window.composer.hint.text()
    assert [(m.role, m.text) for m in window.chat.branch()] == EARLIER  # history readable
    assert heartbeat.longest < 1.0, f"the window froze for {heartbeat.longest:.2f} s"

    # the user follows the advice: Settings, no draft model, OK -> the target alone fits
    window.banner.buttons["Settings…"].click()
    dialog = window.settings_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.draft.setCurrentIndex(dialog.draft.findData("none", ID_ROLE))
    dialog.accept()
    qtbot.waitUntil(lambda: window.engine.state in ("load_failed", "crashed", "ready"), timeout=60000)
    assert window.engine.ready, window.banner.label.text()
    assert "no draft model" in window.status.pair.text()
    assert send_and_wait(qtbot, window, "does it work now?").finish in ("stop", "length")
    assert heartbeat.longest < 1.0, f"the window froze for {heartbeat.longest:.2f} s"


def test_more_gpu_layers_than_exist_is_explained_and_the_app_works(qtbot, tiny_env, open_window) -> None:
    configure(mode="chain", max_tokens=6)
    prefs = SettingsStore()
    prefs.set_model_choice(ModelChoice(threads=1, gpu_layers=999, draft_gpu_layers=999))
    prefs.sync()
    window = open_window().window
    text = window.banner.label.text()
    assert window.banner.isVisibleTo(window) and window.banner.kind == "warn", text
    # a CPU build says it has no GPU; a GPU build offloads the 2 layers there are (+ output)
    assert ("no GPU support" in text) or ("has 2 layers: offloading all of them (asked for 999)" in text), text
    assert "target" in text and "draft" in text
    assert window.chat.can_send()
    reply = send_and_wait(qtbot, window, "hello")
    assert reply.finish in ("stop", "length") and reply.stats["accepted"]["draft"] >= 0
