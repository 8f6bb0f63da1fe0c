"""Settings → "Forget speculation history" deletes what the engine kept of earlier replies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from tests.app.conftest import configure
from tests.app.helpers import send_and_wait

pytestmark = pytest.mark.gui

REPETITIVE = "hello hello hello hello hello world hello"


def history_files() -> list[Path]:
    return list((Path(os.environ["TANDEM_DATA_DIR"]) / "speculation").glob("*/history.bin"))


def test_forget_button_deletes_the_history(qtbot, tiny_env, open_window, monkeypatch) -> None:
    configure(mode="ngram", max_tokens=40)
    window = open_window().window
    send_and_wait(qtbot, window, REPETITIVE)
    assert history_files(), "a finished reply joins the speculation history"

    dialog = window.open_settings()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(window.engine.client.history_forgotten, timeout=20000) as forgotten:
        dialog.forget_button.click()
    assert forgotten.args[1] >= 1
    assert not history_files()
    assert not dialog.forget_button.isEnabled()
