"""The tokenizer metadata, checked as llama.cpp's vocabulary loader reads it.

llama.cpp maps every token string to its id and then asserts
`id_to_token.size() == token_to_id.size()` (llama-vocab.cpp): a vocabulary holding the
same string twice aborts the whole process.  Score and type arrays shorter than the
token list, a missing merge list, an unknown tokenizer it refuses with a terse error;
special-token ids outside the vocabulary it only warns about and then hands ids that
make later calls (token_to_piece of the BOS token, say) throw through the C API, which
also aborts.  This module refuses all of those first, naming the key and the values.

Tokens are compared as the raw bytes llama.cpp compares, not as decoded text: two
different invalid UTF-8 strings must not look alike here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from engine.llama.gguf_format import is_int, length_of, show

Fail = Callable[[str], Exception]

TOKENS = "tokenizer.ggml.tokens"
SCORES = "tokenizer.ggml.scores"
TYPES = "tokenizer.ggml.token_type"
MERGES = "tokenizer.ggml.merges"
MODEL = "tokenizer.ggml.model"
# tokenizer.ggml.model values llama.cpp loads (llama_vocab::impl::load)
TOKENIZERS = ("llama", "bert", "gpt2", "hybriddna", "whitespace", "t5", "rwkv", "test", "plamo2", "gemma4")
NEEDS_MERGES = ("gpt2", "hybriddna", "whitespace", "gemma4")
NO_VOCABULARY = ("no_vocab", "none")
SPECIAL_IDS = tuple(f"tokenizer.ggml.{name}_token_id" for name in (
    "bos", "eos", "eot", "eom", "unknown", "seperator", "padding", "mask",  # sic: "seperator"
    "fim_pre", "fim_suf", "fim_mid", "fim_pad", "fim_rep", "fim_sep", "prefix", "suffix", "middle"))
BYTE_TYPE = 6  # LLAMA_TOKEN_TYPE_BYTE: the token's text must spell its byte, <0xHH>
_BYTE_TOKEN = re.compile(rb"<0x[0-9A-Fa-f]{2}>")


def check_vocabulary(
    meta: Mapping[str, Any],
    array_types: Mapping[str, str],
    tokens: list[bytes] | None,
    token_types: list[int] | None,
    fail: Fail,
) -> None:
    """`tokens` and `token_types`: the two arrays in full (None if absent or mistyped);
    `array_types`: the item type of every metadata array."""
    model = meta.get(MODEL)
    if model is None and TOKENS not in meta:
        return  # no tokenizer at all: llama.cpp says "key not found", clearly enough
    if model is not None and not isinstance(model, str):
        raise fail(f"GGUF {MODEL} is {_kind(model, MODEL, array_types)}, not a tokenizer name")
    if model in NO_VOCABULARY:  # llama.cpp loads it, then aborts on the first tokenize
        raise fail(f"GGUF {MODEL} is '{model}': the file has no vocabulary to tokenize a prompt with")
    if model is not None and model not in TOKENIZERS:
        raise fail(f"GGUF {MODEL} '{show(model)}' is not a tokenizer llama.cpp knows ({', '.join(TOKENIZERS)})")
    if tokens is None:
        what = "missing" if TOKENS not in meta else f"{_kind(meta[TOKENS], TOKENS, array_types)}, not strings"
        raise fail(f"GGUF {TOKENS} is {what}")
    n = len(tokens)
    if n == 0:
        raise fail(f"GGUF {TOKENS} is empty")
    _check_arrays(meta, array_types, n, model, fail)
    _check_unique(tokens, fail)
    if token_types is not None:
        _check_byte_tokens(tokens, token_types, fail)
    _check_special_ids(meta, tokens, fail)


def _check_arrays(meta: Mapping[str, Any], array_types: Mapping[str, str], n: int, model: str | None,
                  fail: Fail) -> None:
    """Scores and types: one per token, of the item type llama.cpp reads them as."""
    for key, allowed in ((SCORES, ("float32", "int32")), (TYPES, ("int32",))):
        if key not in meta:
            continue
        length = length_of(meta[key])
        if length is None or array_types.get(key) not in allowed:
            raise fail(f"GGUF {key} is {_kind(meta[key], key, array_types)}; "
                       f"llama.cpp reads an array of {' or '.join(allowed)}")
        if length != n:
            raise fail(f"GGUF {key} has {length} entries but {TOKENS} has {n} (one per token)")
    if model in NEEDS_MERGES:
        if MERGES not in meta:
            if meta.get("tokenizer.ggml.pre") != "kimi-k2":
                raise fail(f"GGUF {MERGES} is missing; the '{model}' tokenizer needs it")
        elif length_of(meta[MERGES]) is None or array_types.get(MERGES) != "string":
            raise fail(f"GGUF {MERGES} is {_kind(meta[MERGES], MERGES, array_types)}, not an array of strings")


def _check_unique(tokens: list[bytes], fail: Fail) -> None:
    ids: dict[bytes, int] = {}
    for i, text in enumerate(tokens):
        if not text:  # llama.cpp stands in "[EMPTY_<id>]" for an empty token
            text = b"[EMPTY_%d]" % i
        first = ids.setdefault(text, i)
        if first != i:
            raise fail(f"GGUF {TOKENS}: token {i} '{show(text)}' appears twice (ids {first} and {i})")


def _check_byte_tokens(tokens: list[bytes], token_types: list[int], fail: Fail) -> None:
    for i, kind in enumerate(token_types):
        if kind == BYTE_TYPE and not _BYTE_TOKEN.fullmatch(tokens[i]):
            raise fail(f"GGUF {TYPES}: token {i} '{show(tokens[i])}' is typed as a byte "
                       "but does not spell one (<0xHH>)")


def _check_special_ids(meta: Mapping[str, Any], tokens: list[bytes], fail: Fail) -> None:
    n = len(tokens)
    for key in SPECIAL_IDS:
        value = meta.get(key)
        if value is None:
            continue
        if not is_int(value) or not 0 <= value < n:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "…"
            raise fail(f"GGUF {key} is {shown}, not a token id (the vocabulary has {n} tokens, ids 0 to {n - 1})")


def _kind(value: Any, key: str, array_types: Mapping[str, str]) -> str:
    """What a metadata value is, for a message: 'an array of uint8', 'a float32 value'..."""
    if key in array_types:
        return f"an array of {array_types[key]}"
    return f"a {type(value).__name__} value ({show(repr(value), 30)})"
