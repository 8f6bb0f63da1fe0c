"""Hyper-parameters and tensor shapes, checked as llama.cpp would use them.

llama.cpp *asserts* (GGML_ASSERT: abort, the whole process dies) on several
hyper-parameter contradictions while loading any model (a block count over 512, an
unknown RoPE scaling type, expert counts that do not add up) and while building the
graph of the catalog's architectures (a head size different from the RoPE dimension,
query heads not a multiple of key/value heads).  Tensor shapes that contradict the
hyper-parameters it refuses with an error, but one that names a shape, not the
hyper-parameter behind it.  This module refuses both first, naming the key or tensor
and the values.  Only what a file actually holds is checked: a missing key is
llama.cpp's to report ("key not found in model: ..."), and its message is clear.

Shapes are in ggml order (the row length first), as in the GGUF tensor table and in
llama.cpp's create_tensor calls (src/models/{llama,qwen2,gemma3}.cpp).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.llama.gguf_format import GGUFInfo, TensorInfo, is_int, length_of, show

Fail = Callable[[str], Exception]

CATALOG_ARCHITECTURES = ("llama", "qwen2", "gemma3")
MAX_LAYERS = 512  # LLAMA_MAX_LAYERS
MAX_EXPERTS = 1024  # LLAMA_MAX_EXPERTS
ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")


def check_model(info: GGUFInfo, fail: Fail) -> None:
    arch = info.architecture
    if arch is None:
        return
    meta = info.metadata
    n_layer = _check_counts(meta, arch, fail)
    if arch in CATALOG_ARCHITECTURES and n_layer is not None:
        hp = _hyperparameters(meta, arch, n_layer, fail)
        if hp is not None:
            _check_shapes(info.tensors, _expected_shapes(arch, hp, n_layer), fail)


# ---------------------------------------------------------------- any architecture


def _check_counts(meta: Mapping[str, Any], arch: str, fail: Fail) -> int | None:
    """The GGML_ASSERTs of llama.cpp's load_hparams, for every architecture."""
    n_layer = meta.get(f"{arch}.block_count")
    if n_layer is not None and (not is_int(n_layer) or not 0 < n_layer <= MAX_LAYERS):
        raise fail(f"{arch}.block_count is {n_layer!r}; llama.cpp allows 1 to {MAX_LAYERS} layers")
    nextn = meta.get(f"{arch}.nextn_predict_layers")
    if n_layer is not None and is_int(nextn) and nextn > n_layer:
        raise fail(f"{arch}.nextn_predict_layers ({nextn}) exceeds {arch}.block_count ({n_layer})")
    scaling = meta.get(f"{arch}.rope.scaling.type")
    if scaling is not None and scaling not in ROPE_SCALING_TYPES:
        known = ", ".join(ROPE_SCALING_TYPES)
        raise fail(f"{arch}.rope.scaling.type is {show(str(scaling))!r}; llama.cpp knows {known}")
    _check_experts(meta, arch, fail)
    return n_layer


def _check_experts(meta: Mapping[str, Any], arch: str, fail: Fail) -> None:
    values = {name: meta.get(f"{arch}.{name}", 0) for name in
              ("expert_count", "expert_used_count", "expert_group_count", "expert_group_used_count")}
    used = values["expert_used_count"]
    if isinstance(used, list) and all(is_int(u) for u in used):
        values["expert_used_count"] = max(used, default=0)
    for name, value in values.items():
        if not is_int(value) or value < 0:
            raise fail(f"{arch}.{name} is {_short(value)}, not a count")
    experts, used, groups, group_used = values.values()
    problem = None
    if experts > MAX_EXPERTS:
        problem = f"more than {MAX_EXPERTS} experts"
    elif used > experts:
        problem = "more experts used per token than there are"
    elif experts and not used:
        problem = "experts but none used per token"
    elif experts and groups >= experts:
        problem = "as many expert groups as experts"
    elif experts and groups > 1 and (experts % groups or not 0 < group_used < groups):
        problem = "expert groups that do not divide the experts"
    elif not experts and groups:
        problem = "expert groups without experts"
    if problem:
        counts = ", ".join(f"{k}={v}" for k, v in values.items())
        raise fail(f"{arch} expert counts contradict each other ({problem}): {counts}")


