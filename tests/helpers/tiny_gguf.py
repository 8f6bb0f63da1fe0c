"""Build a tiny llama-architecture GGUF with random weights for fast backend tests.

The vocabulary is byte-level BPE (like Qwen's): 256 byte tokens, a few merges,
chat special tokens, a multi-byte CJK token and tokens longer than 32 bytes (the
length at which llama-cpp-python's own detokenizer helper silently truncates).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LONG_ASCII = "=" * 40 + "long"
LONG_CJK = "日本語のテキストを長く書きました"  # 16 chars, 48 bytes in UTF-8


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used in BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def vocabulary() -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges).  Ids 0..255 are bytes."""
    b2u = bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    types = [1] * 256  # normal
    merges = []

    def enc(text: str) -> str:
        return "".join(b2u[b] for b in text.encode("utf-8"))

    # a few merges so real words tokenize into multi-byte tokens
    for pair in [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), ("Ġ", "w"), ("o", "r"), ("Ġw", "or")]:
        merges.append(f"{pair[0]} {pair[1]}")
        tokens.append(pair[0] + pair[1])
        types.append(1)
    for text in [LONG_ASCII, LONG_CJK, " the", "日本"]:
        tokens.append(enc(text))
        types.append(1)
    for special in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]:
        tokens.append(special)
        types.append(3)  # control
    return tokens, types, merges


def write_tiny_gguf(
    path: Path,
    *,
    seed: int = 0,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    n_ctx: int = 512,
    vocab_extra: int = 0,
    chat_template: str = CHAT_TEMPLATE,
) -> Path:
    """Write the model; `vocab_extra` appends filler tokens (for incompatible pairs)."""
    import gguf

    tokens, types, merges = vocabulary()
    for i in range(vocab_extra):
        tokens.append(f"<filler{i}>")
        types.append(1)
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|endoftext|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(chat_template)

    def t(name: str, *shape: int, scale: float = 0.3) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    n_kv = n_embd // n_head * n_head_kv
    t("token_embd.weight", n_vocab, n_embd, scale=1.0)
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        t(f"blk.{i}.attn_q.weight", n_embd, n_embd)
        t(f"blk.{i}.attn_k.weight", n_kv, n_embd)
        t(f"blk.{i}.attn_v.weight", n_kv, n_embd)
        t(f"blk.{i}.attn_output.weight", n_embd, n_embd)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    t("output.weight", n_vocab, n_embd, scale=1.0)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
