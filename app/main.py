"""`tandem` with no arguments: the desktop app.

run_app builds the QApplication, the theme, the history store and the main window.
`build_window` is the same without exec(), for tests and scripts/screenshot.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QCoreApplication, QSettings
from PySide6.QtWidgets import QApplication, QMessageBox

from app import icons
from app.qt_compat import ensure_none_survives
from app.settings_store import SettingsStore
from app.store import DB_NAME, ChatStore, StoreError
from app.theme import ThemeManager
from engine.models.paths import data_dir

if TYPE_CHECKING:  # the window module is imported lazily: its widgets need the QApplication first
    from app.views.main_window import MainWindow

ORGANIZATION = "Tandem"
APPLICATION = "Tandem"


@dataclass
class AppParts:
    app: QApplication
    theme: ThemeManager
    store: ChatStore
    settings: SettingsStore
    window: MainWindow


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tandem",
        description="Tandem desktop app (`tandem --self-test` checks an install headless: app/self_test.py)")
    # Qt's own options (-platform, -style, ...) pass through to QApplication
    args, _qt_args = parser.parse_known_args(list(argv))
    return args


def make_application(argv: Sequence[str] = ()) -> QApplication:
    ensure_none_survives()  # PySide6 6.12.0 + Python 3.11 would abort after a few thousand Qt calls
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "tandem", *argv])
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("Tandem")
    app.setWindowIcon(icons.app_icon())
    return app  # type: ignore[return-value]


def build_window(settings: QSettings | None = None, *, boot: bool = True) -> AppParts:
    """Everything run_app shows, without entering the event loop."""
    from app.views.main_window import MainWindow

    app = make_application()
    prefs = SettingsStore(settings)
    theme = ThemeManager.for_app(app, prefs.ui().theme)
    store = ChatStore(data_dir() / DB_NAME)
    window = MainWindow(store, prefs, theme, boot=boot)
    return AppParts(app, theme, store, prefs, window)


def run_app(argv: Sequence[str] = ()) -> int:
    parse_args(argv)  # --help; Qt's own options pass through
    app = make_application(argv)
    try:
        parts = build_window()
    except StoreError as exc:
        QMessageBox.critical(None, "Tandem", str(exc))
        return 1
    parts.window.show()
    code = app.exec()
    parts.store.close()
    return code


if __name__ == "__main__":
    sys.exit(run_app(sys.argv[1:]))
