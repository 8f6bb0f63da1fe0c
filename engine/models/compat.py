"""Can this draft speculate for this target?  llama.cpp's own rule
(common/speculative.cpp): same vocabulary type, same BOS/EOS ids and add-BOS/EOS
flags, vocabulary sizes within 128, identical token text for every id from 5 up."""

from __future__ import annotations

from engine.errors import IncompatiblePairError
from engine.llama.backend import LlamaModel

MAX_VOCAB_SIZE_DIFFERENCE = 128
CHECK_START_TOKEN_ID = 5


def incompatibility(target: LlamaModel, draft: LlamaModel) -> str | None:
    """None when compatible, else which rule failed, in words."""
    if target.vocab_type != draft.vocab_type:
        return f"vocabulary types differ: {target.vocab_type} vs {draft.vocab_type}"
    if abs(target.n_vocab - draft.n_vocab) > MAX_VOCAB_SIZE_DIFFERENCE:
        return f"vocab sizes differ: {target.n_vocab} vs {draft.n_vocab}"
    if target.bos != draft.bos or target.add_bos != draft.add_bos:
        return f"BOS tokens differ: {target.bos} (add={target.add_bos}) vs {draft.bos} (add={draft.add_bos})"
    if target.eos != draft.eos or target.add_eos != draft.add_eos:
        return f"EOS tokens differ: {target.eos} (add={target.add_eos}) vs {draft.eos} (add={draft.add_eos})"
    for i in range(CHECK_START_TOKEN_ID, min(target.n_vocab, draft.n_vocab)):
        a, b = target.token_text(i), draft.token_text(i)
        if a != b:
            return f"token {i} differs: {a[:40]!r} vs {b[:40]!r}"
    return None


def check_pair(target: LlamaModel, draft: LlamaModel) -> None:
    reason = incompatibility(target, draft)
    if reason is not None:
        raise IncompatiblePairError(
            f"draft {draft.path.name} cannot speculate for {target.path.name}: {reason}"
        )


VOCAB_KEYS = (
    "tokenizer.ggml.model",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token",
)


def incompatibility_from_files(target_path: str, draft_path: str) -> str | None:
    """The same rule read from the GGUF metadata by the defensive parser, without
    loading llama.cpp: for the GUI's model pickers."""
    from engine.llama.gguf_check import read_metadata

    t = read_metadata(target_path, VOCAB_KEYS)
    d = read_metadata(draft_path, VOCAB_KEYS)
    if t.get("tokenizer.ggml.model") != d.get("tokenizer.ggml.model"):
        return f"vocabulary types differ: {t.get('tokenizer.ggml.model')} vs {d.get('tokenizer.ggml.model')}"
    tt, dt = t.get("tokenizer.ggml.tokens") or [], d.get("tokenizer.ggml.tokens") or []
    if abs(len(tt) - len(dt)) > MAX_VOCAB_SIZE_DIFFERENCE:
        return f"vocab sizes differ: {len(tt)} vs {len(dt)}"
    for key, what in (("bos_token_id", "BOS"), ("eos_token_id", "EOS"), ("add_bos_token", "add-BOS"),
                      ("add_eos_token", "add-EOS")):
        a, b = t.get(f"tokenizer.ggml.{key}"), d.get(f"tokenizer.ggml.{key}")
        if a != b:
            return f"{what} differs: {a} vs {b}"
    for i in range(CHECK_START_TOKEN_ID, min(len(tt), len(dt))):
        if tt[i] != dt[i]:
            return f"token {i} differs: {tt[i][:40]!r} vs {dt[i][:40]!r}"
    return None
