#!/usr/bin/env python3
"""A model with a real model's shape and random weights, for timing where the real
weights cannot go (the GPU check machine is offline and takes 64 MiB, the default
pair is 1.4 GB).

    scripts/shaped_gguf.py skeleton REAL.gguf SKELETON.json.xz   # metadata + tensor shapes, a few MB
    scripts/shaped_gguf.py fill SKELETON.json.xz OUT.gguf --quant Q4_K_M
    scripts/shaped_gguf.py fill SKELETON.json.xz OUT.f16.gguf --quant F16   # numpy only, no llama.cpp
    scripts/shaped_gguf.py quantize OUT.f16.gguf OUT.gguf --quant Q4_K_M

`fill` writes every tensor as random F16 (norms as ones), then requantizes with
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
            arr = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)
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
    args = ap.parse_args()
    if args.cmd == "skeleton":
        skeleton(args.real, args.out)
    elif args.cmd == "fill":
        fill(args.skeleton, args.out, args.quant)
    else:
        quantize(args.src, args.out, args.quant)
    return 0


if __name__ == "__main__":
    sys.exit(main())
