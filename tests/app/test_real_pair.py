"""The window on the real default pair (Qwen2.5-Coder 1.5B + 0.5B draft): a streamed
answer with speculation, the statistics it shows, and how they change when the
speculation settings change."""

from __future__ import annotations

import pytest

from app.settings_store import ModelChoice, SettingsStore
from tests.app.conftest import configure
from tests.app.helpers import send_and_wait, set_generation

pytestmark = [pytest.mark.gui, pytest.mark.models, pytest.mark.slow]

PROMPT = "Write a Python function fizzbuzz(n) that returns the FizzBuzz strings for 1..n, with a docstring."


def test_chat_on_the_default_pair_and_statistics_follow_the_settings(qtbot, default_pair, open_window,
                                                                     wait_ready) -> None:
    configure(mode="chain", max_tokens=80)
    # one decoding thread: with two on a 2-core machine, anything else running (the GUI
    # itself, another test process) stalls llama.cpp's thread barrier ~40x (see tiny_env)
    prefs = SettingsStore()
    prefs.set_model_choice(ModelChoice(threads=1))
    prefs.sync()
    parts = open_window(wait_ready=False)
    window = parts.window
    wait_ready(parts, timeout_s=300)  # the first load in a session measures this machine's decode costs
    assert "Qwen2.5-Coder-1.5B" in window.status.pair.text() and "0.5B" in window.status.pair.text()
    assert window.engine.baseline_tps() > 0
    assert window.act_overlay.isChecked()

    seen: list[int] = []
    steps_seen: list[int] = []
    window.chat.reply_updated.connect(lambda _id: seen.append(len(window.chat.active.text)))
    window.chat.reply_step.connect(lambda _id, _step, snap: steps_seen.append(snap["steps"]))
    chain = send_and_wait(qtbot, window, PROMPT, timeout_s=180)
    assert len(set(seen)) > 5  # streamed, not dumped at the end
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] == chain.stats["steps"]
    assert "def fizzbuzz" in chain.text
    assert chain.stats["accepted"]["draft"] > 0
    assert chain.stats["tau"] > 1.0  # more than one token per target pass
    assert any(source == "draft" for _n, source in chain.provenance)
    widget = window.chat_view.message_widget(chain.id)
    widget.flush_render()
    assert window.theme.colors.prov_draft_bg in widget.rendered.html  # overlay shows the draft's tokens
    assert widget.rendered.code_blocks and "def fizzbuzz" in widget.rendered.code_blocks[0]
    counters = window.stats.counters()
    assert counters["draft"]["accepted"] == chain.stats["accepted"]["draft"]
    assert counters["total"]["drafted"] == counters["total"]["tested"] + counters["total"]["ignored"]
    assert len(window.stats.step_chart.steps) == chain.stats["steps"]
    assert window.stats.tiles["speedup"].value.text().endswith("×")

    # speculation off in Settings: the next reply drafts nothing, one token per pass
    dialog = window.open_settings()
    dialog.spec_enabled.setChecked(False)
    dialog.accept()
    assert window.status.mode.text() == "Speculation: off"
    window.new_chat()
    plain = send_and_wait(qtbot, window, PROMPT, timeout_s=180)
    assert sum(plain.stats["drafted"].values()) == 0
    assert plain.stats["tau"] == 1.0 and set(plain.stats["modes"]) == {"plain"}
    assert window.stats.counters()["total"]["drafted"] == 0
    # greedy either way: the answers agree (up to the batch-size noise DESIGN §2 allows)
    common = next((i for i, (a, b) in enumerate(zip(chain.text, plain.text, strict=False)) if a != b),
                  min(len(chain.text), len(plain.text)))
    assert common >= 40, f"speculative and plain answers diverge early:\n{chain.text!r}\n{plain.text!r}"

    # auto with a repetitive request: the n-gram stage has something to propose
    set_generation(window, mode="auto")
    assert window.status.mode.text() == "Speculation: auto"
    auto = send_and_wait(qtbot, window, "Repeat the function above exactly, unchanged.", timeout_s=180)
    assert sum(auto.stats["drafted"].values()) > 0
