"""QSettings ↔ the engine's settings dataclasses, in a temporary QSettings scope."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from app.settings_store import NO_DRAFT, ModelChoice, SettingsStore, UiPrefs
from engine.settings import GenerationSettings, SpecSettings

pytestmark = pytest.mark.gui


def test_defaults_match_the_engine_defaults() -> None:
    s = SettingsStore()
    assert s.generation() == GenerationSettings()
    assert s.model_choice() == ModelChoice()
    assert s.ui() == UiPrefs()
    assert s.effective_mode() == "auto"


def test_round_trip_through_a_fresh_qsettings(settings_scope: Path) -> None:
    s = SettingsStore()
    gen = GenerationSettings(max_tokens=77, temperature=0.7, top_k=12, top_p=0.8, seed=1234,
                             spec=SpecSettings(mode="tree", n_max=5, p_min=0.4, budget=33, top_k_children=3,
                                               beam=2, max_depth=6))
    s.set_generation(gen)
    s.set_model_choice(ModelChoice(target="t", draft=NO_DRAFT, n_ctx=2048, threads=3, gpu_layers=7,
                                   draft_gpu_layers=2))
    s.set_ui(UiPrefs(theme="dark", overlay=False, stats_visible=False))
    s.sync()
    assert any(settings_scope.rglob("*.ini")) or any(settings_scope.rglob("*.conf"))  # in the test's scope
    fresh = SettingsStore(QSettings())
    assert fresh.generation() == gen
    assert fresh.model_choice() == ModelChoice("t", NO_DRAFT, 2048, 3, 7, 2)
    assert fresh.ui() == UiPrefs("dark", False, False)


def test_switch_off_keeps_the_chosen_mode() -> None:
    s = SettingsStore()
    s.set_spec_mode("ngram")
    gen = s.generation()
    gen.spec.mode = "off"
    s.set_generation(gen)
    assert s.generation().spec.mode == "off"
    assert s.spec_mode() == "ngram"  # switching back on returns to n-gram, not to a default
    s.set_spec_enabled(True)
    assert s.generation().spec.mode == "ngram"


def test_damaged_values_fall_back_to_defaults() -> None:
    q = QSettings()
    q.setValue("generation/max_tokens", "lots")
    q.setValue("generation/top_p", 7.5)
    q.setValue("speculation/mode", "warp-speed")
    q.setValue("models/n_ctx", -3)
    q.setValue("ui/theme", "neon")
    q.setValue("generation/seed", "not a number")
    s = SettingsStore(q)
    gen = s.generation()
    assert gen.max_tokens == GenerationSettings().max_tokens
    assert gen.top_p == GenerationSettings().top_p
    assert gen.seed is None
    assert s.spec_mode() == "auto"
    assert s.model_choice().n_ctx == ModelChoice().n_ctx
    assert s.ui().theme == "system"
