"""The app in a child process, for tests that kill it: opens the window on the tiny
models (paths from the environment), sends one long question and reports on stdout
as the reply streams:  ENGINE <pid>, MSG <id>, LEN <characters shown>."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings, QTimer

from app.main import build_window, make_application
from app.settings_store import ModelChoice, SettingsStore


def main() -> int:
    app = make_application()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, os.environ["CHILD_QSETTINGS"])
    prefs = SettingsStore()
    prefs.set_model_choice(ModelChoice(threads=1))
    gen = prefs.generation()
    gen.max_tokens = 3000
    gen.spec.mode = "off"
    prefs.set_generation(gen)
    prefs.sync()
    parts = build_window()
    window = parts.window
    window.show()

    def report(msg_id: int) -> None:
        print(f"LEN {len(window.chat.active.text)}", flush=True)

    def start() -> None:
        if not window.engine.ready:
            QTimer.singleShot(50, start)
            return
        print(f"ENGINE {window.client.pid}", flush=True)
        window.chat.reply_updated.connect(report)
        window.send(sys.argv[1])
        print(f"MSG {window.chat.active.msg_id}", flush=True)

    start()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
