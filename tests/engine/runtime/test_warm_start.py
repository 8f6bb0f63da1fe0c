"""Issue 12 item 3: after a restart the first reply of a long conversation waited 18-24 s
while the whole conversation was read again.  The engine now saves the last conversation's
KV cache (llama.cpp's state API) and the next engine restores it: on real llama.cpp (tiny
model) the restarted engine reads nothing again and answers exactly as a cold one."""

from __future__ import annotations

import pytest

from engine.runtime import session
from engine.runtime.session import Engine
from engine.settings import GenerationSettings, LoadSettings
from tests.helpers.tiny_gguf import write_tiny_gguf

LONG = [{"role": "user", "content": " ".join(f"word{i}" for i in range(400))}]


@pytest.fixture()
def model(tmp_path):
    return str(write_tiny_gguf(tmp_path / "tiny.gguf"))


def answer(model: str, messages: list[dict], max_tokens: int = 24, learn: bool = True):
    engine = Engine(LoadSettings(model, None, n_ctx=2048, threads=1), learn=learn)
    try:
        settings = GenerationSettings(max_tokens=max_tokens)
        settings.spec.mode = "off"
        reply = engine.reply(messages, settings)
        return reply, engine.warm_restored, list(engine.target.tokens)
    finally:
        engine.close()


def test_a_restarted_engine_restores_the_conversation_and_answers_the_same(model, data_dir_warm) -> None:
    first, restored, cached = answer(model, LONG)
    assert restored == 0 and first.stats.prefill_tokens > session.WARM_MIN_TOKENS
    files = list(data_dir_warm.glob("warm/*.kv"))
    assert len(files) == 1

    follow_up = [*LONG, {"role": "assistant", "content": first.text}, {"role": "user", "content": "and then?"}]
    warm, restored, _ = answer(model, follow_up)
    assert restored == len(cached)  # the whole cache came back
    assert warm.stats.prefill_tokens < 40  # only the new turn was read

    for f in data_dir_warm.glob("warm/*.kv"):
        f.unlink()
    cold, restored, _ = answer(model, follow_up)
    assert restored == 0 and cold.stats.prefill_tokens > session.WARM_MIN_TOKENS
    assert warm.tokens == cold.tokens  # same cache contents, same answer


def test_a_short_conversation_is_not_saved_and_a_broken_file_is_dropped(model, data_dir_warm) -> None:
    answer(model, [{"role": "user", "content": "hi"}], max_tokens=4)
    assert not list(data_dir_warm.glob("warm/*.kv"))
    answer(model, LONG, max_tokens=4)
    (path,) = data_dir_warm.glob("warm/*.kv")
    path.write_bytes(b"not a llama.cpp state file")
    reply, restored, _ = answer(model, LONG, max_tokens=4)
    assert restored == 0 and reply.tokens  # read the slow way, answered
    assert path.exists() and path.stat().st_size > 100  # replaced by a good one
    stale = path.with_name("target-0000-1-ctx999.kv")  # another model's or context size's
    stale.write_bytes(b"old")
    answer(model, [*LONG, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}], max_tokens=4)
    assert [p.name for p in data_dir_warm.glob("warm/*.kv")] == [path.name]  # one file per role


def test_benchmarks_and_tests_keep_no_conversation_on_disk(model, data_dir_warm) -> None:
    answer(model, LONG, max_tokens=4, learn=False)
    assert not list(data_dir_warm.glob("warm/*"))


@pytest.fixture()
def data_dir_warm(tmp_path, monkeypatch):
    path = tmp_path / "data"
    monkeypatch.setenv("TANDEM_DATA_DIR", str(path))
    return path


def test_forget_deletes_the_saved_conversation(model, data_dir_warm) -> None:
    engine = Engine(LoadSettings(model, None, n_ctx=2048, threads=1))
    try:
        settings = GenerationSettings(max_tokens=4)
        settings.spec.mode = "off"
        engine.reply(LONG, settings)
        assert list(data_dir_warm.glob("warm/*.kv"))
        engine.forget_warm()  # the app deleted a conversation
        assert not list(data_dir_warm.glob("warm/*.kv"))
    finally:
        engine.close()
