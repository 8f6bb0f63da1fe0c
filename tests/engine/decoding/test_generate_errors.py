"""Bad input and interruptions: clear errors, consistent caches, correct next reply."""

from __future__ import annotations

import threading

import pytest

from engine.decoding.events import NoticeEvent, StepEvent
from engine.decoding.generate import generate
from engine.errors import ContextOverflowError, IncompatiblePairError, TandemError
from engine.settings import GenerationSettings, LoadSettings, SpecSettings
from tests.engine.decoding.synthetic_setup import drafter_for, eog_mask, pair, token_bytes
from tests.engine.decoding.test_greedy_equivalence import assert_equivalent

PROMPT = [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3]


def test_unknown_drafter_name_is_rejected() -> None:
    with pytest.raises(TandemError, match="unknown speculation mode 'eagle9'"):
        SpecSettings(mode="eagle9")


def test_prompt_longer_than_the_context_says_how_long() -> None:
    target, draft = pair(12, n_ctx=64)
    drafter, spec = drafter_for("auto", draft)
    with pytest.raises(ContextOverflowError, match="the prompt is 100 tokens but the context holds 64"):
        generate(target, list(range(1, 11)) * 10, drafter, GenerationSettings(spec=spec),
                 eog_mask=eog_mask(12), token_bytes=token_bytes)


@pytest.mark.parametrize("mode", ["chain", "tree", "staged", "auto"])
def test_speculation_near_a_full_context_shrinks_the_tree(mode: str) -> None:
    """The tree never overflows the cache: it shrinks to what fits, then generation
    ends with reason 'context', and the output still equals plain decoding."""
    outputs = {}
    for m in ("off", mode):
        target, draft = pair(12, seed=2, noise=0.3, n_ctx=40)
        drafter, spec = drafter_for(m, draft, budget=16)
        reply = generate(target, PROMPT, drafter, GenerationSettings(max_tokens=100, spec=spec),
                         eog_mask=eog_mask(12), token_bytes=token_bytes)
        assert reply.reason == "context"
        assert len(target.tokens) + target.n_pending <= 40
        outputs[m] = reply.tokens
    assert outputs[mode] == outputs["off"]


@pytest.mark.parametrize("mode", ["chain", "tree", "staged"])
def test_cancel_mid_reply_leaves_caches_consistent(mode: str) -> None:
    target, draft = pair(12, seed=4, noise=0.5)
    drafter, spec = drafter_for(mode, draft)
    cancel = threading.Event()
    steps = []

    def on_event(event: object) -> None:
        if isinstance(event, StepEvent):
            steps.append(event)
            if len(steps) == 3:
                cancel.set()

    settings = GenerationSettings(max_tokens=200, spec=spec)
    reply = generate(target, PROMPT, drafter, settings, eog_mask=eog_mask(12), token_bytes=token_bytes,
                     cancel=cancel, on_event=on_event)
    assert reply.reason == "cancelled"
    assert len(steps) == 3
    assert target.tokens == PROMPT + reply.tokens[:-1]  # the invariant: all but the last token cached
    assert target.n_pending == 0

    # the next generation, on the same caches, is correct
    again = generate(target, PROMPT, drafter, GenerationSettings(max_tokens=40, spec=spec),
                     eog_mask=eog_mask(12), token_bytes=token_bytes)
    fresh_target, fresh_draft = pair(12, seed=4, noise=0.5)
    plain, _ = drafter_for("off", fresh_draft)
    expected = generate(fresh_target, PROMPT, plain, GenerationSettings(max_tokens=40, spec=SpecSettings("off")),
                        eog_mask=eog_mask(12), token_bytes=token_bytes)
    assert again.tokens == expected.tokens


@pytest.mark.models
def test_incompatible_draft_is_refused_with_the_reason(default_pair, smollm_path) -> None:
    from engine.runtime.session import Engine

    with pytest.raises(IncompatiblePairError, match="vocab sizes differ: 151936 vs 49152"):
        Engine(LoadSettings(str(default_pair[0]), str(smollm_path), n_ctx=512))


@pytest.mark.models
def test_auto_falls_back_to_the_ngram_stage_with_an_incompatible_draft(default_pair, smollm_path) -> None:
    from engine.runtime.session import Engine

    engine = Engine(LoadSettings(str(default_pair[0]), str(smollm_path), n_ctx=1024), require_compatible_draft=False)
    try:
        notices = []
        messages = [{"role": "user", "content": "Say hello."}]
        engine.reply(messages, GenerationSettings(max_tokens=8, spec=SpecSettings("auto")),
                     on_event=lambda e: notices.append(e) if isinstance(e, NoticeEvent) else None)
        assert any("vocab sizes differ" in n.message for n in notices)
        with pytest.raises(IncompatiblePairError, match="needs a compatible draft"):
            engine.reply(messages, GenerationSettings(max_tokens=8, spec=SpecSettings("chain")))
    finally:
        engine.close()


@pytest.mark.models
def test_cancel_on_the_real_pair_then_reply_correctly(qwen_engine) -> None:
    messages = [{"role": "user", "content": "List the planets of the solar system with one fact each."}]
    cancel = threading.Event()
    seen = []

    def on_event(event: object) -> None:
        if isinstance(event, StepEvent):
            seen.append(event)
            if len(seen) == 4:
                cancel.set()

    stopped = qwen_engine.reply(messages, GenerationSettings(max_tokens=200, spec=SpecSettings("staged")),
                                cancel=cancel, on_event=on_event)
    assert stopped.reason == "cancelled"
    qwen_engine.target.check_consistent()
    qwen_engine.draft.check_consistent()
    spec = qwen_engine.reply(messages, GenerationSettings(max_tokens=32, spec=SpecSettings("staged")))
    plain = qwen_engine.reply(messages, GenerationSettings(max_tokens=32, spec=SpecSettings("off")),
                              record_margins=True)
    assert_equivalent(plain, spec, "after cancel")
