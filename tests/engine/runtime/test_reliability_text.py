"""Streaming never splits a multi-byte character (issue 6, item 4), engine side.

The tiny model's vocabulary is byte-level BPE: any text tokenizes, and a character of
two to four UTF-8 bytes is often spread over several tokens.  Fed token by token
through the Detokenizer, every piece must be whole characters, and the pieces joined
must be the text.  And in real generation, sampled at a high temperature so that the
model emits arbitrary byte tokens (halves of characters, invalid sequences), the text
events joined must equal the reply's bytes decoded in one go.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.decoding.events import DoneEvent, TextEvent
from engine.llama.backend import LlamaModel
from engine.llama.detokenize import Detokenizer
from engine.runtime.session import Engine
from engine.settings import GenerationSettings, LoadSettings, SpecSettings


@pytest.fixture(scope="module")
def vocab(tiny_gguf: Path):
    model = LlamaModel(str(tiny_gguf), vocab_only=True)
    yield model
    model.close()


@pytest.fixture(scope="module")
def engine(tiny_gguf: Path):
    e = Engine(LoadSettings(str(tiny_gguf), str(tiny_gguf), n_ctx=512, threads=1))
    yield e
    e.close()


# any Unicode scalar except surrogates (which UTF-8 cannot carry) and U+FFFD (the marker
# of a split); emoji, CJK, RTL, combining marks and controls all come up
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffd"), max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT)
def test_detokenizer_pieces_are_whole_characters(vocab, text: str) -> None:
    tokens = vocab.tokenize(text, add_special=False, parse_special=False)
    detok = Detokenizer(vocab.token_bytes)
    pieces = [detok.push(t) for t in tokens]
    pieces.append(detok.flush())
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_a_character_split_over_byte_tokens_comes_out_once_whole(vocab) -> None:
    for char in ("é", "日", "😀", "\U0001d544"):  # 2, 3, 4 and 4 bytes
        detok = Detokenizer(vocab.token_bytes)
        byte_tokens = list(char.encode())  # ids 0..255 are the byte tokens
        assert [detok.push(t) for t in byte_tokens] == [""] * (len(byte_tokens) - 1) + [char]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["off", "chain"])
def test_streamed_text_equals_the_reply_bytes_decoded_at_once(engine, vocab, mode: str, seed: int) -> None:
    events: list[object] = []
    settings = GenerationSettings(max_tokens=80, temperature=1.6, top_k=0, top_p=1.0, seed=seed,
                                  spec=SpecSettings(mode))
    engine.reply([{"role": "user", "content": "日本語 😀 שלום"}], settings, on_event=events.append)
    done = next(e for e in events if isinstance(e, DoneEvent))
    streamed = "".join(text for e in events if isinstance(e, TextEvent) for text, _src in e.pieces)
    raw = b"".join(vocab.token_bytes(t) for t in done.tokens if not vocab.eog_mask[t])
    assert streamed == raw.decode("utf-8", errors="replace") == done.text
