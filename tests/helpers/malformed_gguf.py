"""Small GGUF files whose header is well-formed but whose parts contradict each other
(issue 17): the kinds of damage that made llama.cpp abort or answer with an unrelated
line.  `ModelSpec` is a tiny llama-architecture model as plain data; each corruption
changes one thing in it (or, for offsets, one field of the written file), and
`write_model` writes it with the `gguf` package."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tests.helpers.tiny_gguf import CHAT_TEMPLATE, vocabulary

N_EMBD, N_HEAD, N_HEAD_KV, N_FF, N_LAYER = 64, 4, 2, 128, 1


def _shapes(n_vocab: int, n_embd: int = N_EMBD, n_ff: int = N_FF, n_layer: int = N_LAYER) -> dict[str, tuple]:
    """Tensor name -> shape in ggml order (row length first), as llama.cpp expects them."""
    n_kv = n_embd // N_HEAD * N_HEAD_KV
    shapes = {"token_embd.weight": (n_embd, n_vocab), "output_norm.weight": (n_embd,),
              "output.weight": (n_embd, n_vocab)}
    for i in range(n_layer):
        shapes |= {
            f"blk.{i}.attn_norm.weight": (n_embd,), f"blk.{i}.attn_q.weight": (n_embd, n_embd),
            f"blk.{i}.attn_k.weight": (n_embd, n_kv), f"blk.{i}.attn_v.weight": (n_embd, n_kv),
            f"blk.{i}.attn_output.weight": (n_embd, n_embd), f"blk.{i}.ffn_norm.weight": (n_embd,),
            f"blk.{i}.ffn_gate.weight": (n_embd, n_ff), f"blk.{i}.ffn_up.weight": (n_embd, n_ff),
            f"blk.{i}.ffn_down.weight": (n_ff, n_embd),
        }
    return shapes


@dataclass
class ModelSpec:
    tokens: list[str | bytes]
    types: list[int] | None
    scores: list[float] | None
    merges: list[str] | list[int] | None
    specials: dict[str, int]
    hparams: dict[str, int | str | list[int]]
    shapes: dict[str, tuple]
    tokenizer: str = "gpt2"
    offsets: dict[str, int] = field(default_factory=dict)  # tensor -> data offset written over the real one


def good_spec() -> ModelSpec:
    tokens, types, merges = vocabulary()
    n = len(tokens)
    return ModelSpec(
        tokens=list(tokens), types=list(types), scores=[0.0] * n, merges=list(merges),
        specials={"bos": tokens.index("<|endoftext|>"), "eos": tokens.index("<|im_end|>")},
        hparams={"context_length": 256, "embedding_length": N_EMBD, "block_count": N_LAYER,
                 "feed_forward_length": N_FF, "attention.head_count": N_HEAD,
                 "attention.head_count_kv": N_HEAD_KV, "rope.dimension_count": N_EMBD // N_HEAD},
        shapes=_shapes(n),
    )


def write_model(path: Path, spec: ModelSpec) -> Path:
    import gguf

    T = gguf.GGUFValueType
    w = gguf.GGUFWriter(str(path), "llama")
    for key, value in spec.hparams.items():
        if isinstance(value, list):
            w.add_array(f"llama.{key}", value)  # per layer
        elif isinstance(value, str):
            w.add_string(f"llama.{key}", value)
        else:
            w.add_uint32(f"llama.{key}", value)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_tokenizer_model(spec.tokenizer)
    w.add_tokenizer_pre("default")
    w.add_key_value("tokenizer.ggml.tokens", [t.encode() if isinstance(t, str) else t for t in spec.tokens],
                    T.ARRAY, T.STRING)
    if spec.types is not None:
        w.add_key_value("tokenizer.ggml.token_type", spec.types, T.ARRAY, T.INT32)
    if spec.scores is not None:
        w.add_key_value("tokenizer.ggml.scores", spec.scores, T.ARRAY, T.FLOAT32)
    if spec.merges is not None:
        strings = all(isinstance(m, str) for m in spec.merges)
        w.add_key_value("tokenizer.ggml.merges", spec.merges, T.ARRAY, T.STRING if strings else T.INT32)
    for name, value in spec.specials.items():
        w.add_uint32(f"tokenizer.ggml.{name}_token_id", value)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
    for name, shape in spec.shapes.items():
        w.add_tensor(name, np.full(tuple(reversed(shape)), 0.01, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if spec.offsets:
        data = bytearray(path.read_bytes())
        for name, offset in spec.offsets.items():
            at = _offset_field(data, name, len(spec.shapes[name]))
            data[at:at + 8] = struct.pack("<Q", offset)
        path.write_bytes(bytes(data))
    return path


def _offset_field(data: bytearray, name: str, n_dims: int) -> int:
    """Where tensor `name`'s data offset is stored in its tensor-info record."""
    raw = name.encode()
    start = data.index(struct.pack("<Q", len(raw)) + raw)
    return start + 8 + len(raw) + 4 + 8 * n_dims + 4