# ---------------------------------------------------------------- the catalog's architectures


def _hyperparameters(meta: Mapping[str, Any], arch: str, n_layer: int, fail: Fail) -> dict[str, int] | None:
    """The sizes the tensors and the graph are built from, or None if one is missing."""
    n_embd = meta.get(f"{arch}.embedding_length")
    n_head = _per_layer(meta, arch, "attention.head_count", n_layer, fail)
    n_ff = _per_layer(meta, arch, "feed_forward_length", n_layer, fail)
    if not is_int(n_embd) or n_head is None or n_ff is None:
        return None
    n_head_kv = _per_layer(meta, arch, "attention.head_count_kv", n_layer, fail)
    n_head_kv = n_head if n_head_kv is None else n_head_kv
    if n_embd <= 0:
        raise fail(f"{arch}.embedding_length is {n_embd}")
    if n_head <= 0 or n_head_kv <= 0 or n_ff <= 0:
        raise fail(f"{arch} needs at least one attention head and a feed-forward length: attention.head_count="
                   f"{n_head}, attention.head_count_kv={n_head_kv}, feed_forward_length={n_ff}")
    if n_head % n_head_kv:
        raise fail(f"{arch}.attention.head_count ({n_head}) is not a multiple of "
                   f"{arch}.attention.head_count_kv ({n_head_kv})")
    head_k = _positive(meta, f"{arch}.attention.key_length", n_embd // n_head, fail)
    head_v = _positive(meta, f"{arch}.attention.value_length", n_embd // n_head, fail)
    n_rot = _positive(meta, f"{arch}.rope.dimension_count", head_k, fail)
    if arch == "qwen2" and head_k * n_head != n_embd:
        raise fail(f"qwen2.embedding_length ({n_embd}) is not attention.head_count ({n_head}) "
                   f"x head size ({head_k})")
    if arch in ("llama", "qwen2") and not head_k == head_v == n_rot:
        raise fail(f"{arch} head sizes disagree: key {head_k}, value {head_v}, rope.dimension_count {n_rot} "
                   f"(embedding_length {n_embd} / head_count {n_head} = {n_embd // n_head})")
    n_vocab = length_of(meta.get("tokenizer.ggml.tokens"))
    return {"n_embd": n_embd, "n_head": n_head, "n_head_kv": n_head_kv, "n_ff": n_ff, "head_k": head_k,
            "head_v": head_v, "n_rot": n_rot, "n_vocab": n_vocab or 0,
            "n_expert": meta.get(f"{arch}.expert_count", 0)}


def _per_layer(meta: Mapping[str, Any], arch: str, name: str, n_layer: int, fail: Fail) -> int | None:
    """A size given once or per layer.  These architectures build every layer with the
    sizes of layer 0, so per-layer values must all agree."""
    key = f"{arch}.{name}"
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, list):
        if len(value) != n_layer:
            raise fail(f"{key} has {len(value)} values for {n_layer} layers")
        if not value or not all(is_int(v) for v in value) or len(set(value)) != 1:
            raise fail(f"{key} differs between layers or is not a count: {_short(value)}")
        value = value[0]
    if not is_int(value):
        raise fail(f"{key} is {_short(value)}, not a count")
    return value


def _positive(meta: Mapping[str, Any], key: str, default: int, fail: Fail) -> int:
    value = meta.get(key, default)
    if not is_int(value) or value <= 0:
        raise fail(f"{key} is {_short(value)}, not a positive size")
    return value


def _expected_shapes(arch: str, hp: dict[str, int], n_layer: int) -> dict[str, tuple[tuple[int, ...], bool, str]]:
    """tensor name -> (shape, required, the hyper-parameters it comes from)."""
    e, v, ff = hp["n_embd"], hp["n_vocab"], hp["n_ff"]
    q = e if arch == "qwen2" else hp["head_k"] * hp["n_head"]
    k, val = hp["head_k"] * hp["n_head_kv"], hp["head_v"] * hp["n_head_kv"]
    why_e = f"embedding_length={e}"
    why_v = f"{why_e}, vocabulary of {v} tokens"
    why_q = f"{why_e}, head_count={hp['n_head']}, head size {hp['head_k']}"
    why_kv = f"{why_e}, head_count_kv={hp['n_head_kv']}, head size {hp['head_k']}"
    why_ff = f"{why_e}, feed_forward_length={ff}"
    shapes: dict[str, tuple[tuple[int, ...], bool, str]] = {"output_norm.weight": ((e,), True, why_e)}
    if v:  # without a vocabulary llama.cpp has nothing to size these by (and says so)
        shapes["token_embd.weight"] = ((e, v), True, why_v)
        shapes["output.weight"] = ((e, v), False, why_v)
        if arch == "qwen2":
            shapes["output.bias"] = ((v,), False, why_v)
    if arch == "llama":
        shapes["rope_freqs.weight"] = ((hp["n_rot"] // 2,), False, f"rope.dimension_count={hp['n_rot']}")
    for i in range(n_layer):
        b = f"blk.{i}."
        fused = (q + k + val,)
        layer = {
            "attn_norm.weight": ((e,), True, why_e),
            "attn_qkv.weight": ((e, *fused), False, why_q),
            "attn_qkv.bias": (fused, False, why_q),
            "attn_q.weight": ((e, q), True, why_q),
            "attn_k.weight": ((e, k), True, why_kv),
            "attn_v.weight": ((e, val), True, why_kv),
            "attn_q.bias": ((q,), False, why_q),
            "attn_k.bias": ((k,), False, why_kv),
            "attn_v.bias": ((val,), False, why_kv),
            "attn_output.weight": ((q, e), True, why_q),
            "attn_output.bias": ((e,), False, why_e),
            "ffn_norm.weight": ((e,), True, why_e),
            "ffn_gate.weight": ((e, ff), True, why_ff),
            "ffn_up.weight": ((e, ff), True, why_ff),
            "ffn_down.weight": ((ff, e), True, why_ff),
            "ffn_gate.bias": ((ff,), False, why_ff),
            "ffn_up.bias": ((ff,), False, why_ff),
            "ffn_down.bias": ((e,), False, why_e),
        }
        if hp["n_expert"]:  # a mixture of experts (llama only) has other feed-forward tensors
            layer = {name: spec for name, spec in layer.items() if not name.startswith("ffn_")}
        if arch == "gemma3":
            why_h = f"head size {hp['head_k']}"
            layer |= {
                "post_attention_norm.weight": ((e,), True, why_e),
                "post_ffw_norm.weight": ((e,), True, why_e),
                "attn_q_norm.weight": ((hp["head_k"],), True, why_h),
                "attn_k_norm.weight": ((hp["head_k"],), True, why_h),
            }
        shapes |= {b + name: spec for name, spec in layer.items()}
    return shapes


def _check_shapes(tensors: tuple[TensorInfo, ...], expected: dict[str, tuple[tuple[int, ...], bool, str]],
                  fail: Fail) -> None:
    by_name = {t.name: t for t in tensors}
    for t in tensors:
        spec = expected.get(t.name)
        if spec is not None and t.shape != spec[0]:
            raise fail(f"GGUF tensor '{show(t.name)}' has shape {list(t.shape)} but the hyper-parameters "
                       f"({spec[2]}) make it {list(spec[0])}")
    for name, (shape, required, why) in expected.items():
        if not required or name in by_name:
            continue
        fused = name.rsplit(".", 2)[0] + ".attn_qkv.weight"
        if name.split(".")[-2] in ("attn_q", "attn_k", "attn_v") and fused in by_name:
            continue  # one fused Q/K/V tensor instead of three
        raise fail(f"GGUF tensor '{show(name)}' is missing (expected {list(shape)} from {why})")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"
