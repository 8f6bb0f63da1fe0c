"""The catalog's optimized draft, derived from the real Qwen2.5-Coder-0.5B: the
result has the recorded sha256 (derived twice: once through provision, once
directly), loads, passes the pair compatibility check, and greedy output with it
equals plain decoding on the real pair.  A derivation cancelled mid-way leaves
nothing.  (The tiny-model twins are in test_derive.py.)"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from engine.cli.models import derived_draft
from engine.errors import Cancelled
from engine.llama.backend import LlamaModel
from engine.models import catalog, compat, provision
from engine.models.derive import Recipe, derive
from engine.runtime.session import Engine
from engine.settings import GenerationSettings, LoadSettings, SpecSettings
from tests.engine.decoding.test_greedy_equivalence import assert_equivalent

pytestmark = [pytest.mark.models, pytest.mark.slow]

PROMPTS = [
    "Write a Python function that returns the n-th Fibonacci number, iteratively.",
    "Summarize in two sentences: the quick brown fox jumps over the lazy dog, again and again, every day.",
]


@pytest.fixture(scope="module")
def derived(default_pair, tmp_path_factory) -> tuple[catalog.CatalogModel, Path]:
    """The optimized draft, derived into a scratch models directory (the real models
    directory stays as the user left it)."""
    import os

    model = derived_draft(catalog.default_pair().draft)
    assert model is not None, "the catalog records no optimized draft for the default pair"
    scratch = tmp_path_factory.mktemp("models")
    for path in default_pair:
        (scratch / path.name).symlink_to(path)
    old = os.environ["TANDEM_MODELS_DIR"]
    os.environ["TANDEM_MODELS_DIR"] = str(scratch)
    try:
        path = provision.pull(model.id, sources=["local", "derived"])
    finally:
        os.environ["TANDEM_MODELS_DIR"] = old
    return model, path


def test_derived_draft_has_the_recorded_sha256_and_rederives_to_it(derived, default_pair, tmp_path):
    model, path = derived
    assert hashlib.sha256(path.read_bytes()).hexdigest() == model.sha256
    assert path.stat().st_size == model.size
    src = model.source("derived")
    assert hashlib.sha256(default_pair[1].read_bytes()).hexdigest() == src.base_sha256
    again = derive(default_pair[1], tmp_path / "again.gguf", Recipe.from_dict(dict(src.recipe)))
    assert hashlib.sha256(again.read_bytes()).hexdigest() == model.sha256


def test_derived_draft_loads_and_is_compatible_with_the_target(derived, default_pair):
    _, path = derived
    target, draft = LlamaModel(default_pair[0], vocab_only=True), LlamaModel(path)
    try:
        assert compat.incompatibility(target, draft) is None
        assert draft.n_vocab == target.n_vocab
    finally:
        draft.close()
        target.close()


def test_greedy_output_with_the_derived_draft_equals_plain(derived, default_pair):
    _, path = derived
    engine = Engine(LoadSettings(target=str(default_pair[0]), draft=str(path), n_ctx=2048))
    try:
        for text in PROMPTS:
            messages = [{"role": "user", "content": text}]
            plain = engine.reply(messages, GenerationSettings(max_tokens=64, spec=SpecSettings(mode="off")),
                                 record_margins=True)
            for mode in ("chain", "tree"):
                reply = engine.reply(messages, GenerationSettings(max_tokens=64, spec=SpecSettings(mode=mode)),
                                     record_margins=True)
                assert_equivalent(plain, reply, f"{mode} with the derived draft")
                assert reply.stats.snapshot()["tested"].get("draft", 0) > 0, "the derived draft never drafted"
                engine.target.check_consistent()
    finally:
        engine.close()


def test_cancelled_real_derivation_leaves_nothing(default_pair, tmp_path):
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)  # the real quantization takes seconds
    timer.start()
    try:
        with pytest.raises(Cancelled):
            derive(default_pair[1], tmp_path / "out.gguf", Recipe("Q4_0", "Q4_0", "Q4_0"), cancel=cancel)
    finally:
        timer.cancel()
    assert list(tmp_path.iterdir()) == []
