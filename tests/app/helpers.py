"""Building blocks for the GUI tests: a catalog of tiny random GGUFs (a real engine
process that answers in a fraction of a second), and window lifecycle helpers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.helpers.tiny_gguf import write_tiny_gguf

TARGET = "tiny-target"
DRAFT = "tiny-draft"  # the same weights as the target: every greedy guess is accepted
OTHER = "tiny-other"  # another vocabulary size: incompatible with the target


def _entry(model_id: str, path: Path, roles: list[str], tokenizer: str = "tiny") -> dict:
    data = path.read_bytes()
    return {
        "id": model_id,
        "name": model_id.replace("-", " ").title(),
        "family": "tiny",
        "tokenizer": tokenizer,
        "roles": roles,
        "params": "1M",
        "file": path.name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "license": "MIT",
        "sources": [{"type": "hub", "repo": "test-org/tiny-GGUF", "file": path.name}],
    }


def make_tiny_world(root: Path) -> tuple[Path, Path]:
    """(models dir, catalog path) with tiny-target, tiny-draft and tiny-other."""
    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    target = write_tiny_gguf(models / f"{TARGET}.gguf", n_ctx=4096)
    draft = write_tiny_gguf(models / f"{DRAFT}.gguf", n_ctx=4096)
    other = write_tiny_gguf(models / f"{OTHER}.gguf", seed=2, vocab_extra=300)
    catalog = {
        "format": 1,
        "models": [
            _entry(TARGET, target, ["target"]),
            _entry(DRAFT, draft, ["draft"]),
            _entry(OTHER, other, ["draft"], tokenizer="other"),
        ],
        "pairs": [{"id": "tiny-pair", "target": TARGET, "draft": DRAFT, "default": True}],
    }
    path = root / "models.json"
    path.write_text(json.dumps(catalog, indent=1))
    return models, path


# ---------------------------------------------------------------- driving the window


def set_generation(window, mode: str | None = None, max_tokens: int | None = None, **fields: object) -> None:
    """Change what the next reply uses, through the window's own settings store."""
    gen = window.settings.generation()
    if max_tokens is not None:
        gen.max_tokens = max_tokens
    for key, value in fields.items():
        setattr(gen, key, value)
    if mode is not None:
        gen.spec.mode = mode
    window.settings.set_generation(gen)
    window.toggle_speculation(window.settings.spec_enabled())  # keep toolbar and status bar in step


def type_and_send(qtbot, window, text: str) -> None:
    """Type into the input box and press Enter, as a user does."""
    from PySide6.QtCore import Qt

    edit = window.composer.edit
    edit.setPlainText(text)
    qtbot.keyClick(edit, Qt.Key.Key_Return)


def send_and_wait(qtbot, window, text: str, timeout_s: float = 60):
    """Send `text` and wait for the reply to finish; return the reply's stored Message."""
    assert window.chat.can_send(), f"cannot send: engine {window.engine.state}, busy {window.chat.busy}"
    type_and_send(qtbot, window, text)
    assert window.chat.busy, "the message was not sent"
    reply_id = window.chat.active.msg_id
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=int(timeout_s * 1000))
    msg = window.store.message(reply_id)
    assert msg is not None
    return msg
