#!/usr/bin/env python3
"""A model with a real model's shape and random weights, for timing where the real
weights cannot go (the GPU check machine is offline and takes 64 MiB, the default
pair is 1.4 GB).

    scripts/shaped_gguf.py skeleton REAL.gguf SKELETON.json.xz   # metadata + tensor shapes, a few MB
    scripts/shaped_gguf.py fill SKELETON.json.xz OUT.gguf --quant Q4_K_M
    scripts/shaped_gguf.py fill SKELETON.json.xz OUT.f16.gguf --quant F16   # numpy only, no llama.cpp
    scripts/shaped_gguf.py quantize OUT.f16.gguf OUT.gguf --quant Q4_K_M
    scripts/shaped_gguf.py reshape SKELETON.json.xz 7B.json.xz --layers 28 --hidden 3584 \
        --heads 28 --kv-heads 4 --ffn 18944 --vocab 152064 --name "Qwen2.5 Coder 7B (shaped)"

`reshape` turns a skeleton into another size of the same architecture (a Qwen2 7B from
the 0.5B's tokenizer: the vocabulary is padded with unused tokens up to --vocab, as the
real 7B's is).  `fill` writes every tensor as random F16 (norms as ones), then requantizes with
llama.cpp's own quantizer to the real file's type mix, so a decode costs what the
real model's decode costs.  The tokenizer and chat template are the real ones; the
words the model says are nonsense, so acceptance rates measured with it mean nothing.
"""

from __future__ import annotations

import argparse
import json
import lzma
import sys
import tempfile
from pathlib import Path

import numpy as np


def skeleton(real: Path, out: Path) -> None:
    import gguf

    reader = gguf.GGUFReader(str(real))
    fields = []
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.file_type":
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        fields.append({"key": name, "type": int(vtype), "sub": int(sub) if sub is not None else None, "value": value})
    tensors = [{"name": t.name, "shape": [int(d) for d in reversed(t.shape)]} for t in reader.tensors]
    data = {"arch": str(reader.fields["general.architecture"].contents()), "fields": fields, "tensors": tensors}
    with lzma.open(out, "wt") as fh:
        json.dump(data, fh)


def reshape(skel: Path, out: Path, *, layers: int, hidden: int, heads: int, kv_heads: int, ffn: int,
            vocab: int | None = None, name: str | None = None, tied: bool = False) -> None:
    """The same architecture and tokenizer at other dimensions (Qwen2-style blocks:
    q/k/v with biases, SwiGLU FFN, untied output unless `tied`)."""
    with lzma.open(skel, "rt") as fh:
        data = json.load(fh)
    arch = data["arch"]
    head_dim, kv = hidden // heads, hidden // heads * kv_heads
    fields = {f["key"]: f for f in data["fields"]}
    n_tokens = len(fields["tokenizer.ggml.tokens"]["value"])
    vocab = vocab or n_tokens
    if vocab < n_tokens:
        raise SystemExit(f"--vocab {vocab} is smaller than the tokenizer's {n_tokens} tokens")
    pad = vocab - n_tokens
    fields["tokenizer.ggml.tokens"]["value"] += [f"[PAD{n_tokens + i}]" for i in range(pad)]
    fields["tokenizer.ggml.token_type"]["value"] += [5] * pad  # unused
    for key, value in (("block_count", layers), ("embedding_length", hidden), ("feed_forward_length", ffn),
                       ("attention.head_count", heads), ("attention.head_count_kv", kv_heads)):
        fields[f"{arch}.{key}"]["value"] = value
    if name:
        fields["general.name"]["value"] = name
    block = {
        "attn_norm.weight": [hidden], "ffn_norm.weight": [hidden],
        "attn_q.weight": [hidden, hidden], "attn_q.bias": [hidden],
        "attn_k.weight": [kv, hidden], "attn_k.bias": [kv],
        "attn_v.weight": [kv, hidden], "attn_v.bias": [kv],
        "attn_output.weight": [hidden, hidden],
        "ffn_gate.weight": [ffn, hidden], "ffn_up.weight": [ffn, hidden], "ffn_down.weight": [hidden, ffn],
    }
    tensors = [{"name": "token_embd.weight", "shape": [vocab, hidden]}]
    for i in range(layers):
        tensors += [{"name": f"blk.{i}.{k}", "shape": v} for k, v in block.items()]
    tensors.append({"name": "output_norm.weight", "shape": [hidden]})
    if not tied:
        tensors.append({"name": "output.weight", "shape": [vocab, hidden]})
    data["tensors"] = tensors
    assert head_dim * heads == hidden, "hidden must be a multiple of heads"
    with lzma.open(out, "wt") as fh:
        json.dump(data, fh)


