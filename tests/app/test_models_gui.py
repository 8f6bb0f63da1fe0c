"""Models in the GUI: the draft picker's compatibility check, reloading on a settings
change without losing the chat, the model manager's downloads through a local
stand-in for the Hugging Face Hub (progress, cancel and resume, checksum failure,
verify, delete, import), and the first-run screen provisioning the default pair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.settings_store import ModelChoice, SettingsStore
from app.views.model_manager import ModelManager
from app.views.settings_dialog import ID_ROLE
from engine.models import hub as hub_source
from engine.models import provision
from tests.app.helpers import DRAFT, OTHER, TARGET, send_and_wait
from tests.helpers.fake_hub import FakeHub, catalog_entry, write_catalog

pytestmark = pytest.mark.gui

REPO = "test-org/tiny-GGUF"


def test_draft_picker_disables_incompatible_drafts_with_reason(qtbot, tiny_env, open_window) -> None:
    window = open_window(boot=False).window
    dialog = window.open_settings()
    assert dialog.target.currentData(ID_ROLE) == TARGET
    qtbot.waitUntil(lambda: dialog.draft_item_enabled(OTHER) is False, timeout=10000)
    assert dialog.draft_item_enabled(DRAFT) is True
    assert dialog.incompatible.keys() == {OTHER}
    assert "vocab sizes differ" in dialog.incompatible[OTHER]
    item = next(dialog.draft.model().item(r) for r in range(dialog.draft.count())
                if dialog.draft.model().item(r).data(ID_ROLE) == OTHER)
    assert "incompatible" in item.text() and "vocab sizes differ" in item.toolTip()
    assert dialog.draft.currentData(ID_ROLE) == DRAFT  # the default pair's draft stays selected
    dialog.reject()


def test_reload_on_settings_change_keeps_the_chat(qtbot, tiny_env, open_window) -> None:
    from tests.app.conftest import configure

    configure(mode="off", max_tokens=6)
    window = open_window().window
    reply = send_and_wait(qtbot, window, "keep me")
    assert window.engine.info["n_ctx"] == 4096
    states: list[str] = []
    window.engine.state_changed.connect(states.append)

    dialog = window.open_settings()
    dialog.n_ctx.setValue(1024)
    assert dialog.needs_reload() and "reload" in dialog.reload_note.text()
    dialog.accept()
    assert window.banner.isVisibleTo(window) and window.banner.progress.isVisibleTo(window)  # progress shown
    qtbot.waitUntil(lambda: window.engine.ready and window.engine.info and window.engine.info["n_ctx"] == 1024,
                    timeout=60000)
    assert "loading" in states
    assert window.settings.model_choice().n_ctx == 1024
    assert [m.id for m in window.chat.branch()][-1] == reply.id  # the chat is untouched
    assert window.chat_view.message_widget(reply.id).text == reply.text
    assert send_and_wait(qtbot, window, "and after the reload").text


def test_choosing_no_draft_model_reloads_without_it(qtbot, tiny_env, open_window) -> None:
    window = open_window().window
    assert window.engine.info["draft"] is not None
    dialog = window.open_settings()
    dialog.draft.setCurrentIndex(dialog.draft.findData("none", ID_ROLE))
    dialog.accept()
    qtbot.waitUntil(lambda: window.engine.ready and window.engine.info["draft"] is None, timeout=60000)
    assert "no draft model" in window.status.pair.text()


# ---------------------------------------------------------------- downloads


@pytest.fixture
def hub_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_world: tuple[Path, Path]):
    """An empty models directory, a catalog of Hub-only tiny models and a FakeHub
    serving them: `good` (honest), `bad` (serves other bytes than it advertises)."""
    models_src, _ = tiny_world
    good = (models_src / f"{DRAFT}.gguf").read_bytes()
    target = (models_src / f"{TARGET}.gguf").read_bytes()
    models = tmp_path / "models"
    models.mkdir()
    entries = [
        catalog_entry("tiny-target", target, repo=REPO, roles=("target",)),
        catalog_entry("good", good, repo=REPO, roles=("draft",)),
        catalog_entry("bad", good, repo=REPO, roles=("draft",)),
    ]
    pairs = [{"id": "p", "target": "tiny-target", "draft": "good", "default": True}]
    monkeypatch.setenv("TANDEM_CATALOG", str(write_catalog(tmp_path / "models.json", entries, pairs)))
    monkeypatch.setenv("TANDEM_MODELS_DIR", str(models))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub_source, "_HUB_CHUNK", 16 * 1024)  # many progress steps for a 440 kB file
    prefs = SettingsStore()
    prefs.set_model_choice(ModelChoice(threads=1))  # see tiny_env
    prefs.sync()
    with FakeHub(bytes_per_second=600_000) as hub:
        hub.add_file(REPO, "tiny-target.gguf", target)
        hub.add_file(REPO, "good.gguf", good)
        hub.add_file(REPO, "bad.gguf", good, serve=good[:-1000] + b"\0" * 1000)
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        yield {"hub": hub, "models": models, "good": good, "target": target}


def _manager(qtbot, open_window) -> ModelManager:
    window = open_window(boot=False).window
    manager = window.open_model_manager()
    qtbot.addWidget(manager)
    return manager


def test_download_with_progress_then_verify_and_delete(qtbot, hub_world, open_window) -> None:
    manager = _manager(qtbot, open_window)
    assert manager.status_of("good") == "not downloaded"
    manager.select("good")
    assert manager.download_button.isEnabled()
    values: list[int] = []
    manager.download_button.click()
    manager.task.progress.connect(lambda *_a: values.append(manager.progress.bar.value()))
    assert not manager.download_button.isEnabled() and manager.progress.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: manager.task is None, timeout=30000)

    assert "Downloaded and verified" in manager.progress.label.text()
    assert manager.status_of("good") == "✓ verified"
    assert (hub_world["models"] / "good.gguf").read_bytes() == hub_world["good"]
    moving = [v for v in values if 0 < v < 1000]
    assert len(set(moving)) >= 3, f"progress should move in steps, saw {values}"
    assert moving == sorted(moving)

    manager.select("good")
    manager.verify_button.click()
    qtbot.waitUntil(lambda: manager.task is None, timeout=30000)
    assert manager.last_result.ok and "ok" in manager.progress.label.text()

    manager.confirm = lambda *_a: True
    manager.select("good")
    manager.delete_button.click()
    assert manager.status_of("good") == "not downloaded"
    assert not (hub_world["models"] / "good.gguf").exists()


def test_cancelled_download_resumes(qtbot, hub_world, open_window) -> None:
    hub = hub_world["hub"]
    hub.bytes_per_second = 150_000  # slow enough that Cancel lands mid-body
    manager = _manager(qtbot, open_window)
    manager.select("good")
    manager.download_button.click()
    qtbot.waitUntil(lambda: 0 < manager.progress.bar.value() < 1000, timeout=30000)
    manager.progress.cancel_button.click()
    qtbot.waitUntil(lambda: manager.task is None, timeout=30000)
    assert "Cancelled" in manager.progress.label.text() and "resume" in manager.progress.label.text()
    assert manager.status_of("good") == "not downloaded"
    partial = list((hub_world["models"] / ".partial").glob("good.gguf.*part"))
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < len(hub_world["good"])
    kept = partial[0].stat().st_size

    hub.bytes_per_second = None
    manager.select("good")
    manager.download_button.click()
    qtbot.waitUntil(lambda: manager.task is None, timeout=30000)
    assert manager.status_of("good") == "✓ verified"
    assert hub.ranges("good.gguf")[-1] == f"bytes={kept}-"  # resumed, not restarted


def test_checksum_failure_is_reported_and_quarantined(qtbot, hub_world, open_window) -> None:
    manager = _manager(qtbot, open_window)
    manager.select("bad")
    manager.download_button.click()
    qtbot.waitUntil(lambda: manager.task is None, timeout=30000)
    text = manager.progress.label.text()
    assert "checksum mismatch" in text and "quarantine" in text
    assert manager.status_of("bad") == "not downloaded"
    assert not (hub_world["models"] / "bad.gguf").exists()
    assert (hub_world["models"] / "quarantine" / "bad.gguf.bad").exists()
    assert manager.download_button.isEnabled()  # a retry is possible


def test_import_local_gguf(qtbot, hub_world, open_window, tiny_world) -> None:
    manager = _manager(qtbot, open_window)
    path = tiny_world[0] / f"{OTHER}.gguf"
    manager.import_file(str(path))
    qtbot.waitUntil(lambda: manager.task is None, timeout=30000)
    assert "Imported" in manager.progress.label.text()
    local = [m for m in provision.list_models() if m.source == "local"]
    assert [m.path for m in local] == [path.resolve()]
    assert manager.status_of(local[0].id) == "✓ verified"


def test_first_run_screen_provisions_the_default_pair(qtbot, hub_world, open_window) -> None:
    parts = open_window(wait_ready=False)
    window = parts.window
    qtbot.waitUntil(lambda: window.engine.state == "missing", timeout=30000)
    page = window.first_run
    assert window.stack.currentWidget() is page
    assert page.title.text() == "Welcome to Tandem"
    assert "offline" in page.text.text() and str(hub_world["models"]) in page.text.text()
    assert "Tiny-Target" in page.models.text() and "target" in page.models.text()
    assert not window.composer.button.isEnabled()
    page.download_button.click()
    qtbot.waitUntil(lambda: page.progress.bar.value() > 0, timeout=30000)
    assert "model 1 of 2" in page.progress.label.text()
    qtbot.waitUntil(lambda: window.engine.ready, timeout=60000)
    assert window.stack.currentIndex() == 0
    assert (hub_world["models"] / "tiny-target.gguf").exists() and (hub_world["models"] / "good.gguf").exists()
    loaded = window.engine.info
    assert Path(loaded["target"]["path"]).name == "tiny-target.gguf"
    assert json.loads(json.dumps(loaded))["draft"]["name"] == "good.gguf"


def test_load_notices_are_shown(qtbot, tiny_env, open_window) -> None:
    prefs = SettingsStore()
    prefs.set_model_choice(ModelChoice(threads=1, gpu_layers=7))  # this build has no GPU
    prefs.sync()
    window = open_window().window
    if not window.engine.info.get("notices"):
        pytest.skip("this llama.cpp build offloads to a GPU: no notice to show")
    assert window.banner.isVisibleTo(window) and window.banner.kind == "warn"
    assert "GPU" in window.banner.label.text()
    assert window.chat.can_send()  # a notice, not a failure
