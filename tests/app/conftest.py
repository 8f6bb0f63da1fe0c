"""Fixtures for the GUI tests.

Every test gets its own data directory (chats, registered models) and its own
QSettings scope (an INI file under tmp_path), so nothing touches the user's files.
The cost-measurement cache stays per session (tests/conftest.py), so each model is
measured once.  Tiny-model tests point TANDEM_MODELS_DIR / TANDEM_CATALOG at a
catalog of tiny random GGUFs: a real engine process that answers in milliseconds.
"""

from __future__ import annotations

import os
from pathlib import Path

# offscreen, with a desktop-sized screen (the plugin's default is 800x600, smaller
# than the window, which would make geometry tests meaningless)
_SCREEN = Path(__file__).with_name("offscreen.json")
if os.environ.get("QT_QPA_PLATFORM", "offscreen") == "offscreen":
    os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={_SCREEN}"

from collections.abc import Callable, Iterator  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

from app.qt_compat import ensure_none_survives  # noqa: E402

ensure_none_survives()

from app.main import AppParts, build_window, make_application  # noqa: E402
from app.settings_store import ModelChoice, SettingsStore  # noqa: E402
from tests.app.helpers import make_tiny_world  # noqa: E402

ENGINE_START_S = 60  # loading includes measuring decode costs the first time in a session


@pytest.fixture(autouse=True)
def settings_scope(qapp, tmp_path: Path) -> Path:
    """QSettings() in the app resolves to an INI file in this test's tmp_path."""
    make_application()  # organisation / application names, as the app sets them
    scope = tmp_path / "qsettings"
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(scope))
    return scope


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("TANDEM_DATA_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_tiny_world(tmp_path_factory.mktemp("tiny-world"))


@pytest.fixture
def tiny_env(tiny_world: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    models, catalog = tiny_world
    monkeypatch.setenv("TANDEM_MODELS_DIR", str(models))
    monkeypatch.setenv("TANDEM_CATALOG", str(catalog))
    # one llama.cpp thread: on a 2-core machine two threads stall for ~0.3 s per
    # decode whenever the GUI process takes a core (see the report to the engine)
    store = SettingsStore()
    store.set_model_choice(ModelChoice(threads=1))
    store.sync()
    return tiny_world


def configure(mode: str = "off", max_tokens: int = 24, **generation: object) -> None:
    """Generation settings for the next window (or the next reply of an open one)."""
    store = SettingsStore()
    gen = store.generation()
    gen.max_tokens = max_tokens
    for key, value in generation.items():
        setattr(gen, key, value)
    gen.spec.mode = mode
    store.set_generation(gen)
    store.sync()


@pytest.fixture
def open_window(qtbot) -> Iterator[Callable[..., AppParts]]:
    """Open main windows like the app does; each is closed (engine shut down) after the test."""
    opened: list[AppParts] = []

    def open_(*, boot: bool = True, wait_ready: bool = True) -> AppParts:
        parts = build_window(boot=boot)
        window = parts.window
        window.show()
        window.activateWindow()  # window shortcuts (Esc, Ctrl+N) need the active window
        qtbot.waitUntil(window.isActiveWindow, timeout=5000)
        opened.append(parts)
        if boot and wait_ready:
            wait_ready_fn(qtbot, parts)
        return parts

    yield open_
    for parts in opened:
        close(parts)


def close(parts: AppParts) -> None:
    window = parts.window
    if window.isVisible() or window.engine.client.running:
        window.close()
    parts.store.close()


def wait_ready_fn(qtbot, parts: AppParts, timeout_s: float = ENGINE_START_S) -> None:
    window = parts.window
    qtbot.waitUntil(lambda: window.engine.ready or window.engine.state in ("load_failed", "crashed", "missing"),
                    timeout=int(timeout_s * 1000))
    assert window.engine.ready, f"engine not ready: {window.engine.state}; {window.banner.label.text()}"


@pytest.fixture
def wait_ready(qtbot):
    return lambda parts, timeout_s=ENGINE_START_S: wait_ready_fn(qtbot, parts, timeout_s)
