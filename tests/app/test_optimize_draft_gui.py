"""The model manager's "Optimize draft for this computer": derives the catalog's
recorded variant of the installed draft as a background job, verifies it, and on the
user's yes makes it the draft setting (tiny models; the real 0.5B in
tests/engine/models/test_derive_real.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from app.settings_store import ModelChoice, SettingsStore
from engine.models.derive import VARIANTS, derive
from tests.helpers.fake_hub import catalog_entry, write_catalog
from tests.helpers.tiny_gguf import write_tiny_gguf

pytestmark = pytest.mark.gui


@pytest.fixture
def derive_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    models = tmp_path / "models"
    models.mkdir()
    target = write_tiny_gguf(models / "t.gguf").read_bytes()
    draft = write_tiny_gguf(models / "d.gguf", seed=1).read_bytes()
    expected = derive(models / "d.gguf", tmp_path / "expected.gguf", VARIANTS["q4_0"])
    entries = [catalog_entry("t", target, roles=("target",)), catalog_entry("d", draft, roles=("draft",))]
    entries.append({
        "id": "d-fast", "name": "D fast", "family": "tiny", "tokenizer": "tiny", "roles": ["draft"],
        "file": "d-fast.gguf", "size": expected.stat().st_size,
        "sha256": hashlib.sha256(expected.read_bytes()).hexdigest(), "license": "MIT",
        "sources": [{"type": "derived", "from": "d", "from_sha256": entries[1]["sha256"],
                     "recipe": VARIANTS["q4_0"].to_dict()}],
    })
    pairs = [{"id": "p", "target": "t", "draft": "d", "default": True}]
    monkeypatch.setenv("TANDEM_CATALOG", str(write_catalog(tmp_path / "models.json", entries, pairs)))
    monkeypatch.setenv("TANDEM_MODELS_DIR", str(models))
    store = SettingsStore()
    store.set_model_choice(ModelChoice(threads=1))
    store.sync()
    return {"models": models, "expected": expected}


def test_optimize_button_derives_then_switches_the_draft(qtbot, derive_world, open_window) -> None:
    window = open_window(boot=False).window
    manager = window.open_model_manager()
    qtbot.addWidget(manager)
    assert manager.optimize_button.isEnabled()
    assert manager.status_of("d-fast") == "not downloaded"
    manager.confirm = lambda *_a: True  # the offer to use it: yes
    manager.optimize_button.click()
    qtbot.waitUntil(lambda: manager.task is None, timeout=30000)
    assert "Optimized draft ready and verified" in manager.progress.label.text()
    assert manager.status_of("d-fast") == "✓ verified"
    made = (derive_world["models"] / "d-fast.gguf").read_bytes()
    assert made == derive_world["expected"].read_bytes()
    qtbot.waitUntil(lambda: window.settings.model_choice().draft == "d-fast", timeout=5000)
