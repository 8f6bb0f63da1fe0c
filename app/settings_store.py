"""QSettings ↔ the engine's settings dataclasses, plus the window's own preferences.

The engine's GenerationSettings / LoadSettings are the single definition of what a
user can set; this module only maps them to keys.  Models are stored by id (catalog
or registered local GGUF), never by path: paths are resolved through engine.models.provision
when the engine loads, so a moved models directory does not break the settings.

A damaged or hand-edited value falls back to the default instead of stopping the app.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields, replace
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from engine.errors import TandemError
from engine.settings import SPEC_MODES, GenerationSettings, SpecSettings

# speculation modes the user can pick when speculation is on ("off" is the switch)
PICKABLE_MODES = tuple(m for m in SPEC_MODES if m != "off")
THEMES = ("system", "light", "dark")


@dataclass
class ModelChoice:
    """Which models to load and how; `resolve` turns ids into a LoadSettings."""

    target: str = ""  # model id; "" means the catalog's default pair
    draft: str = ""  # model id; "" = default pair's draft, "none" = no draft model
    n_ctx: int = 4096
    threads: int = 0  # 0: let the engine pick (physical cores)
    gpu_layers: int = 0
    draft_gpu_layers: int = 0
    remote: str = ""  # "host:port, ...": ggml RPC servers holding the target's layers

    def needs_reload(self, other: ModelChoice) -> bool:
        return self != other


NO_DRAFT = "none"


@dataclass
class UiPrefs:
    theme: str = "system"
    overlay: bool = True
    stats_visible: bool = True


@dataclass
class ServerPrefs:
    """The "Local server" switch: Tandem's OpenAI-compatible API (engine/api)."""

    enabled: bool = False
    port: int = 8080
    network: bool = False  # listen on every address, not only this computer's loopback
    api_key: str = ""  # "" = none

    @property
    def host(self) -> str:
        return "0.0.0.0" if self.network else "127.0.0.1"


