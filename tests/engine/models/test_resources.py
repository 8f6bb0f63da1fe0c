"""Requests that do not fit get a clear message before llama.cpp is asked (issue 6, item 7)."""

from __future__ import annotations

import pytest

from engine.models import resources
from engine.models.resources import ResourceError
from engine.settings import GenerationSettings, LoadSettings, SpecSettings


def test_the_estimate_counts_weights_and_kv_cache(tiny_gguf) -> None:
    shape = resources.model_shape(tiny_gguf)
    assert (shape.n_layer, shape.n_embd, shape.n_head, shape.n_head_kv) == (2, 64, 4, 2)
    assert shape.kv_bytes(512) == 2 * 2 * 512 * 2 * 16 * 2
    assert resources.needed_bytes([str(tiny_gguf)], 512) > tiny_gguf.stat().st_size


def test_a_pair_that_does_not_fit_is_refused_with_numbers(tiny_gguf, monkeypatch) -> None:
    from engine.runtime.session import Engine

    monkeypatch.setenv("TANDEM_MEMORY_LIMIT", str(100 * 2**20))
    with pytest.raises(ResourceError, match=r"need about 0\.\d GB of memory but only 0\.1 GB is free"):
        Engine(LoadSettings(str(tiny_gguf), str(tiny_gguf), n_ctx=8192))


def test_gpu_layers_without_a_gpu_or_beyond_the_model_are_explained() -> None:
    layers, notice = resources.gpu_layers_notice(99, 28, False, "target")
    assert layers == 0 and "no GPU support" in notice
    layers, notice = resources.gpu_layers_notice(99, 28, True, "target")
    assert layers == 29 and "has 28 layers" in notice
    assert resources.gpu_layers_notice(10, 28, True, "draft") == (10, None)
    assert resources.gpu_layers_notice(0, 28, False, "draft") == (0, None)


def test_engine_loads_on_the_cpu_and_says_so_when_gpu_layers_are_asked(tiny_gguf) -> None:
    from engine.runtime.session import Engine

    engine = Engine(LoadSettings(str(tiny_gguf), None, n_ctx=256, gpu_layers=50))
    try:
        assert any("GPU" in n or "layers" in n for n in engine.notices)
        settings = GenerationSettings(max_tokens=4, spec=SpecSettings("off"))
        reply = engine.reply([{"role": "user", "content": "hi"}], settings)
        assert reply.stats.tokens >= 1
    finally:
        engine.close()