# ---------------------------------------------------------------- the corruptions of issue 17

KINDS = ("duplicate-token", "scores-length", "types-length", "merges", "special-id", "tensor-shape",
         "hyper-parameter", "data-offset")


def corrupt(spec: ModelSpec, kind: str, a: int, b: int) -> tuple[ModelSpec, str]:
    """`spec` with one `kind` of damage chosen by the integers `a`, `b` (any values), and
    words the refusal must contain (the key or tensor it names)."""
    n = len(spec.tokens)
    if kind == "duplicate-token":
        i, j = sorted(((a % n), (b % n)))
        j = j if j != i else (i + 1) % n
        i, j = min(i, j), max(i, j)
        tokens = list(spec.tokens)
        tokens[j] = tokens[i]
        return replace(spec, tokens=tokens), f"appears twice (ids {i} and {j})"
    if kind in ("scores-length", "types-length"):
        delta = (a % 40 + 1) * (1 if b % 2 else -1)
        attr = "scores" if kind == "scores-length" else "types"
        values = list(getattr(spec, attr))
        values = values[:n + delta] if delta < 0 else values + values[:delta]
        key = "scores" if attr == "scores" else "token_type"
        return replace(spec, **{attr: values}), f"tokenizer.ggml.{key} has {n + delta} entries"
    if kind == "merges":
        if a % 2:
            return replace(spec, merges=None), "tokenizer.ggml.merges is missing"
        return replace(spec, merges=list(range(1 + b % 20))), "tokenizer.ggml.merges is an array of int32"
    if kind == "special-id":
        name = ("bos", "eos", "padding", "unknown", "eot")[a % 5]
        return replace(spec, specials={**spec.specials, name: n + b % 100_000}), f"tokenizer.ggml.{name}_token_id"
    if kind == "tensor-shape":
        names = list(spec.shapes)
        name = names[a % len(names)]
        shape = list(spec.shapes[name])
        shape[b % len(shape)] += 1 + b % 7
        return replace(spec, shapes={**spec.shapes, name: tuple(shape)}), f"tensor '{name}' has shape"
    if kind == "hyper-parameter":
        key = ("embedding_length", "feed_forward_length", "attention.head_count", "attention.head_count_kv")[a % 4]
        value = spec.hparams[key] * 2 if b % 2 else spec.hparams[key] + 1 + b % 5
        return replace(spec, hparams={**spec.hparams, key: value}), key.split(".")[-1]
    if kind == "data-offset":
        names = list(spec.shapes)
        name = names[a % len(names)]
        offset = (1 << 20) + 32 * (b % 1000) if b % 3 else 32 * (1 + b % 7)
        return replace(spec, offsets={name: offset}), f"tensor '{name}'"
    raise ValueError(kind)
