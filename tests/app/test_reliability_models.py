"""Hostile model files through the window (issue 6, item 3).

The header check itself (tests/engine/llama/test_gguf_check.py), the sandboxed chat template
(tests/engine/llama/test_chat_template.py) and quarantine on download (tests/engine/models/
test_provision.py, tests/app/test_models_gui.py) have their own tests.  Here the
configured model is such a file: the window shows a clear one-line reason, the engine
process survives (the file was refused before llama.cpp parsed it), the conversation
stays, and going back to the previous models works.  And a model file that no longer
matches its checksum is quarantined at start and never reaches the engine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from app.engine_client import EngineClient
from app.settings_store import ModelChoice, SettingsStore
from tests.app.helpers import DRAFT, TARGET, send_and_wait
from tests.app.reliability_helpers import EARLIER, seed_conversation
from tests.helpers.hostile_gguf import hostile_files

pytestmark = pytest.mark.gui


def _entry(model_id: str, data: bytes, roles: list[str]) -> dict:
    return {"id": model_id, "name": model_id, "family": "tiny", "tokenizer": "tiny", "roles": roles,
            "params": "1M", "file": f"{model_id}.gguf", "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "license": "MIT",
            "sources": [{"type": "hub", "repo": "test-org/tiny-GGUF", "file": f"{model_id}.gguf"}]}


@pytest.fixture
def hostile_world(tmp_path: Path, tiny_world: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> dict:
    """The tiny pair plus hostile "targets", each listed in the catalog with its own
    checksum (a catalog or models.json the user was talked into using)."""
    src, _ = tiny_world
    models = tmp_path / "models"
    models.mkdir()
    canary = tmp_path / "pwned"
    entries = []
    for model_id, roles in ((TARGET, ["target"]), (DRAFT, ["draft"])):
        data = (src / f"{model_id}.gguf").read_bytes()
        (models / f"{model_id}.gguf").write_bytes(data)
        entries.append(_entry(model_id, data, roles))
    expected = {}
    for model_id, (data, message) in hostile_files((src / f"{TARGET}.gguf").read_bytes(), canary).items():
        (models / f"{model_id}.gguf").write_bytes(data)
        entries.append(_entry(model_id, data, ["target"]))
        expected[model_id] = message
    catalog = tmp_path / "models.json"
    catalog.write_text(json.dumps({"format": 1, "models": entries,
                                   "pairs": [{"id": "p", "target": TARGET, "draft": DRAFT, "default": True}]}))
    monkeypatch.setenv("TANDEM_MODELS_DIR", str(models))
    monkeypatch.setenv("TANDEM_CATALOG", str(catalog))
    prefs = SettingsStore()
    prefs.set_model_choice(ModelChoice(threads=1))  # see tests/app/conftest.py
    prefs.sync()
    return {"models": models, "expected": expected, "canary": canary}


def test_hostile_model_files_are_refused_with_a_clear_message_and_the_app_goes_on(
        qtbot, hostile_world, open_window, data_dir) -> None:
    from tests.app.conftest import configure

    configure(mode="chain", max_tokens=6)
    conv_id = seed_conversation(data_dir)
    window = open_window().window
    pid = window.client.pid
    good = window.engine.choice
    for model_id, message in hostile_world["expected"].items():
        window.engine.apply_choice(ModelChoice(target=model_id, draft="none", threads=1))
        qtbot.waitUntil(lambda: window.engine.state == "load_failed", timeout=30000)
        text = window.banner.label.text()
        assert window.banner.kind == "error" and text.startswith("Could not load the models: "), text
        assert message in text and "\n" not in text, text  # one clear line
        if model_id != "evil-template":  # the header check's own words, naming the file: not llama.cpp's
            assert text.endswith(f"{model_id}.gguf"), text
        assert window.client.pid == pid and window.client.running  # refused, not crashed
        assert window.isVisible() and not window.composer.button.isEnabled()
        assert [(m.role, m.text) for m in window.chat.branch()] == EARLIER and window.chat.conv_id == conv_id
        window.banner.buttons["Use the previous models"].click()
        qtbot.waitUntil(lambda: window.engine.ready, timeout=30000)
        assert window.engine.choice == good
    assert not hostile_world["canary"].exists()  # the template injection ran nothing
    assert send_and_wait(qtbot, window, "and now?").finish in ("stop", "length")


def test_a_model_that_fails_its_checksum_is_quarantined_and_never_loaded(
        qtbot, hostile_world, open_window, data_dir, monkeypatch) -> None:
    models = hostile_world["models"]
    target = models / f"{TARGET}.gguf"
    data = bytearray(target.read_bytes())
    data[-100] ^= 0xFF  # a flipped weight byte: the header is fine, only the checksum can tell
    target.write_bytes(bytes(data))
    loads: list[object] = []
    monkeypatch.setattr(EngineClient, "load", lambda self, load: loads.append(load) or "load-x")
    seed_conversation(data_dir)

    parts = open_window(wait_ready=False)
    window = parts.window
    qtbot.waitUntil(lambda: window.engine.state == "missing", timeout=30000)
    assert loads == [] and not window.client.running  # the engine never saw it
    assert not target.exists()
    assert (models / "quarantine" / f"{TARGET}.gguf.bad").read_bytes() == bytes(data)
    assert window.stack.currentWidget() is window.first_run
    # the history is still readable
    window.chat.reopen_last()
    assert [(m.role, m.text) for m in window.chat.branch()] == EARLIER
