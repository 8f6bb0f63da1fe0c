"""The llama.cpp layer and the tree-aware cache, on a tiny random GGUF."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.errors import Cancelled, ModelFileError
from engine.llama.backend import LlamaContext, LlamaModel
from engine.llama.detokenize import Detokenizer
from engine.llama.lm import TIP, ContextFull, LlamaLM
from tests.helpers.tiny_gguf import LONG_ASCII, LONG_CJK, bytes_to_unicode, vocabulary

TOL = 0.02  # f16 KV cache and batch-size-dependent kernels; a wrong mask costs whole units


@pytest.fixture(scope="module")
def model(tiny_gguf):
    m = LlamaModel(tiny_gguf)
    yield m
    m.close()


def fresh(model: LlamaModel, n_ctx: int = 256) -> LlamaLM:
    return LlamaLM(model, LlamaContext(model, n_ctx=n_ctx, n_threads=2, n_seq_max=16, n_batch=128))


def sequential_row(model: LlamaModel, tokens: list[int]) -> np.ndarray:
    lm = fresh(model)
    if len(tokens) > 1:
        lm.decode(tokens[:-1])
    return lm.decode(tokens[-1:])[0].copy()


def test_vocabulary_and_tokenizer(model: LlamaModel) -> None:
    tokens, _, _ = vocabulary()
    assert model.n_vocab == len(tokens)
    ids = model.tokenize("hello world")
    assert tokens.index("hello") in ids  # merges apply
    assert model.tokenize("<|im_start|>", parse_special=True) == [tokens.index("<|im_start|>")]
    assert model.chat_template and "im_start" in model.chat_template


def test_long_tokens_are_not_truncated(model: LlamaModel) -> None:
    tokens, _, _ = vocabulary()
    b2u = bytes_to_unicode()
    long_ascii = tokens.index("".join(b2u[b] for b in LONG_ASCII.encode()))
    long_cjk = tokens.index("".join(b2u[b] for b in LONG_CJK.encode()))
    assert model.token_bytes(long_ascii) == LONG_ASCII.encode()  # 44 bytes > llama-cpp-python's 32
    assert model.token_bytes(long_cjk) == LONG_CJK.encode()  # 48 bytes


def test_detokenizer_never_splits_a_character(model: LlamaModel) -> None:
    detok = Detokenizer(model.token_bytes)
    byte_tokens = list("日".encode())  # byte tokens are ids 0..255
    assert [detok.push(t) for t in byte_tokens] == ["", "", "日"]
    emoji = list("🙂".encode())
    assert "".join(detok.push(t) for t in emoji) == "🙂"
    assert detok.push(emoji[0]) == ""
    assert detok.flush() == "\ufffd"  # an unfinished character at the end is shown, not lost


def test_decode_gives_one_row_per_requested_output(model: LlamaModel) -> None:
    lm = fresh(model)
    rows = lm.decode([1, 2, 3, 4])
    assert rows.shape == (1, model.n_vocab)
    rows = lm.decode([], [TIP, 0, TIP], [5, 6, 7])
    assert rows.shape == (3, model.n_vocab)
    assert np.isfinite(rows).all()


def test_kv_trim_and_reuse_match_a_fresh_context(model: LlamaModel) -> None:
    seq = [10, 20, 30, 40, 50, 60]
    lm = fresh(model)
    lm.decode(seq)
    lm.truncate(3)
    lm.check_consistent()
    row = lm.decode([99, 98])[0].copy()
    assert np.abs(row - sequential_row(model, [10, 20, 30, 99, 98])).max() < TOL


def test_tree_decode_equals_decoding_each_path(model: LlamaModel) -> None:
    rng = np.random.default_rng(1)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]
    parents, tokens = [], []
    for i in range(24):
        parents.append(TIP if i < 3 else int(rng.integers(-1, i)))
        tokens.append(int(rng.integers(0, model.n_vocab)))
    lm = fresh(model)
    lm.decode(prompt[:-1])
    rows = lm.decode([prompt[-1]], parents, tokens).copy()

    def path(i: int) -> list[int]:
        out = []
        while i != TIP:
            out.append(tokens[i])
            i = parents[i]
        return out[::-1]

    assert np.abs(rows[0] - sequential_row(model, prompt)).max() < TOL
    for i in range(len(tokens)):
        assert np.abs(rows[i + 1] - sequential_row(model, prompt + path(i))).max() < TOL, f"node {i}"


def test_incremental_expansion_and_commit(model: LlamaModel) -> None:
    """Draft-style growth: nodes decoded over several calls, then one path kept."""
    prompt = [7, 8, 9]
    lm = fresh(model)
    lm.decode(prompt[:-1])
    lm.decode([prompt[-1]], [TIP, TIP, TIP], [11, 12, 13])
    level2 = lm.decode([], [0, 0, 1, 2], [21, 22, 23, 24]).copy()
    level3 = lm.decode([], [3, 3, 4, 6], [31, 32, 33, 34]).copy()
    assert np.abs(level2[1] - sequential_row(model, [*prompt, 11, 22])).max() < TOL
    assert np.abs(level3[3] - sequential_row(model, [*prompt, 13, 24, 34])).max() < TOL
    lm.commit([0, 3, 8])  # 11, 21, 32
    lm.check_consistent()
    assert lm.tokens == [*prompt, 11, 21, 32]
    assert lm.n_pending == 0
    row = lm.decode([5])[0]
    assert np.abs(row - sequential_row(model, [*prompt, 11, 21, 32, 5])).max() < TOL


def test_many_branches_reuse_sequence_ids(model: LlamaModel) -> None:
    """More leaves over a step than sequence ids: old leaves are evicted, not lost silently."""
    lm = fresh(model)
    lm.decode([1, 2])
    for _ in range(5):
        lm.decode([], [TIP] * 5, [3, 4, 5, 6, 7]) if lm.n_pending == 0 else lm.decode([], [0] * 4, [8, 9, 10, 11])
    lm.discard()
    lm.check_consistent()
    assert lm.tokens == [1, 2]


def test_context_full_is_reported_not_crashed(model: LlamaModel) -> None:
    lm = fresh(model, n_ctx=256)
    for start in range(0, lm.n_ctx - 3, 100):
        lm.decode([1 + (i % 200) for i in range(start, min(start + 100, lm.n_ctx - 3))])
    assert lm.room() == 3
    with pytest.raises(ContextFull):
        lm.decode([], [TIP] * 5, [1, 2, 3, 4, 5])
    lm.check_consistent()
    lm.decode([], [TIP, TIP], [1, 2])  # what fits still works


def test_cancel_during_prefill_leaves_a_consistent_cache(model: LlamaModel) -> None:
    lm = fresh(model, n_ctx=512)
    lm.decode([1, 2, 3])
    cancel = threading.Event()
    cancel.set()
    lm.ctx.watch(cancel)
    with pytest.raises(Cancelled):
        lm.decode(list(range(10, 300)))
    lm.ctx.watch(None)
    lm.check_consistent()
    assert lm.tokens == [1, 2, 3]
    row = lm.decode([4])[0]
    assert np.abs(row - sequential_row(model, [1, 2, 3, 4])).max() < TOL


def test_missing_and_corrupt_files_give_clear_errors(tmp_path, tiny_gguf) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        LlamaModel(tmp_path / "nope.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    with pytest.raises(ModelFileError, match="not a GGUF"):
        LlamaModel(junk)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        LlamaModel(cut)