class SettingsStore:
    """Typed access to QSettings.  Pass a QSettings to use another scope (tests)."""

    def __init__(self, settings: QSettings | None = None) -> None:
        self.qs = settings if settings is not None else QSettings()

    def sync(self) -> None:
        self.qs.sync()

    # ---------------------------------------------------------------- generation

    def generation(self) -> GenerationSettings:
        """What the next reply uses; speculation off means mode "off"."""
        defaults = GenerationSettings()
        spec_defaults = SpecSettings()
        mode = self.spec_mode()
        try:
            spec = SpecSettings(
                mode=mode if self.spec_enabled() else "off",
                n_max=self._int("speculation/n_max", spec_defaults.n_max, 1, 256),
                p_min=self._float("speculation/p_min", spec_defaults.p_min, 0.0, 1.0),
                budget=self._int("speculation/budget", spec_defaults.budget, 1, 512),
                top_k_children=self._int("speculation/top_k_children", spec_defaults.top_k_children, 1, 32),
                beam=self._int("speculation/beam", spec_defaults.beam, 1, 64),
                max_depth=self._int("speculation/max_depth", spec_defaults.max_depth, 1, 64),
            )
            seed_raw = self.qs.value("generation/seed", "")
            seed = int(seed_raw) if str(seed_raw).strip().lstrip("-").isdigit() else None
            return GenerationSettings(
                max_tokens=self._int("generation/max_tokens", defaults.max_tokens, 1, 1 << 20),
                temperature=self._float("generation/temperature", defaults.temperature, 0.0, 5.0),
                top_k=self._int("generation/top_k", defaults.top_k, 0, 100000),
                top_p=self._float("generation/top_p", defaults.top_p, 0.01, 1.0),
                seed=seed,
                spec=spec,
            )
        except TandemError:
            return GenerationSettings(spec=SpecSettings(mode=mode if self.spec_enabled() else "off"))

    def set_generation(self, gen: GenerationSettings) -> None:
        """Save everything; mode "off" turns the switch off and keeps the chosen mode."""
        self.qs.setValue("generation/max_tokens", gen.max_tokens)
        self.qs.setValue("generation/temperature", gen.temperature)
        self.qs.setValue("generation/top_k", gen.top_k)
        self.qs.setValue("generation/top_p", gen.top_p)
        self.qs.setValue("generation/seed", "" if gen.seed is None else str(gen.seed))
        spec = gen.spec
        if spec.mode == "off":
            self.set_spec_enabled(False)
        else:
            self.set_spec_enabled(True)
            self.set_spec_mode(spec.mode)
        for f in fields(SpecSettings):
            if f.name != "mode":
                self.qs.setValue(f"speculation/{f.name}", getattr(spec, f.name))

    def spec_enabled(self) -> bool:
        return self._bool("speculation/enabled", True)

    def set_spec_enabled(self, on: bool) -> None:
        self.qs.setValue("speculation/enabled", bool(on))

    def spec_mode(self) -> str:
        """The mode used when speculation is on (never "off")."""
        mode = str(self.qs.value("speculation/mode", "auto"))
        return mode if mode in PICKABLE_MODES else "auto"

    def set_spec_mode(self, mode: str) -> None:
        if mode in PICKABLE_MODES:
            self.qs.setValue("speculation/mode", mode)

    def effective_mode(self) -> str:
        return self.spec_mode() if self.spec_enabled() else "off"

    # ---------------------------------------------------------------- models

    def model_choice(self) -> ModelChoice:
        d = ModelChoice()
        return ModelChoice(
            target=str(self.qs.value("models/target", d.target) or ""),
            draft=str(self.qs.value("models/draft", d.draft) or ""),
            n_ctx=self._int("models/n_ctx", d.n_ctx, 256, 1 << 20),
            threads=self._int("models/threads", d.threads, 0, 1024),
            gpu_layers=self._int("models/gpu_layers", d.gpu_layers, -1, 1000),
            draft_gpu_layers=self._int("models/draft_gpu_layers", d.draft_gpu_layers, -1, 1000),
            remote=str(self.qs.value("models/remote", d.remote) or ""),
        )

    def set_model_choice(self, choice: ModelChoice) -> None:
        for f in fields(ModelChoice):
            self.qs.setValue(f"models/{f.name}", getattr(choice, f.name))

    # ---------------------------------------------------------------- local server

    def server(self) -> ServerPrefs:
        d = ServerPrefs()
        return ServerPrefs(
            enabled=self._bool("server/enabled", d.enabled),
            port=self._int("server/port", d.port, 1, 65535),
            network=self._bool("server/network", d.network),
            api_key=str(self.qs.value("server/api_key", d.api_key) or "").strip(),
        )

    def set_server(self, prefs: ServerPrefs) -> None:
        for f in fields(ServerPrefs):
            self.qs.setValue(f"server/{f.name}", getattr(prefs, f.name))

    # ---------------------------------------------------------------- UI

    def ui(self) -> UiPrefs:
        theme = str(self.qs.value("ui/theme", "system"))
        return UiPrefs(
            theme=theme if theme in THEMES else "system",
            overlay=self._bool("ui/overlay", True),
            stats_visible=self._bool("ui/stats_visible", True),
        )

    def set_ui(self, prefs: UiPrefs) -> None:
        self.qs.setValue("ui/theme", prefs.theme)
        self.qs.setValue("ui/overlay", prefs.overlay)
        self.qs.setValue("ui/stats_visible", prefs.stats_visible)

    def update_ui(self, **changes: Any) -> UiPrefs:
        prefs = replace(self.ui(), **changes)
        self.set_ui(prefs)
        return prefs

    def window_state(self) -> tuple[QByteArray | None, QByteArray | None, QByteArray | None]:
        """(geometry, dock/toolbar state, splitter state) as saved, or None each."""
        return tuple(self._bytes(k) for k in ("window/geometry", "window/state", "window/splitter"))  # type: ignore[return-value]

    def set_window_state(self, geometry: QByteArray, state: QByteArray, splitter: QByteArray) -> None:
        self.qs.setValue("window/geometry", geometry)
        self.qs.setValue("window/state", state)
        self.qs.setValue("window/splitter", splitter)

    # ---------------------------------------------------------------- typed reads

    def _bytes(self, key: str) -> QByteArray | None:
        value = self.qs.value(key)
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def _int(self, key: str, default: int, lo: int, hi: int) -> int:
        with contextlib.suppress(TypeError, ValueError):
            value = int(float(self.qs.value(key, default)))
            if lo <= value <= hi:
                return value
        return default

    def _float(self, key: str, default: float, lo: float, hi: float) -> float:
        with contextlib.suppress(TypeError, ValueError):
            value = float(self.qs.value(key, default))
            if lo <= value <= hi:
                return value
        return default

    def _bool(self, key: str, default: bool) -> bool:
        value = self.qs.value(key, default)
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("1", "true", "yes", "on")
