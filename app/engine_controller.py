"""The engine's lifecycle as the window sees it: find the models, start the process,
load, reload with new settings, survive crashes, restart on request.

States (`state`):
    checking     resolving the chosen models on disk (may hash a new file; in a Task)
    missing      a chosen model is not on this machine (first-run screen)
    loading      process starting and/or a "load" request in flight
    ready        models loaded, idle or generating (ChatController tracks replies)
    load_failed  the engine said no (bad file, too many GPU layers, ...); process alive
    crashed      the engine process died; `restart()` brings it back
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from app import model_choice
from app.engine_client import EngineClient
from app.jobs import Task
from app.model_choice import Resolved
from app.settings_store import ModelChoice, ServerPrefs, SettingsStore
from engine.settings import GenerationSettings, LoadSettings

STATES = ("checking", "missing", "loading", "ready", "load_failed", "crashed")


class EngineController(QObject):
    state_changed = Signal(str)
    progress = Signal(str)  # what loading is doing now, in words
    loaded = Signal(dict)  # the engine's "loaded" event
    load_failed = Signal(str)
    crashed = Signal(str, str)  # what happened, engine stderr tail
    models_missing = Signal(object)  # Resolved
    baseline_changed = Signal(float)
    measure_started = Signal()
    measure_result = Signal(str, str)  # what "Re-measure plain speed" found, banner kind ("info"/"warn"/"error")
    server_changed = Signal(str, str)  # local server address ("" when off), a warning or why it failed ("")

    def __init__(self, client: EngineClient, settings: SettingsStore, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.settings = settings
        self.state = "checking"
        self.choice: ModelChoice = settings.model_choice()
        self.resolved: Resolved | None = None
        self.info: dict[str, Any] | None = None  # last "loaded" event
        self.load_settings: LoadSettings | None = None
        self.good_choice: ModelChoice | None = None  # last choice that loaded
        self.crashed_while = ""  # "loading" or "" (crash during a reply or idle)
        self._load_id: str | None = None
        self._measure_id: str | None = None
        self._resolve_task: Task | None = None
        # the "Local server" switch: the API runs inside the engine process (engine/api), so it
        # follows the process: started with each one, gone with a crash, back with a restart
        self.server_prefs: ServerPrefs = settings.server()
        self.server_url = ""
        self._serve_id: str | None = None
        client.ready.connect(lambda _pid: self.server_prefs.enabled and self._send_server())
        client.serving.connect(self._on_serving)
        client.unserved.connect(lambda req_id: req_id == self._serve_id and self._server_is("", ""))
        client.loading.connect(self._on_loading)
        client.loaded.connect(self._on_loaded)
        client.error.connect(self._on_error)
        client.crashed.connect(self._on_crashed)
        client.measured.connect(self._on_measured)

    # ---------------------------------------------------------------- actions

    def boot(self, choice: ModelChoice | None = None) -> None:
        """Resolve `choice` (default: the saved one) and load it, starting the
        process if needed.  The current chat is untouched throughout."""
        if choice is not None:
            self.choice = choice
        self._set_state("checking")
        self.progress.emit("Looking for the models on this computer…")
        if self._resolve_task is not None:
            self._resolve_task.cancel()
        chosen = self.choice
        task = Task(lambda _progress, _cancel: model_choice.resolve(chosen), "resolve models")
        task.succeeded.connect(lambda resolved, c=chosen, t=task: self._on_resolved(t, c, resolved))
        task.failed.connect(lambda message, _kind, t=task: self._on_resolve_failed(t, message))
        self._resolve_task = task
        task.start()

    def apply_choice(self, choice: ModelChoice) -> None:
        """Save a new choice and reload if it differs from what is loaded."""
        changed = choice != self.choice or self.state in ("load_failed", "crashed", "missing")
        self.settings.set_model_choice(choice)
        if changed:
            self.boot(choice)

    def revert(self) -> None:
        """Go back to the last models that loaded (after a failed or crashing load)."""
        if self.good_choice is not None:
            self.apply_choice(self.good_choice)

    def restart(self) -> None:
        """After a crash: a fresh engine process with the same models."""
        self.client.restart()
        if self.load_settings is not None:
            self._load(self.load_settings)
        else:
            self.boot()

    def remeasure(self) -> None:
        """Measure the decode-cost curve and plain decoding again; the outcome comes back
        as `measure_result` (after a reply in progress, which the engine finishes first)."""
        if self.state != "ready":
            self.measure_result.emit("Plain speed can be measured once the models are loaded.", "warn")
            return
        if self._measure_id is not None:
            return  # one is running
        self._measure_id = self.client.measure()
        self.measure_started.emit()

    def apply_server(self, prefs: ServerPrefs) -> None:
        """Save the local server switch and apply it to the running engine process."""
        changed = prefs != self.server_prefs
        self.settings.set_server(prefs)
        self.server_prefs = prefs
        if changed and self.client.running:
            self._send_server()

    def sync_server_settings(self, gen: GenerationSettings) -> None:
        """The API answers with the window's settings (speculation mode, sampling, max tokens)."""
        if self.server_prefs.enabled and self.client.running:
            self.client.serve_settings(gen)

    def _send_server(self) -> None:
        p = self.server_prefs
        if p.enabled:
            self._serve_id = self.client.serve(p.host, p.port, p.api_key or None, self.settings.generation())
        else:
            self._serve_id = self.client.unserve()

    def _on_serving(self, req_id: str, event: dict) -> None:
        if req_id == self._serve_id:
            self._server_is(str(event.get("url") or ""), str(event.get("warning") or ""))

    def _server_is(self, url: str, message: str) -> None:
        self.server_url = url
        self.server_changed.emit(url, message)

    def shutdown(self) -> None:
        if self._resolve_task is not None:
            self._resolve_task.cancel()
        self.client.stop(wait_ms=3000)

    # ---------------------------------------------------------------- internals

    def _set_state(self, state: str) -> None:
        assert state in STATES
        if state != self.state:
            self.state = state
        self.state_changed.emit(state)

    def _on_resolved(self, task: Task, chosen: ModelChoice, resolved: Resolved) -> None:
        if task is not self._resolve_task:
            return  # a newer boot() superseded this one
        self._resolve_task = None
        self.resolved = resolved
        if not resolved.ready:
            self._set_state("missing")
            self.models_missing.emit(resolved)
            return
        self._load(resolved.load_settings(chosen))

    def _on_resolve_failed(self, task: Task, message: str) -> None:
        if task is self._resolve_task:
            self._resolve_task = None
            self._set_state("load_failed")
            self.load_failed.emit(message)

    def _load(self, load: LoadSettings) -> None:
        self.load_settings = load
        self.crashed_while = ""
        self._set_state("loading")
        self.progress.emit("Starting the engine…")
        if not self.client.running:
            self.client.start()
        self._load_id = self.client.load(load)

    def _on_loading(self, req_id: str, message: str) -> None:
        if req_id == self._load_id:
            self.progress.emit(message[:1].upper() + message[1:] + "…")

    def _on_loaded(self, req_id: str, event: dict) -> None:
        if req_id != self._load_id:
            return
        self.info = event
        self.good_choice = self.choice
        self._set_state("ready")
        self.loaded.emit(event)
        if event.get("baseline_tps"):
            self.baseline_changed.emit(float(event["baseline_tps"]))

    def _on_measured(self, req_id: str, event: dict) -> None:
        if req_id == self._measure_id:
            self._measure_id = None
            self.measure_result.emit(*measure_message(event))
        if self.info is not None and event.get("baseline_tps"):
            self.info["baseline_tps"] = event["baseline_tps"]
            self.baseline_changed.emit(float(event["baseline_tps"]))

    def _on_error(self, req_id: str, message: str, _kind: str) -> None:
        if req_id and req_id == self._measure_id:
            self._measure_id = None
            self.measure_result.emit(f"Could not measure plain speed: {message}", "error")
        if req_id and req_id == self._serve_id:
            self._server_is("", f"The local server could not start: {message}")
        if req_id and req_id == self._load_id:
            self.info = None
            self._set_state("load_failed")
            self.load_failed.emit(message)

    def _on_crashed(self, what: str, tail: str) -> None:
        self._measure_id = None
        self.crashed_while = "loading" if self.state == "loading" else ""
        self.info = None
        if self.server_url:
            self._server_is("", "")  # it lived in the engine process; a restart brings it back
        self._set_state("crashed")
        self.crashed.emit(what, tail)

    # ---------------------------------------------------------------- for the views

    @property
    def ready(self) -> bool:
        return self.state == "ready" and self.client.is_ready

    def pair_label(self) -> str:
        if self.resolved is None:
            return "no models"
        target = model_choice.display_name(self.resolved.target_id)
        remote = (self.info or {}).get("remote")
        if remote:
            target += f" on {remote}"  # the target's layers live on another machine
        if self.resolved.draft_id is None or (self.info is not None and self.info.get("draft") is None):
            return f"{target} (no draft model)"
        return f"{target}  ·  draft {model_choice.draft_label(self.resolved.target_id, self.resolved.draft_id)}"

    def baseline_tps(self) -> float | None:
        value = (self.info or {}).get("baseline_tps")
        return float(value) if value else None

    def model_tag(self, mode: str) -> dict[str, Any]:
        """What produced a reply, saved with it."""
        r = self.resolved
        return {
            "target": r.target_id if r else None,
            "draft": (r.draft_id if r and (self.info or {}).get("draft") is not None else None),
            "mode": mode,
        }


def measure_message(event: dict) -> tuple[str, str]:
    """The re-measurement's outcome in one or two sentences, and the banner kind."""
    new = float(event.get("baseline_tps") or 0)
    old = event.get("previous_baseline_tps")
    text = f"Plain decoding measured on this computer: {new:.1f} tok/s"
    if old:
        text += f" (before: {float(old):.1f} tok/s)"
    if event.get("decode_ms"):
        text += f"; one target token costs {float(event['decode_ms']):.0f} ms"
    text += ". Each reply's speed-up is still judged against its own plain steps."
    if event.get("plausible") is False:
        return (text + " The computer looked busy during the measurement (slower than its own cost curve "
                "allows), so this figure is kept for this session only; measure again when it is idle.", "warn")
    return text, "info"