def fill(skel: Path, out: Path, quant: str, seed: int = 0) -> None:
    if quant == "F16":
        write_f16(skel, out, seed)
        return
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        f16 = Path(tmp) / "f16.gguf"
        write_f16(skel, f16, seed)
        quantize(f16, out, quant)


def write_f16(skel: Path, f16: Path, seed: int) -> None:
    import gguf

    with lzma.open(skel, "rt") as fh:
        data = json.load(fh)
    rng = np.random.default_rng(seed)
    # Random values cost time (a 7B model is 7.6e9 of them) and mean nothing here: tile
    # one pool of 16M normals, from a random offset per tensor.
    pool = (rng.standard_normal(1 << 24, dtype=np.float32) * 0.02).astype(np.float16)
    w = gguf.GGUFWriter(str(f16), data["arch"])
    for f in data["fields"]:
        if f["key"] == "general.architecture":
            continue
        vtype = gguf.GGUFValueType(f["type"])
        sub = gguf.GGUFValueType(f["sub"]) if f["sub"] is not None else None
        w.add_key_value(f["key"], f["value"], vtype, sub)
    for t in data["tensors"]:
        shape = tuple(t["shape"])
        if len(shape) == 1:  # norms and biases
            arr = np.ones(shape, np.float32) if "norm" in t["name"] else np.zeros(shape, np.float32)
        else:
            arr = np.resize(pool[int(rng.integers(len(pool) // 2)):], shape)
        w.add_tensor(t["name"], arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize(src: Path, dst: Path, quant: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    params.nthread = 0
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed ({rc})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("skeleton")
    s.add_argument("real", type=Path)
    s.add_argument("out", type=Path)
    f = sub.add_parser("fill")
    f.add_argument("skeleton", type=Path)
    f.add_argument("out", type=Path)
    f.add_argument("--quant", default="Q4_K_M")
    q = sub.add_parser("quantize")
    q.add_argument("src", type=Path)
    q.add_argument("out", type=Path)
    q.add_argument("--quant", default="Q4_K_M")
    r = sub.add_parser("reshape")
    r.add_argument("skeleton", type=Path)
    r.add_argument("out", type=Path)
    for dim in ("layers", "hidden", "heads", "kv-heads", "ffn"):
        r.add_argument(f"--{dim}", type=int, required=True)
    r.add_argument("--vocab", type=int)
    r.add_argument("--name")
    r.add_argument("--tied", action="store_true", help="no output.weight: the LM head is the embeddings")
    args = ap.parse_args()
    if args.cmd == "skeleton":
        skeleton(args.real, args.out)
    elif args.cmd == "reshape":
        reshape(args.skeleton, args.out, layers=args.layers, hidden=args.hidden, heads=args.heads,
                kv_heads=args.kv_heads, ffn=args.ffn, vocab=args.vocab, name=args.name, tied=args.tied)
    elif args.cmd == "fill":
        fill(args.skeleton, args.out, args.quant)
    else:
        quantize(args.src, args.out, args.quant)
    return 0


if __name__ == "__main__":
    sys.exit(main())
