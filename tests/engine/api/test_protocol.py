"""Request validation, error objects and stop strings of the OpenAI-compatible API
(engine/api/protocol.py), without a server: every rule on plain data."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.api.http import is_loopback_host
from engine.api.jobs import ModelInfo
from engine.api.protocol import ApiError, StopScanner, error_from_exception, parse_chat, parse_completion
from engine.errors import Cancelled, ContextOverflowError, EngineError, ModelFileError
from engine.settings import GenerationSettings

MODEL = ModelInfo(id="qwen-test", n_ctx=1024, created=0)
USER = [{"role": "user", "content": "hi"}]


def chat(**body):
    return parse_chat({"model": "tandem", "messages": USER, **body}, MODEL, GenerationSettings())


def rejected(call, status: int = 400) -> ApiError:
    with pytest.raises(ApiError) as info:
        call()
    assert info.value.status == status
    assert info.value.message
    return info.value


def test_a_plain_request_takes_the_servers_settings_for_what_it_leaves_out():
    defaults = GenerationSettings(max_tokens=77, temperature=0.0, top_k=40)
    defaults.spec.mode = "ngram"
    req = parse_chat({"model": "qwen-test", "messages": USER}, MODEL, defaults)
    assert (req.settings.max_tokens, req.settings.temperature, req.settings.top_k) == (77, 0.0, 40)
    assert req.settings.spec.mode == "ngram" and req.settings.spec is not defaults.spec
    assert req.stream is False and req.stop == [] and req.messages == USER


def test_request_fields_override_the_defaults():
    req = chat(max_tokens=5, temperature=0.7, top_p=0.5, seed=3, top_k=7, stop="\n", stream=True,
               stream_options={"include_usage": True})
    s = req.settings
    assert (s.max_tokens, s.temperature, s.top_p, s.seed, s.top_k) == (5, 0.7, 0.5, 3, 7)
    assert req.stop == ["\n"] and req.stream and req.include_usage
    assert chat(max_completion_tokens=9).settings.max_tokens == 9


def test_messages_are_normalised():
    messages = [{"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                 "name": "me"},
                {"role": "assistant", "content": "ok"}]
    assert chat(messages=messages).messages == [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "ab"},
        {"role": "assistant", "content": "ok"}]


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": None}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": ["hi"]}, "messages[0]"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages[0].content"),
    ({"messages": [{"role": "assistant", "content": "", "tool_calls": []}]}, "messages[0]"),
    ({"max_tokens": -1}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 10**12}, "max_tokens"),
    ({"max_tokens": 2.5}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"),
    ({"max_tokens": "10"}, "max_tokens"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": 9}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"stop": ""}, "stop"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": [1]}, "stop"),
    ({"stream": "yes"}, "stream"),
    ({"stream_options": {"include_usage": "yes"}}, "stream_options"),
    ({"n": 2}, "n"),
    ({"n": True}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"tools": [{"type": "function"}]}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"frobnicate": 1}, "frobnicate"),
])
def test_bad_fields_are_400_naming_the_field(body, param):
    err = rejected(lambda: chat(**body))
    assert err.param == param
    assert err.body()["error"]["type"] == "invalid_request_error"


def test_neutral_values_of_unsupported_features_are_accepted():
    req = chat(n=1, presence_penalty=0, frequency_penalty=0.0, logprobs=False, user="someone", tools=[],
               response_format={"type": "text"})
    assert req.messages == USER


def test_model_and_messages_are_required_and_unknown_models_are_404():
    assert rejected(lambda: parse_chat({"messages": USER}, MODEL, GenerationSettings())).param == "model"
    assert rejected(lambda: parse_chat({"model": "tandem"}, MODEL, GenerationSettings())).code == \
        "missing_required_parameter"
    err = rejected(lambda: parse_chat({"model": "gpt-4", "messages": USER}, MODEL, GenerationSettings()), 404)
    assert err.code == "model_not_found" and "qwen-test" in err.message
    assert rejected(lambda: parse_chat([1, 2], MODEL, GenerationSettings())).message


def test_completion_prompts():
    defaults = GenerationSettings()
    assert parse_completion({"model": "tandem", "prompt": "abc"}, MODEL, defaults).prompt == "abc"
    assert parse_completion({"model": "tandem", "prompt": ["abc"]}, MODEL, defaults).prompt == "abc"
    for prompt in ("", [1, 2, 3], ["a", "b"], None):
        assert rejected(lambda p=prompt: parse_completion({"model": "tandem", "prompt": p}, MODEL, defaults)).param \
            == "prompt"
    assert rejected(lambda: parse_completion({"model": "tandem", "prompt": "a", "echo": True}, MODEL, defaults))
    assert rejected(lambda: parse_completion({"model": "tandem", "prompt": "a", "messages": USER}, MODEL,
                                             defaults)).param == "messages"


def test_engine_failures_map_to_statuses():
    assert error_from_exception(ContextOverflowError("too long")).code == "context_length_exceeded"
    assert error_from_exception(ContextOverflowError("too long")).status == 400
    assert error_from_exception(ModelFileError("the model's chat template failed: roles")).status == 400
    assert error_from_exception(Cancelled("x")).status == 503
    assert error_from_exception(EngineError("decode failed")).status == 500
    internal = error_from_exception(KeyError("secret/path"))
    assert internal.status == 500 and "secret" not in internal.message and "KeyError" in internal.message


@pytest.mark.parametrize(("host", "ok"), [
    ("127.0.0.1:8080", True), ("localhost:1", True), ("localhost", True), ("[::1]:8080", True), ("127.1.2.3", True),
    ("example.com", False), ("evil.localhost.example:8080", False), ("192.168.1.2:8080", False), ("", False),
])
def test_loopback_host_names(host, ok):
    assert is_loopback_host(host) is ok


def cut(text: str, stops: list[str]) -> tuple[str, bool]:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[:min(found)], True) if found else (text, False)


@given(st.lists(st.text(alphabet="ab\n", max_size=6), max_size=12),
       st.lists(st.text(alphabet="ab\n", min_size=1, max_size=4), min_size=1, max_size=4))
def test_stop_scanner_cuts_streamed_text_like_the_whole_text(pieces, stops):
    scanner = StopScanner(stops)
    out = []
    for piece in pieces:
        out.append(scanner.push(piece))
        # what was sent never contains a stop string or its start that turned out to be one
        assert not any(s in "".join(out) for s in stops)
    out.append(scanner.flush())
    assert ("".join(out), scanner.hit) == cut("".join(pieces), stops)
